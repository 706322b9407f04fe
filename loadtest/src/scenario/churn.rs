//! `churn`: sockets that connect, say hello, join a room, stay a moment,
//! leave and disconnect, over and over. Each room is held open by an
//! anchor socket that publishes into it, so churners check the messages of
//! their stay and anchors check the whole run while members come and go.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::StreamExt;
use meshi_protocol::Request;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::rooms::{join_room, observe, open_room, Member, Shared};
use super::{check_duration, check_sockets, connect_all, load_for, settle, Stage};
use crate::check::{CheckTotals, StreamCheck};
use crate::client::{Conn, Event, Reply};
use crate::ctx::Ctx;
use crate::frame::Incoming;
use crate::stats::{Count, Lat, Stats};

/// Capacity of the churned rooms: every churner may be in one at once.
const ROOM_CAPACITY: usize = 500;

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct ChurnOpts {
    /// Sockets churning at once.
    #[arg(long, default_value_t = 20)]
    pub churners: usize,

    /// Rooms the churners join, each held open by an anchor socket.
    #[arg(long, default_value_t = 4)]
    pub rooms: usize,

    /// Seconds of churn.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Milliseconds a churner stays in a room (half to one and a half
    /// times this, at random).
    #[arg(long, default_value_t = 200)]
    pub dwell_ms: u64,

    /// Messages per second each anchor publishes into its room.
    #[arg(long, default_value_t = 5.0)]
    pub anchor_rate: f64,

    /// Most connect-join-leave cycles over the whole run.
    #[arg(long, default_value_t = 100_000)]
    pub max_cycles: u64,
}

impl Default for ChurnOpts {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            options: ChurnOpts,
        }
        <Bare as clap::Parser>::parse_from(["churn"]).options
    }
}

impl ChurnOpts {
    pub fn validate(&self) -> Result<()> {
        check_sockets(self.churners + self.rooms)?;
        check_duration(self.duration)?;
        if self.churners == 0 || self.rooms == 0 {
            bail!("churn: need at least one churner and one room");
        }
        if self.churners > ROOM_CAPACITY * self.rooms {
            bail!("churn: more churners than the rooms can hold; add --rooms");
        }
        if !(self.anchor_rate >= 0.0 && self.anchor_rate.is_finite()) {
            bail!("churn: --anchor-rate must be zero or more");
        }
        if self.max_cycles == 0 {
            bail!("churn: --max-cycles must be at least 1");
        }
        Ok(())
    }

    /// Refuses an anchor rate the server's per-socket limit would refuse.
    pub(crate) fn check_rate(&self, socket_rate: f64) -> Result<()> {
        if self.anchor_rate > socket_rate {
            bail!("churn: --anchor-rate is above --socket-rate");
        }
        Ok(())
    }
}

/// Provisions the users behind the sockets: the rooms' anchors first,
/// then the churners.
pub(crate) async fn register(ctx: &Ctx, opts: &ChurnOpts) -> Result<Vec<String>> {
    let _phase = ctx.phase("churn: register users");
    let users = ctx
        .env
        .rest
        .register_many(
            &ctx.handle_prefix('c'),
            opts.rooms + opts.churners,
            &ctx.env.progress,
        )
        .await?;
    Ok(users.into_iter().map(|user| user.token).collect())
}

