//! `rooms`: R rooms of M member sockets; P members of each room publish,
//! together at a target rate. Every member checks every message it gets
//! and times it from the stamp in its text.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::stream;
use futures_util::StreamExt;
use meshi_protocol::Request;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{check_duration, check_sockets, connect_all, load_for, settle, tick, until, Stage};
use crate::check::{CheckTotals, StreamCheck};
use crate::client::{Conn, Ended, Event, Reply};
use crate::ctx::Ctx;
use crate::frame::{Incoming, SeqData, Stamp};
use crate::stats::{Count, Lat, Stats};

/// The largest room the server allows.
const MAX_CAPACITY: usize = 500;

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct RoomsOpts {
    /// Rooms to open.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,

    /// Member sockets in each room (at most 500).
    #[arg(long, default_value_t = 20)]
    pub members: usize,

    /// Members of each room that publish.
    #[arg(long, default_value_t = 2)]
    pub publishers: usize,

    /// Messages per second, over all rooms together.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Distinct users behind the sockets (default one per socket; at
    /// least --members, so nobody is in a room twice).
    #[arg(long)]
    pub users: Option<usize>,

    /// Length of each message text in bytes.
    #[arg(long, default_value_t = 64)]
    pub message_bytes: usize,
}

impl Default for RoomsOpts {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            options: RoomsOpts,
        }
        <Bare as clap::Parser>::parse_from(["rooms"]).options
    }
}

impl RoomsOpts {
    pub fn validate(&self) -> Result<()> {
        if self.rooms == 0 || self.members == 0 || self.members > MAX_CAPACITY {
            bail!("rooms: need at least one room of 1 to {MAX_CAPACITY} members");
        }
        if self.publishers == 0 || self.publishers > self.members {
            bail!("rooms: --publishers must be between 1 and --members");
        }
        check_sockets(self.rooms * self.members)?;
        check_duration(self.duration)?;
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            bail!("rooms: --rate must be a positive number");
        }
        if self.users.is_some_and(|u| u < self.members) {
            bail!("rooms: --users must be at least --members");
        }
        if self.message_bytes > 4000 {
            bail!("rooms: --message-bytes is at most 4000");
        }
        Ok(())
    }

    fn per_publisher(&self) -> f64 {
        self.rate / (self.rooms * self.publishers) as f64
    }

    /// Refuses a rate the server's per-socket limit would refuse.
    pub(crate) fn check_rate(&self, socket_rate: f64) -> Result<()> {
        if self.per_publisher() > socket_rate {
            bail!(
                "rooms: each publisher would send {:.1} messages/s, above --socket-rate {}; add \
                 --publishers or --rooms, or raise the server's MESHI_RATE_PER_SEC and \
                 --socket-rate",
                self.per_publisher(),
                socket_rate
            );
        }
        Ok(())
    }
}

/// What the socket tasks of one rooms run share.
pub(crate) struct Shared {
    pub stats: Arc<Stats>,
    /// The highest seq acknowledged per room: what every member should
    /// have received once the drain is over.
    finals: Mutex<HashMap<Arc<str>, u64>>,
    /// Sends not yet answered, over all publishers, and sends about to be
    /// made (counted before a socket waits on its pacer).
    pub in_flight: AtomicI64,
    /// Cleared when the load ends: a send still waiting on its pacer then
    /// gives up, so nothing is sent after the drain has read the finals.
    publishing: AtomicBool,
    message_bytes: usize,
    drain: Duration,
}

impl Shared {
    pub fn new(stats: Arc<Stats>, message_bytes: usize, drain: Duration) -> Arc<Shared> {
        Arc::new(Shared {
            stats,
            finals: Mutex::default(),
            in_flight: AtomicI64::new(0),
            publishing: AtomicBool::new(true),
            message_bytes,
            drain,
        })
    }

    pub fn drain(&self) -> Duration {
        self.drain
    }

