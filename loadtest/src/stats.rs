//! What a run measures while it runs: counters, latency histograms, error
//! and close codes, and the check totals of finished streams.
//!
//! Thousands of socket tasks record at once, so counters are atomics and
//! each histogram is split into shards picked by socket index; a shard's
//! lock is only ever held for one record, never across an await.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::check::CheckTotals;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $label:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }
        }
    };
}

named_enum! {
    /// Things counted during a run.
    Count {
        Connected => "sockets_connected",
        ConnectFailed => "connect_failures",
        HelloOk => "hellos",
        Joins => "room_joins",
        Leaves => "room_leaves",
        RoomSent => "room_sent",
        RoomAcked => "room_acked",
        RoomDelivered => "room_delivered",
        DmSent => "dm_sent",
        DmAcked => "dm_acked",
        DmDelivered => "dm_delivered",
        RoundTrips => "dm_round_trips",
        ChurnCycles => "churn_cycles",
        ErrorFrames => "error_frames",
        Unparsed => "unparsed_frames",
    }
}

named_enum! {
    /// Latencies measured during a run.
    Lat {
        Connect => "connect",
        Hello => "hello",
        Join => "room_join",
        RoomAck => "room_ack",
        RoomDelivery => "room_delivery",
        DmAck => "dm_ack",
        DmDelivery => "dm_delivery",
        DmRoundTrip => "dm_round_trip",
        ChurnCycle => "churn_cycle",
    }
}

const SHARDS: usize = 8;
/// Largest latency a histogram holds: two minutes, in µs. Longer ones are
/// clamped rather than dropped.
const MAX_MICROS: u64 = 120_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking recorder leaves a histogram or a map that is still valid.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

struct Shard {
    total: Histogram<u64>,
    /// Since the sampler last took it, for latency over time.
    interval: Histogram<u64>,
}

struct Hist {
    shards: Vec<Mutex<Shard>>,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        total: new_histogram(),
                        interval: new_histogram(),
                    })
                })
                .collect(),
        }
    }

    fn record(&self, shard: usize, micros: u64) {
        let mut shard = lock(&self.shards[shard % SHARDS]);
        shard.total.saturating_record(micros.max(1));
        shard.interval.saturating_record(micros.max(1));
    }

    fn take_interval(&self) -> Histogram<u64> {
        let mut sum = new_histogram();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let _ = sum.add(&shard.interval);
            shard.interval.reset();
        }
        sum
    }

    fn total(&self) -> Histogram<u64> {
        let mut sum = new_histogram();
        for shard in &self.shards {
            let _ = sum.add(&lock(shard).total);
        }
        sum
    }
}

/// A histogram as (value, count) for each bucket that holds anything:
/// how a worker hands its latencies to its parent. Recording the pairs
/// again with [`from_buckets`] gives the same histogram, so merged
/// percentiles are as exact as those of one process.
pub fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// The histogram [`buckets`] described.
pub fn from_buckets(buckets: &[(u64, u64)]) -> Histogram<u64> {
    let mut h = new_histogram();
    for &(value, count) in buckets {
        let _ = h.record_n(value.clamp(1, MAX_MICROS), count);
    }
    h
}

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// Whether the percentiles never decrease from min to max.
    pub fn ordered(&self) -> bool {
        let values = [self.min, self.p50, self.p90, self.p99, self.p999, self.max];
        values.windows(2).all(|w| w[0] <= w[1])
    }
}

/// Counter values at one moment.
pub type Snapshot = Vec<u64>;

pub struct Stats {
    epoch: Instant,
    counts: Vec<AtomicU64>,
    open: AtomicI64,
    hists: Vec<Hist>,
    errors: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
    transport: Mutex<BTreeMap<String, u64>>,
    checks: Mutex<CheckTotals>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            epoch: Instant::now(),
            counts: Count::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            open: AtomicI64::new(0),
            hists: Lat::ALL.iter().map(|_| Hist::new()).collect(),
            errors: Mutex::default(),
            closes: Mutex::default(),
            transport: Mutex::default(),
            checks: Mutex::default(),
        }
    }

    /// Microseconds since the run began; what message stamps carry.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn add(&self, count: Count, n: u64) {
        self.counts[count as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn count(&self, count: Count) -> u64 {
        self.counts[count as usize].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    pub fn record(&self, lat: Lat, shard: usize, micros: u64) {
        self.hists[lat as usize].record(shard, micros);
    }

    /// Records the time from `sent_us` (a stamp) until now.
    pub fn record_since(&self, lat: Lat, shard: usize, sent_us: u64) {
        self.record(lat, shard, self.now_us().saturating_sub(sent_us));
    }

    pub fn latency(&self, lat: Lat) -> Histogram<u64> {
        self.hists[lat as usize].total()
    }

    pub fn take_interval(&self, lat: Lat) -> Histogram<u64> {
        self.hists[lat as usize].take_interval()
    }

    pub fn socket_opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn socket_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn open_sockets(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// An `error` frame from the server, by its code.
    pub fn error(&self, code: &str) {
        self.add(Count::ErrorFrames, 1);
        *lock(&self.errors).entry(code.to_owned()).or_default() += 1;
    }

    /// A socket the server closed, by close code.
    pub fn closed_by_server(&self, code: u16) {
        *lock(&self.closes).entry(code.to_string()).or_default() += 1;
    }

    /// A failure below the protocol: refused connects, timeouts, resets.
    pub fn transport(&self, what: &str) {
        *lock(&self.transport).entry(what.to_owned()).or_default() += 1;
    }

    pub fn add_checks(&self, totals: &CheckTotals) {
        lock(&self.checks).add(totals);
    }

    pub fn checks(&self) -> CheckTotals {
        *lock(&self.checks)
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    pub fn closes(&self) -> BTreeMap<String, u64> {
        lock(&self.closes).clone()
    }

    pub fn transport_errors(&self) -> BTreeMap<String, u64> {
        lock(&self.transport).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_and_intervals_reset() {
        let stats = Stats::new();
        for i in 0..100u64 {
            stats.record(Lat::RoomDelivery, i as usize, (i + 1) * 1000);
        }
        let total = Percentiles::of(&stats.latency(Lat::RoomDelivery));
        assert_eq!(total.count, 100);
        assert!(total.ordered());
        assert!((total.p50 - 50.0).abs() < 0.5, "{total:?}");
        assert_eq!(stats.take_interval(Lat::RoomDelivery).len(), 100);
        assert_eq!(stats.take_interval(Lat::RoomDelivery).len(), 0);
        assert_eq!(stats.latency(Lat::RoomDelivery).len(), 100);
    }

    #[test]
    fn buckets_rebuild_the_same_histogram() {
        let mut h = new_histogram();
        for i in 1..5_000u64 {
            h.record(i * 37 % 90_000 + 1).unwrap();
        }
        h.record(MAX_MICROS).unwrap();
        let back = from_buckets(&buckets(&h));
        assert_eq!(back, h);
        assert_eq!(Percentiles::of(&back), Percentiles::of(&h));
    }

    #[test]
    fn errors_count_by_code() {
        let stats = Stats::new();
        stats.error("rate_limited");
        stats.error("rate_limited");
        stats.error("room_full");
        assert_eq!(stats.errors()["rate_limited"], 2);
        assert_eq!(stats.count(Count::ErrorFrames), 3);
    }
}
