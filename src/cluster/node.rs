//! This node's part in the cluster's upkeep: heartbeats, cleaning up after
//! dead nodes, closing rooms that stayed empty, and putting its state back
//! when Redis forgot it.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Cluster, ClusterPresence, ClusterRooms};
use crate::presence::Presence;

/// The upkeep runs at least this often, for closing emptied rooms on time.
const TICK_MAX: Duration = Duration::from_secs(1);
/// How long a direct message waits for an earlier one that has not reached
/// Redis before it is pushed anyway.
const DM_GAP_WAIT: Duration = Duration::from_secs(1);
/// Every this many rounds, presence in Redis is checked against this
/// node's sockets, in case a report was lost while Redis was away.
const RECONCILE_EVERY: u64 = 10;

pub struct Upkeep {
    pub cluster: Cluster,
    pub rooms: Arc<ClusterRooms>,
    pub presence: Presence,
    pub cluster_presence: ClusterPresence,
    pub ttl: Duration,
}

impl Upkeep {
    /// Runs until `stop` is cancelled. The node keeps heartbeating while it
    /// drains, so nobody takes it for dead while its sockets say goodbye.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            // A node restarted under the same id cleans up after its former
            // self before it counts as alive.
            let own = self.cluster.node().to_owned();
            self.bury(&own).await;
            let mut tick = tokio::time::interval((self.ttl / 3).min(TICK_MAX));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut first = true;
            let mut failing = false;
            let mut rounds: u64 = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                rounds += 1;
                match self
                    .round(first, rounds.is_multiple_of(RECONCILE_EVERY))
                    .await
                {
                    Ok(()) => {
                        if failing {
                            tracing::info!("cluster upkeep reaches Redis again");
                        }
                        failing = false;
                        first = false;
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(%error, "cluster upkeep cannot reach Redis");
                        }
                        failing = true;
                    }
                }
            }
        })
    }

    async fn round(&self, first: bool, reconcile: bool) -> redis::RedisResult<()> {
        let known = self.cluster.heartbeat(self.ttl).await?;
        if !known && !first {
            tracing::warn!("the cluster forgot this node; putting its rooms and users back");
            self.restore().await;
        }
        for dead in self.cluster.claim_dead().await? {
            tracing::warn!(node = %dead, "a node stopped heartbeating; its users leave");
            self.bury(&dead).await;
        }
        self.rooms.retry_leaves().await?;
        if reconcile {
            let presence = self.presence.clone();
            let offline = self
                .cluster_presence
                .reconcile(move || presence.local_users())
                .await?;
            for user in offline {
                self.presence.gone_with_node(user).await;
            }
        }
        self.cluster.flush_parked_dms(DM_GAP_WAIT).await?;
        self.rooms.close_emptied().await
    }

    async fn restore(&self) {
        if let Err(error) = self.rooms.restore_all().await {
            tracing::warn!(%error, "could not put rooms back into Redis");
        }
        let users = self.presence.local_users();
        if let Err(error) = self.cluster_presence.restore(&users).await {
            tracing::warn!(%error, "could not put presence back into Redis");
        }
    }

    /// Takes a gone node's users out of their rooms and offline.
    async fn bury(&self, node: &str) {
        if let Err(error) = self.rooms.reap(node).await {
            tracing::warn!(%error, node, "could not take a dead node's users out of rooms");
        }
        match self.cluster_presence.reap(node).await {
            Ok(offline) => {
                for user in offline {
                    self.presence.gone_with_node(user).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, node, "could not take a dead node's users offline")
            }
        }
    }
}
