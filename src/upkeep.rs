//! This node's part in the cluster's upkeep: heartbeats, cleaning up after
//! dead nodes, closing rooms that stayed empty, and putting its state back
//! when Redis forgot it. It stands above both `cluster` and `presence`
//! because it moves state between them; neither of those imports it.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterError, ClusterPresence, RedisEngine};
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
    pub rooms: Arc<RedisEngine>,
    pub presence: Presence,
    pub cluster_presence: ClusterPresence,
    pub ttl: Duration,
}

impl Upkeep {
    /// Takes this node's id, cleans up after a former node of the same
    /// id, heartbeats once, then keeps the upkeep going until `stop` is
    /// cancelled. The node keeps heartbeating while it drains, so nobody
    /// takes it for dead while its sockets say goodbye.
    pub async fn start(self, stop: CancellationToken) -> Result<JoinHandle<()>, ClusterError> {
        self.take_id().await?;
        let own = self.cluster.node().to_owned();
        self.bury(&own).await;
        self.cluster
            .heartbeat(self.ttl)
            .await
            .map_err(ClusterError::Connect)?;
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval((self.ttl / 3).min(TICK_MAX));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut failing = false;
            let mut rounds: u64 = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                rounds += 1;
                match self.round(rounds.is_multiple_of(RECONCILE_EVERY)).await {
                    Ok(()) => {
                        if failing {
                            tracing::info!("cluster upkeep reaches Redis again");
                        }
                        failing = false;
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(%error, "cluster upkeep cannot reach Redis");
                        }
                        failing = true;
                    }
                }
            }
        }))
    }

    /// Waits for a node that had this id to stop heartbeating; refuses
    /// the id while one still does, since two nodes of one id would take
    /// each other's deliveries for their own.
    async fn take_id(&self) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + self.ttl * 2;
        let mut told = false;
        loop {
            let alive = self
                .cluster
                .is_alive(self.cluster.node())
                .await
                .map_err(ClusterError::Connect)?;
            if !alive {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::NodeIdInUse(self.cluster.node().to_owned()));
            }
            if !told {
                tracing::warn!(
                    node = self.cluster.node(),
                    "a node with this id heartbeated lately; waiting for it to lapse"
                );
                told = true;
            }
            tokio::time::sleep(self.ttl / 4).await;
        }
    }

    async fn round(&self, reconcile: bool) -> redis::RedisResult<()> {
        let known = self.cluster.heartbeat(self.ttl).await?;
        if !known {
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
