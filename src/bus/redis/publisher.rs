//! The one task that sends this node's deliveries to Redis: it drains the
//! bounded queue in order, one pipeline of PUBLISH commands per batch. It
//! never subscribes and never delivers to local sockets (`publish` did
//! that already); a batch Redis refuses is counted as dropped, not kept.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::codec::{encode, encode_probe};
use super::{Channels, Health, BACKOFF_MIN};
use crate::clock::now_ms;
use crate::hub::subscribers::{Delivery, Topic};

/// Deliveries sent to Redis in one pipeline.
const BATCH: usize = 256;
/// The publisher pings when it has sent nothing for this long.
const PING_EVERY_IDLE: Duration = Duration::from_secs(1);
/// How often this node tells the others the time, for their lag gauge.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Further tries of a batch whose first send failed.
const PUBLISH_RETRIES: usize = 3;

fn topic_of(delivery: &Delivery) -> &Topic {
    match delivery {
        Delivery::Frame { topic, .. }
        | Delivery::Close { topic, .. }
        | Delivery::Evict { topic, .. } => topic,
    }
}

pub(super) struct Publisher {
    pub(super) conn: ConnectionManager,
    pub(super) queued: mpsc::Receiver<Delivery>,
    pub(super) channels: Channels,
    /// The channel of the lag probes ([`Channels::probes`]).
    pub(super) probes: String,
    pub(super) node_id: String,
    pub(super) health: Arc<Health>,
    /// When the probe now due was stamped; it goes out with the next batch.
    pub(super) probe_due: Option<i64>,
}

impl Publisher {
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut draining = false;
        let mut idle = tokio::time::interval(PING_EVERY_IDLE);
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = if draining {
                self.queued.recv_many(&mut batch, BATCH).await
            } else {
                tokio::select! {
                    biased;
                    // First, or a busy queue would starve it: lag matters
                    // most when the node is busiest. Stamped now, it rides
                    // behind what is queued, so the lag counts the wait.
                    _ = probe.tick() => {
                        self.probe_due = Some(now_ms());
                        if self.queued.is_empty() {
                            self.probe().await;
                        }
                        continue;
                    }
                    n = self.queued.recv_many(&mut batch, BATCH) => n,
                    () = shutdown.cancelled() => {
                        // What was queued before shutdown still goes out.
                        self.queued.close();
                        draining = true;
                        continue;
                    }
                    _ = idle.tick() => {
                        self.ping().await;
                        continue;
                    }
                }
            };
            idle.reset();
            if received == 0 {
                return;
            }
            self.send(&mut batch).await;
        }
    }

    /// An idle connection that died unnoticed would lose the next batch;
    /// a ping finds out first and lets the manager reconnect.
    async fn ping(&mut self) {
        let answered = redis::cmd("PING")
            .query_async::<String>(&mut self.conn)
            .await;
        let up = answered.is_ok();
        if self.health.publisher_up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("bus publishing to Redis again");
            } else {
                tracing::warn!("bus cannot reach Redis to publish");
            }
        }
    }

    /// Publishes the due probe alone, the queue being empty. Not while
    /// Redis is away: the ping finds out when it is back, and a probe
    /// waiting on a dead connection would hold up the batches.
    async fn probe(&mut self) {
        if !self.health.publisher_up.load(Ordering::Relaxed) {
            return;
        }
        if let Some(sent_at) = self.probe_due.take() {
            let _ = redis::cmd("PUBLISH")
                .arg(&self.probes)
                .arg(encode_probe(&self.node_id, sent_at))
                .query_async::<i64>(&mut self.conn)
                .await;
        }
    }

    async fn send(&mut self, batch: &mut Vec<Delivery>) {
        let mut pipe = redis::pipe();
        for delivery in batch.iter() {
            pipe.publish(
                self.channels.name(topic_of(delivery)),
                encode(&self.node_id, delivery),
            )
            .ignore();
        }
        if let Some(sent_at) = self.probe_due.take() {
            pipe.publish(&self.probes, encode_probe(&self.node_id, sent_at))
                .ignore();
        }
        let sent = batch.len() as u64;
        batch.clear();
        let started = Instant::now();
        let mut result = pipe.query_async::<()>(&mut self.conn).await;
        // A connection that broke since the last batch fails this one
        // while the manager reconnects; one more try usually lands it.
        // A timeout may have published after all, so only a refused or
        // broken connection is retried: nothing is delivered twice.
        for _ in 0..PUBLISH_RETRIES {
            match &result {
                Err(error)
                    if !error.is_timeout()
                        && (error.is_connection_dropped()
                            || error.is_connection_refusal()
                            || error.is_io_error()) => {}
                _ => break,
            }
            tokio::time::sleep(BACKOFF_MIN).await;
            result = pipe.query_async::<()>(&mut self.conn).await;
        }
        match result {
            Ok(()) => {
                metrics::histogram!("meshi_bus_publish_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("meshi_bus_published_total").increment(sent);
                if !self.health.publisher_up.swap(true, Ordering::Relaxed) {
                    tracing::info!("bus publishing to Redis again");
                }
            }
            Err(error) => {
                metrics::counter!("meshi_bus_publish_errors_total").increment(1);
                metrics::counter!("meshi_bus_dropped_total").increment(sent);
                if self.health.publisher_up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "bus cannot publish to Redis; other nodes miss deliveries");
                }
            }
        }
    }
}
