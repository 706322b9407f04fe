//! `mixed`: the other scenarios side by side on one server, each scaled
//! down: idle sockets held open, rooms publishing, pairs talking and
//! sockets churning, all loading over the same window.

use std::sync::Arc;

use anyhow::{bail, Result};
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{check_duration, ChurnOpts, ConnectOpts, PairsOpts, RoomsOpts, Scenario};
use crate::ctx::Ctx;

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct MixedOpts {
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Idle sockets held open throughout (0 for none).
    #[arg(long, default_value_t = 200)]
    pub idle: usize,

    /// New idle sockets per second, over all of them.
    #[arg(long, default_value_t = 1000.0)]
    pub idle_rate: f64,

    /// Rooms publishing (0 for none).
    #[arg(long, default_value_t = 5)]
    pub rooms: usize,

    /// Member sockets per room.
    #[arg(long, default_value_t = 10)]
    pub members: usize,

    /// Publishers per room.
    #[arg(long, default_value_t = 2)]
    pub publishers: usize,

    /// Room messages per second over all rooms.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// Matched pairs ping-ponging (0 for none).
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,

    /// Sockets churning (0 for none).
    #[arg(long, default_value_t = 10)]
    pub churners: usize,

    /// Rooms the churners join, each held open by an anchor socket.
    #[arg(long, default_value_t = 2)]
    pub churn_rooms: usize,

    /// Most connect-join-leave cycles of the churners over the whole run.
    #[arg(long, default_value_t = 100_000)]
    pub max_cycles: u64,
}

impl Default for MixedOpts {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            options: MixedOpts,
        }
        <Bare as clap::Parser>::parse_from(["mixed"]).options
    }
}

impl MixedOpts {
    pub fn validate(&self) -> Result<()> {
        check_duration(self.duration)?;
        let parts = self.parts();
        if parts.is_empty() {
            bail!("mixed: every part is empty");
        }
        parts.iter().try_for_each(Scenario::validate)
    }

    /// The scenarios this mix runs.
    pub fn parts(&self) -> Vec<Scenario> {
        let mut parts = Vec::new();
        if self.idle > 0 {
            parts.push(Scenario::Connect(ConnectOpts {
                sockets: self.idle,
                users: Some(self.idle.min(100)),
                rate: self.idle_rate,
                hold: self.duration,
            }));
        }
        if self.rooms > 0 {
            parts.push(Scenario::Rooms(RoomsOpts {
                rooms: self.rooms,
                members: self.members,
                publishers: self.publishers,
                rate: self.rate,
                duration: self.duration,
                ..RoomsOpts::default()
            }));
        }
        if self.pairs > 0 {
            parts.push(Scenario::Pairs(PairsOpts {
                pairs: self.pairs,
                duration: self.duration,
                ..PairsOpts::default()
            }));
        }
        if self.churners > 0 {
            parts.push(Scenario::Churn(ChurnOpts {
                churners: self.churners,
                rooms: self.churn_rooms,
                duration: self.duration,
                max_cycles: self.max_cycles,
                ..ChurnOpts::default()
            }));
        }
        parts
    }
}

pub(crate) async fn run(ctx: &Arc<Ctx>, opts: &MixedOpts) -> Result<()> {
    opts.validate()?;
    let parts = opts.parts();
    try_join_all(parts.iter().map(|part| async move {
        match part {
            Scenario::Connect(o) => super::connect::run(ctx, o, false).await,
            Scenario::Rooms(o) => super::rooms::run(ctx, o, 'r').await,
            Scenario::Pairs(o) => super::pairs::run(ctx, o).await,
            Scenario::Churn(o) => super::churn::run(ctx, o).await,
            Scenario::Mixed(_) => bail!("a mix does not nest"),
        }
    }))
    .await?;
    Ok(())
}
