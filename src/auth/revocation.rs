//! Revocation that cannot be missed.
//!
//! A logout closes its sockets through the bus at once, but the bus drops
//! when it is full and Redis pub/sub delivers at most once: a node that was
//! reconnecting to Redis never hears it. The sessions table is the record
//! that does not forget, so every node sweeps it: every
//! `MESHI_REVOCATION_CHECK_SECS`, and at once whenever its bus has
//! subscribed again after losing Redis, it asks which of the sessions its
//! sockets were opened with have ended, and closes those sockets with 4010.
//! A sweep costs one primary-key lookup per 500 local sessions.
//!
//! Suspensions are swept the same way: a suspended user's sockets close
//! with 4010 on every node that missed the suspension's bus message,
//! including sockets opened with an identity-provider JWT, which have no
//! session to revoke. That costs one more lookup per 500 local users.

use std::time::Duration;

use meshi_protocol::close;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::now_ms;
use crate::hub::subscribers::Topic;
use crate::hub::Hub;
use crate::store::Store;

/// The close reason of a socket whose session was revoked.
pub const REVOKED: &str = "token revoked";
/// The close reason of a socket whose user was suspended.
pub const SUSPENDED: &str = "account suspended";

pub struct RevocationSweep {
    pub store: Store,
    pub hub: Hub,
    pub every: Duration,
    /// Changes when the bus subscribed again after losing Redis; `None`
    /// on a node alone, whose bus cannot miss anything.
    pub resubscribed: Option<watch::Receiver<u64>>,
}

impl RevocationSweep {
    /// Sweeps until `shutdown`, on a task `tasks` tracks.
    pub fn start(self, tasks: &TaskTracker, shutdown: CancellationToken) {
        tasks.spawn(self.run(shutdown));
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.reset();
        loop {
            let resubscribed = async {
                match &mut self.resubscribed {
                    Some(changes) => {
                        if changes.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticks.tick() => {}
                () = resubscribed => tracing::info!("bus is back: sweeping for revocations it may have missed"),
                () = shutdown.cancelled() => return,
            }
            if let Err(error) = self.sweep().await {
                tracing::warn!(%error, "revocation sweep failed; the next one tries again");
            }
        }
    }

    /// Closes this node's sockets whose session has ended or whose user is
    /// suspended; returns how many sessions and users that was.
    pub async fn sweep(&self) -> Result<usize, crate::store::StoreError> {
        let topics = self.hub.subscribers().topics();
        let sessions: Vec<i64> = topics
            .iter()
            .filter_map(|topic| match topic {
                Topic::Session(id) => Some(*id),
                _ => None,
            })
            .collect();
        let users: Vec<i64> = topics
            .iter()
            .filter_map(|topic| match topic {
                Topic::User(id) => Some(*id),
                _ => None,
            })
            .collect();
        Ok(self.sweep_sessions(&sessions).await? + self.sweep_suspended(&users).await?)
    }

    async fn sweep_suspended(&self, users: &[i64]) -> Result<usize, crate::store::StoreError> {
        if users.is_empty() {
            return Ok(0);
        }
        let suspended = self.store.suspended_among(users, now_ms()).await?;
        for user in &suspended {
            self.hub
                .close_here(Topic::User(*user), close::TOKEN_ENDED, SUSPENDED);
        }
        if !suspended.is_empty() {
            metrics::counter!("meshi_suspensions_swept_total").increment(suspended.len() as u64);
            tracing::info!(
                users = suspended.len(),
                "closed sockets of suspended users the bus did not end"
            );
        }
        Ok(suspended.len())
    }

    async fn sweep_sessions(&self, sessions: &[i64]) -> Result<usize, crate::store::StoreError> {
        if sessions.is_empty() {
            return Ok(0);
        }
        let ended = self.store.ended_sessions(sessions).await?;
        for session in &ended {
            self.hub
                .close_here(Topic::Session(*session), close::TOKEN_ENDED, REVOKED);
        }
        if !ended.is_empty() {
            metrics::counter!("meshi_revocations_swept_total").increment(ended.len() as u64);
            tracing::info!(
                sessions = ended.len(),
                "closed sockets of sessions the bus did not end"
            );
        }
        Ok(ended.len())
    }
}
