//! The scenarios. Each provisions what it needs, opens its sockets, waits
//! at the run's gate (so side-by-side scenarios load together), loads for
//! its duration, then stops sending, drains and checks.
//!
//! Every scenario is bounded by its counts and its duration, and every
//! wait in it has a timeout, so a run always ends by itself.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::client::Conn;
use crate::ctx::Ctx;

pub mod churn;
pub mod connect;
pub mod mixed;
pub mod pairs;
pub mod rooms;

pub use churn::ChurnOpts;
pub use connect::ConnectOpts;
pub use mixed::MixedOpts;
pub use pairs::PairsOpts;
pub use rooms::RoomsOpts;

/// The longest load a run accepts.
pub const MAX_DURATION_SECS: f64 = 3600.0;
/// The most sockets a run accepts.
pub const MAX_SOCKETS: usize = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    Connect(ConnectOpts),
    Rooms(RoomsOpts),
    Pairs(PairsOpts),
    Churn(ChurnOpts),
    Mixed(MixedOpts),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Connect(_) => "connect",
            Scenario::Rooms(_) => "rooms",
            Scenario::Pairs(_) => "pairs",
            Scenario::Churn(_) => "churn",
            Scenario::Mixed(_) => "mixed",
        }
    }

    pub fn params(&self) -> serde_json::Value {
        let value = match self {
            Scenario::Connect(o) => serde_json::to_value(o),
            Scenario::Rooms(o) => serde_json::to_value(o),
            Scenario::Pairs(o) => serde_json::to_value(o),
            Scenario::Churn(o) => serde_json::to_value(o),
            Scenario::Mixed(o) => serde_json::to_value(o),
        };
        value.unwrap_or_default()
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            Scenario::Connect(o) => o.validate(),
            Scenario::Rooms(o) => o.validate(),
            Scenario::Pairs(o) => o.validate(),
            Scenario::Churn(o) => o.validate(),
            Scenario::Mixed(o) => o.validate(),
        }
    }

    /// Refuses a scenario that would send faster than `--socket-rate`
    /// allows any one socket.
    pub(crate) fn check_rate(&self, socket_rate: f64) -> Result<()> {
        match self {
            Scenario::Rooms(o) => o.check_rate(socket_rate),
            Scenario::Churn(o) => o.check_rate(socket_rate),
            Scenario::Mixed(o) => o
                .parts()
                .iter()
                .try_for_each(|part| part.check_rate(socket_rate)),
            Scenario::Connect(_) | Scenario::Pairs(_) => Ok(()),
        }
    }

    /// Seconds the load (or, for connect, the hold) lasts.
    pub(crate) fn load_secs(&self) -> f64 {
        match self {
            Scenario::Connect(o) => o.hold,
            Scenario::Rooms(o) => o.duration,
            Scenario::Pairs(o) => o.duration,
            Scenario::Churn(o) => o.duration,
            Scenario::Mixed(o) => o.duration,
        }
    }

    /// How many scenarios run side by side.
    pub fn parts(&self) -> usize {
        match self {
            Scenario::Mixed(o) => o.parts().len(),
            _ => 1,
        }
    }

    /// Counters that must end above zero for the run to mean anything.
    pub fn expected_counts(&self) -> Vec<&'static str> {
        match self {
            Scenario::Connect(_) => vec!["hellos"],
            Scenario::Rooms(_) => vec!["room_delivered"],
            Scenario::Pairs(_) => vec!["dm_round_trips"],
            Scenario::Churn(_) => vec!["churn_cycles"],
            Scenario::Mixed(o) => o
                .parts()
                .iter()
                .flat_map(Scenario::expected_counts)
                .collect(),
        }
    }

    pub(crate) async fn run(&self, ctx: &Arc<Ctx>) -> Result<()> {
        match self {
            Scenario::Connect(o) => connect::run(ctx, o, true).await,
            Scenario::Rooms(o) => rooms::run(ctx, o, 'r').await,
            Scenario::Pairs(o) => pairs::run(ctx, o).await,
            Scenario::Churn(o) => churn::run(ctx, o).await,
            Scenario::Mixed(o) => mixed::run(ctx, o).await,
        }
    }
}

/// Where the sockets of a scenario are in its run; sent to every socket
/// task over a watch channel.
#[derive(Debug, Clone)]
pub(crate) enum Stage {
    /// Set up, waiting for the others.
    Ready,
    Load,
    /// Stop starting new sends; answer what is in flight.
    Quiet,
    /// Everything is sent: read until caught up with these final seqs
    /// (by stream), or until the drain time is up.
    Drain(Arc<std::collections::HashMap<Arc<str>, u64>>),
}

pub(crate) fn check_duration(secs: f64) -> Result<Duration> {
    if !(secs > 0.0 && secs <= MAX_DURATION_SECS) {
        bail!("a duration must be above 0 and at most {MAX_DURATION_SECS} seconds");
    }
    Ok(Duration::from_secs_f64(secs))
}

pub(crate) fn check_sockets(sockets: usize) -> Result<()> {
    if sockets == 0 || sockets > MAX_SOCKETS {
        bail!("a scenario needs between 1 and {MAX_SOCKETS} sockets");
    }
    Ok(())
}

/// Opens `count` sockets and says hello on each with the token
/// `token_of(index)`, with bounded concurrency. A socket that failed is
/// `None`; the reason is in the statistics.
pub(crate) async fn connect_all<'a>(
    ctx: &'a Ctx,
    what: &str,
    count: usize,
    token_of: impl Fn(usize) -> &'a str,
) -> Vec<Option<Conn>> {
    let bar = ctx.env.progress.bar(count as u64, what);
    let token_of = &token_of;
    let bar_ref = &bar;
    let conns = stream::iter(0..count)
        .map(|index| async move {
            let conn = Conn::open(&ctx.env.connector, &ctx.stats, index, ctx.socket_rate()).await;
            let conn = match conn {
                Some(mut conn) => {
                    let said = conn.hello(token_of(index), ctx.timeout()).await;
                    said.then_some(conn)
                }
                None => None,
            };
            bar_ref.inc(1);
            conn
        })
        .buffered(ctx.env.options.connect_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    bar.finish_and_clear();
    conns
}

/// Waits for the load time while a bar shows rates.
pub(crate) async fn load_for(ctx: &Ctx, duration: Duration, what: &str, show: impl Fn() -> String) {
    let bar = ctx.env.progress.timer(duration, what);
    let started = tokio::time::Instant::now();
    let deadline = started + duration;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep_until((now + Duration::from_millis(250)).min(deadline)).await;
        bar.set_position(started.elapsed().as_millis() as u64);
        bar.set_message(show());
    }
    bar.finish_and_clear();
}

/// Ticks of `ticker`, or never when there is none.
pub(crate) async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves at `deadline`, or never when there is none.
pub(crate) async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits until `in_flight` reaches zero or `within` has passed.
pub(crate) async fn settle(in_flight: &std::sync::atomic::AtomicI64, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}