    /// Counts a send about to be made. Call before waiting on the pacer,
    /// then [`Shared::still_publishing`] after it.
    pub fn reserve_send(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a reserved send may go out; if not, its reservation is
    /// given back. Paired with [`Shared::stop_publishing`] through
    /// `in_flight`, so the drain either waits for the send or sees it
    /// withdrawn.
    pub fn still_publishing(&self) -> bool {
        if self.publishing.load(Ordering::SeqCst) {
            return true;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        false
    }

    /// Ends the load: sends not yet past their pacer are withdrawn.
    pub fn stop_publishing(&self) {
        self.publishing.store(false, Ordering::SeqCst);
    }

    pub fn message_bytes(&self) -> usize {
        self.message_bytes
    }

    pub fn raise_final(&self, room: &Arc<str>, seq: u64) {
        let mut finals = self.finals.lock().unwrap_or_else(|e| e.into_inner());
        let last = finals.entry(room.clone()).or_default();
        *last = (*last).max(seq);
    }

    pub fn finals(&self) -> Arc<HashMap<Arc<str>, u64>> {
        Arc::new(
            self.finals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// One member socket of one room.
pub(crate) struct Member {
    conn: Conn,
    room: Arc<str>,
    check: StreamCheck,
    /// Time between two sends, for publishers.
    period: Option<Duration>,
    /// Sends awaiting their reply: (ref, stamp time).
    outstanding: VecDeque<(u64, u64)>,
    sent: u64,
}

impl Member {
    pub fn new(conn: Conn, room: Arc<str>, after_seq: u64, period: Option<Duration>) -> Member {
        Member {
            conn,
            room,
            check: StreamCheck::new(after_seq),
            period,
            outstanding: VecDeque::new(),
            sent: 0,
        }
    }

    /// Reads, publishes on its period while loading, and drains; returns
    /// the checks of its room stream.
    pub async fn run(
        mut self,
        shared: Arc<Shared>,
        mut stage: watch::Receiver<Stage>,
    ) -> CheckTotals {
        let mut ticker = None;
        let mut last_seq = None;
        let mut drain_until = None;
        let ended = loop {
            if last_seq.is_some_and(|last| self.check.last_seq() >= last)
                && self.outstanding.is_empty()
            {
                break None;
            }
            tokio::select! {
                next = self.conn.ws.next() => match Event::of(next) {
                    Event::Text(text) => self.on_text(text.as_str(), &shared),
                    Event::Nothing => {}
                    Event::Ended(ended) => break Some(ended),
                },
                _ = tick(&mut ticker) => {
                    if let Err(ended) = self.publish(&shared).await {
                        break Some(ended);
                    }
                }
                changed = stage.changed() => {
                    if changed.is_err() {
                        break None;
                    }
                    let now = stage.borrow_and_update().clone();
                    match now {
                        Stage::Ready => {}
                        Stage::Load => ticker = self.period.map(start_ticker),
                        Stage::Quiet => ticker = None,
                        Stage::Drain(finals) => {
                            ticker = None;
                            last_seq = Some(finals.get(&self.room).copied().unwrap_or(0));
                            drain_until = Some(tokio::time::Instant::now() + shared.drain);
                        }
                    }
                }
                _ = until(drain_until) => break None,
            }
        };
        let totals = match ended {
            None => self.check.finish(last_seq),
            Some(ended) => {
                // The server closed it, which the report counts; what it
                // did not get after that is not loss.
                self.conn.record_end(ended);
                shared
                    .in_flight
                    .fetch_sub(self.outstanding.len() as i64, Ordering::Relaxed);
                self.check.finish(None)
            }
        };
        if ended.is_none() {
            self.conn.close().await;
        }
        totals
    }

    async fn publish(&mut self, shared: &Shared) -> Result<(), Ended> {
        shared.reserve_send();
        self.conn.pacer.ready().await;
        if !shared.still_publishing() {
            return Ok(());
        }
        let now = shared.stats.now_us();
        self.sent += 1;
        let stamp = Stamp {
            sent_us: now,
            origin_us: now,
            sender: self.conn.index as u64,
            n: self.sent,
        };
        let reference = self.conn.next_ref();
        let request = Request::RoomSend {
            room_id: self.room.to_string(),
            text: stamp.text(shared.message_bytes),
            client_msg_id: None,
        };
        self.outstanding.push_back((reference, now));
        shared.stats.add(Count::RoomSent, 1);
        self.conn
            .send_now(Some(reference), &request)
            .await
            .map_err(|_| Ended::Dropped)
    }

    fn on_text(&mut self, text: &str, shared: &Shared) {
        let stats = &shared.stats;
        let Some(frame) = Incoming::parse(text) else {
            stats.add(Count::Unparsed, 1);
            return;
        };
        match frame.kind.as_ref() {
            "room.message" => observe(stats, &mut self.check, &self.room, &frame, self.conn.index),
            "ok" => {
                // The room's final seq is raised before the send counts as
                // answered: the drain reads the finals as soon as nothing is
                // in flight, and must not miss this one.
                let Some(reference) = frame.reference else {
                    return;
                };
                if !self.outstanding.iter().any(|(r, _)| *r == reference) {
                    return;
                }
                if let Some(data) = frame.data_as::<SeqData>() {
                    shared.raise_final(&self.room, data.seq);
                }
                let Some(sent_us) = self.settle(reference, shared) else {
                    return;
                };
                stats.record_since(Lat::RoomAck, self.conn.index, sent_us);
                stats.add(Count::RoomAcked, 1);
            }
            "error" => {
                let Some(error) = &frame.error else {
                    return;
                };
                stats.error(&error.code);
                if let Some(reference) = frame.reference {
                    self.settle(reference, shared);
                }
                if let Some(ms) = error.retry_after_ms {
                    self.conn.pacer.back_off(ms);
                }
            }
            _ => {}
        }
    }

    /// Takes a send off the outstanding list; returns its stamp time.
    fn settle(&mut self, reference: u64, shared: &Shared) -> Option<u64> {
        let at = self.outstanding.iter().position(|(r, _)| *r == reference)?;
        let (_, sent_us) = self.outstanding.remove(at)?;
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        Some(sent_us)
    }
}

/// Checks and times a `room.message` of `room`.
pub(crate) fn observe(
    stats: &Stats,
    check: &mut StreamCheck,
    room: &str,
    frame: &Incoming<'_>,
    index: usize,
) {
    if frame.kind != "room.message" || frame.room_id.as_deref() != Some(room) {
        return;
    }
    let Some(seq) = frame.seq else {
        stats.add(Count::Unparsed, 1);
        return;
    };
    check.observe(seq, frame.message_id.as_deref().unwrap_or(""));
    stats.add(Count::RoomDelivered, 1);
    if let Some(stamp) = frame.text.as_deref().and_then(Stamp::parse) {
        stats.record_since(Lat::RoomDelivery, index, stamp.sent_us);
    }
}

/// A send ticker starting at a random point of its first period, so the
/// publishers of a run do not all send in the same millisecond.
fn start_ticker(period: Duration) -> tokio::time::Interval {
    let offset = period.mul_f64(fastrand::f64());
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    // Behind schedule, send late rather than in a burst the server's rate
    // limit would refuse; the achieved rate is reported either way.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// Opens a room from `conn`; returns its id.
pub(crate) async fn open_room(
    conn: &mut Conn,
    name: String,
    capacity: usize,
    within: Duration,
) -> Option<Arc<str>> {
    #[derive(serde::Deserialize)]
    struct Created {
        room: Id,
    }
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let request = Request::RoomCreate {
        name,
        topic: None,
        capacity: Some(capacity.clamp(2, MAX_CAPACITY) as u32),
    };
    match conn.request_patiently(&request, within).await {
        Ok(Reply::Ok(data)) => serde_json::from_str::<Created>(&data)
            .ok()
            .map(|c| Arc::from(c.room.id)),
        Ok(Reply::Error { .. }) => None,
        Err(ended) => {
            conn.record_end(ended);
            None
        }
    }
}

/// Joins `room` from `conn`; returns the room's last seq at the join.
pub(crate) async fn join_room(conn: &mut Conn, room: &str, within: Duration) -> Option<u64> {
    let started = Instant::now();
    let request = Request::RoomJoin {
        room_id: room.to_owned(),
        since_seq: None,
    };
    match conn.request_patiently(&request, within).await {
        Ok(Reply::Ok(data)) => {
            let stats = conn.stats().clone();
            stats.record(Lat::Join, conn.index, started.elapsed().as_micros() as u64);
            stats.add(Count::Joins, 1);
            serde_json::from_str::<SeqData>(&data).ok().map(|d| d.seq)
        }
        Ok(Reply::Error { .. }) => None,
        Err(ended) => {
            conn.record_end(ended);
            None
        }
    }
}

/// Provisions the users behind the sockets (registers them, or signs them
/// on with minted JWTs): `--users`, or one per socket.
pub(crate) async fn register(ctx: &Ctx, opts: &RoomsOpts, tag: char) -> Result<Vec<String>> {
    let user_count = opts.users.unwrap_or(opts.rooms * opts.members);
    let _phase = ctx.phase("rooms: register users");
    let users = ctx
        .env
        .rest
        .register_many(&ctx.handle_prefix(tag), user_count, &ctx.env.progress)
        .await?;
    Ok(users.into_iter().map(|user| user.token).collect())
}

/// Runs the scenario; as a worker of a larger run, over the users its
/// parent gave it, and its rooms are numbered from the first it was given.
pub(crate) async fn run(ctx: &Arc<Ctx>, opts: &RoomsOpts, tag: char) -> Result<()> {
    opts.validate()?;
    opts.check_rate(ctx.socket_rate())?;
    let members = opts.members;
    let sockets = opts.rooms * members;
    let (tokens, first_room): (Vec<String>, usize) = match ctx.given("rooms")? {
        Some(given) if !given.tokens.is_empty() => (given.tokens.clone(), given.first),
        Some(_) => bail!("rooms: the worker was given no users"),
        None => (register(ctx, opts, tag).await?, 0),
    };
    let user_count = tokens.len();
    let mut conns = {
        let _phase = ctx.phase("rooms: connect");
        connect_all(ctx, "rooms: connect", sockets, |i| {
            tokens[i % user_count].as_str()
        })
        .await
    };
    if conns.iter().all(Option::is_none) {
        bail!(
            "rooms: no socket could connect and say hello ({:?})",
            ctx.stats.transport_errors()
        );
    }

    let mut rooms: Vec<Option<Arc<str>>> = Vec::with_capacity(opts.rooms);
    {
        let phase = ctx.phase("rooms: open and join");
        for r in 0..opts.rooms {
            let room = match conns[r * members].as_mut() {
                Some(host) => {
                    open_room(
                        host,
                        format!("load {}", first_room + r),
                        members,
                        ctx.timeout(),
                    )
                    .await
                }
                None => None,
            };
            if room.is_none() {
                conns[r * members] = None;
            }
            rooms.push(room);
        }
        let rooms = &rooms;
        let joined: Vec<(usize, Option<u64>)> = stream::iter(conns.iter_mut().enumerate())
            .map(|(index, slot)| async move {
                let room = rooms[index / members].as_ref()?;
                let conn = slot.as_mut()?;
                if index % members == 0 {
                    return Some((index, Some(0)));
                }
                let last = join_room(conn, room, ctx.timeout()).await;
                if last.is_none() {
                    *slot = None;
                }
                Some((index, last))
            })
            .buffer_unordered(ctx.env.options.connect_concurrency.max(1))
            .filter_map(|joined| async move { joined })
            .collect()
            .await;
        let mut after = vec![None; sockets];
        for (index, last) in joined {
            after[index] = last;
        }
        let period = Duration::from_secs_f64(1.0 / opts.per_publisher());
        let shared = Shared::new(ctx.stats.clone(), opts.message_bytes, ctx.timeout());
        let (stage, watch) = watch::channel(Stage::Ready);
        let mut tasks = Vec::with_capacity(sockets);
        for (index, slot) in conns.drain(..).enumerate() {
            let (Some(conn), Some(room), Some(last)) =
                (slot, rooms[index / members].clone(), after[index])
            else {
                continue;
            };
            let publishes = index % members < opts.publishers;
            let member = Member::new(conn, room, last, publishes.then_some(period));
            tasks.push(tokio::spawn(member.run(shared.clone(), watch.clone())));
        }
        drop(phase);
        ctx.figure("rooms_target_msgs_per_sec", opts.rate);
        ctx.figure(
            "rooms_target_deliveries_per_sec",
            opts.rate * members as f64,
        );
        ctx.figure("rooms_member_sockets", tasks.len() as f64);
        load(ctx, opts, &shared, &stage).await;
        let _phase = ctx.phase("rooms: drain");
        let mut totals = CheckTotals::default();
        for task in tasks {
            if let Ok(member) = task.await {
                totals.add(&member);
            }
        }
        ctx.stats.add_checks(&totals);
    }
    Ok(())
}

async fn load(ctx: &Ctx, opts: &RoomsOpts, shared: &Shared, stage: &watch::Sender<Stage>) {
    ctx.start_load().await;
    {
        let _phase = ctx.phase("rooms: load");
        let _ = stage.send(Stage::Load);
        let stats = &ctx.stats;
        let started = Instant::now();
        load_for(
            ctx,
            Duration::from_secs_f64(opts.duration),
            "rooms: load",
            || {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                format!(
                    "sent {:.0}/s delivered {:.0}/s",
                    stats.count(Count::RoomSent) as f64 / secs,
                    stats.count(Count::RoomDelivered) as f64 / secs
                )
            },
        )
        .await;
        ctx.end_load();
        let _ = stage.send(Stage::Quiet);
    }
    shared.stop_publishing();
    if !settle(&shared.in_flight, ctx.timeout()).await {
        ctx.note(format!(
            "rooms: {} sends were still unanswered when the drain began",
            shared.in_flight.load(Ordering::Relaxed)
        ));
    }
    let _ = stage.send(Stage::Drain(shared.finals()));
}