/// Runs the scenario; as a worker of a larger run, over the users its
/// parent gave it (its rooms' anchors, then its churners), and its rooms
/// are numbered from the first it was given.
pub(crate) async fn run(ctx: &Arc<Ctx>, opts: &ChurnOpts) -> Result<()> {
    opts.validate()?;
    opts.check_rate(ctx.socket_rate())?;
    let (users, first_room) = match ctx.given("churn")? {
        Some(given) => {
            if given.tokens.len() != opts.rooms + opts.churners {
                bail!(
                    "churn: the worker was given {} users, not {}",
                    given.tokens.len(),
                    opts.rooms + opts.churners
                );
            }
            (given.tokens.clone(), given.first)
        }
        None => (register(ctx, opts).await?, 0),
    };
    let shared = Shared::new(ctx.stats.clone(), 64, ctx.timeout());
    let (stage, watch) = watch::channel(Stage::Ready);
    let mut anchors = Vec::with_capacity(opts.rooms);
    let mut rooms = Vec::with_capacity(opts.rooms);
    {
        let _phase = ctx.phase("churn: open rooms");
        let conns = connect_all(ctx, "churn: anchors", opts.rooms, |i| users[i].as_str()).await;
        let period =
            (opts.anchor_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / opts.anchor_rate));
        for (r, conn) in conns.into_iter().enumerate() {
            let Some(mut conn) = conn else {
                continue;
            };
            let name = format!("churn {}", first_room + r);
            let Some(room) = open_room(&mut conn, name, ROOM_CAPACITY, ctx.timeout()).await else {
                continue;
            };
            rooms.push(room.clone());
            let anchor = Member::new(conn, room, 0, period);
            anchors.push(tokio::spawn(anchor.run(shared.clone(), watch.clone())));
        }
    }
    if rooms.is_empty() {
        bail!(
            "churn: no room could be opened ({:?})",
            ctx.stats.transport_errors()
        );
    }
    let rooms: Arc<[Arc<str>]> = rooms.into();
    let cycles = Arc::new(AtomicU64::new(0));
    let dwell = Duration::from_millis(opts.dwell_ms);
    let churners: Vec<_> = (0..opts.churners)
        .map(|n| {
            let churner = Churner {
                ctx: ctx.clone(),
                index: opts.rooms + n,
                token: users[opts.rooms + n].clone(),
                rooms: rooms.clone(),
                dwell,
                cycles: cycles.clone(),
                max_cycles: opts.max_cycles,
            };
            tokio::spawn(churner.run(watch.clone()))
        })
        .collect();

    ctx.start_load().await;
    {
        let _phase = ctx.phase("churn: load");
        let _ = stage.send(Stage::Load);
        let stats = &ctx.stats;
        let started = Instant::now();
        load_for(
            ctx,
            Duration::from_secs_f64(opts.duration),
            "churn: load",
            || {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                format!(
                    "cycles {:.0}/s open {}",
                    stats.count(Count::ChurnCycles) as f64 / secs,
                    stats.open_sockets()
                )
            },
        )
        .await;
        ctx.end_load();
        let _ = stage.send(Stage::Quiet);
    }
    let _phase = ctx.phase("churn: drain");
    let mut totals = CheckTotals::default();
    for churner in churners {
        if let Ok(checks) = churner.await {
            totals.add(&checks);
        }
    }
    shared.stop_publishing();
    if !settle(&shared.in_flight, ctx.timeout()).await {
        ctx.note("churn: anchor sends were still unanswered when the drain began");
    }
    let _ = stage.send(Stage::Drain(shared.finals()));
    for anchor in anchors {
        if let Ok(checks) = anchor.await {
            totals.add(&checks);
        }
    }
    ctx.stats.add_checks(&totals);
    Ok(())
}

struct Churner {
    ctx: Arc<Ctx>,
    index: usize,
    token: String,
    rooms: Arc<[Arc<str>]>,
    dwell: Duration,
    cycles: Arc<AtomicU64>,
    max_cycles: u64,
}

impl Churner {
    async fn run(self, mut stage: watch::Receiver<Stage>) -> CheckTotals {
        let mut totals = CheckTotals::default();
        while !matches!(*stage.borrow_and_update(), Stage::Load) {
            if stage.changed().await.is_err() {
                return totals;
            }
        }
        while matches!(*stage.borrow(), Stage::Load) {
            if self.cycles.fetch_add(1, Ordering::Relaxed) >= self.max_cycles {
                break;
            }
            if let Some(checks) = self.cycle().await {
                totals.add(&checks);
            }
        }
        totals
    }

    /// One connect, hello, join, stay, leave, close. `None` when it broke
    /// off before joining (the reason is in the statistics).
    async fn cycle(&self) -> Option<CheckTotals> {
        let ctx = &self.ctx;
        let stats = &ctx.stats;
        let started = Instant::now();
        let Some(mut conn) =
            Conn::open(&ctx.env.connector, stats, self.index, ctx.socket_rate()).await
        else {
            // Back off a little so a refusing server is not hammered.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return None;
        };
        if !conn.hello(&self.token, ctx.timeout()).await {
            return None;
        }
        let room = &self.rooms[fastrand::usize(..self.rooms.len())];
        let after = join_room(&mut conn, room, ctx.timeout()).await?;
        let mut check = StreamCheck::new(after);
        let stay = self.dwell.mul_f64(0.5 + fastrand::f64());
        let leave_at = tokio::time::Instant::now() + stay;
        let mut alive = true;
        loop {
            tokio::select! {
                next = conn.ws.next() => match Event::of(next) {
                    Event::Text(text) => read(stats, &mut check, room, text.as_str(), self.index),
                    Event::Nothing => {}
                    Event::Ended(ended) => {
                        conn.record_end(ended);
                        alive = false;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(leave_at) => break,
            }
        }
        if alive {
            let leave = Request::RoomLeave {
                room_id: room.to_string(),
            };
            let index = self.index;
            let reply = conn
                .request_with(&leave, ctx.timeout(), |frame| {
                    observe(stats, &mut check, room, frame, index)
                })
                .await;
            match reply {
                Ok(Reply::Ok(_)) => stats.add(Count::Leaves, 1),
                Ok(Reply::Error { .. }) => {}
                Err(ended) => {
                    conn.record_end(ended);
                    alive = false;
                }
            }
        }
        if alive {
            conn.close().await;
        }
        stats.add(Count::ChurnCycles, 1);
        let busy = started.elapsed().saturating_sub(stay);
        stats.record(Lat::ChurnCycle, self.index, busy.as_micros() as u64);
        Some(check.finish(None))
    }
}

fn read(stats: &Stats, check: &mut StreamCheck, room: &str, text: &str, index: usize) {
    let Some(frame) = Incoming::parse(text) else {
        stats.add(Count::Unparsed, 1);
        return;
    };
    if let Some(error) = &frame.error {
        stats.error(&error.code);
    }
    observe(stats, check, room, &frame, index);
}
