//! Who is online, and telling their matched partners when that changes.
//!
//! A user is online while at least one of their sockets is open. Partners
//! hear only of transitions, not of each extra socket. Going offline waits
//! a short grace, so a quick reconnect (a page reload, a network blip) does
//! not flap: if a socket comes back within it, nobody hears anything.
//!
//! In a cluster, this node's transitions go to Redis ([`ClusterPresence`]),
//! which says whether they change the user's state for the whole cluster;
//! only those are announced.

use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::{DashMap, DashSet};
use meshi_protocol::{Presence as PresenceFrame, PresenceStatus, ServerFrame};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{now_ms, rfc3339};
use crate::cluster::ClusterPresence;
use crate::error::Result;
use crate::hub::subscribers::Topic;
use crate::hub::Frame;
use crate::hub::{encode, Hub};
use crate::store::Store;

#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    store: Store,
    users: DashMap<i64, Tracked>,
    /// Users whose partners were last told `online`. Lock order: a
    /// `users` shard, then this.
    heard_online: DashSet<i64>,
    offline_grace: Duration,
    cluster: Option<ClusterPresence>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct Tracked {
    sockets: u32,
    /// Bumped on every change, so a pending offline can tell it is stale.
    epoch: u64,
    announced_online: bool,
}

impl Presence {
    pub fn new(
        hub: Hub,
        store: Store,
        offline_grace: Duration,
        cluster: Option<ClusterPresence>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Presence {
            inner: Arc::new(Inner {
                hub,
                store,
                users: DashMap::new(),
                heard_online: DashSet::new(),
                offline_grace,
                cluster,
                tasks,
                shutdown,
            }),
        }
    }

    /// Users with at least one socket open on this node.
    pub fn users_here(&self) -> usize {
        self.inner.users.len()
    }

    /// Which of `users` are online, on any node, in order.
    pub async fn online(&self, users: &[i64]) -> Result<Vec<bool>> {
        match &self.inner.cluster {
            Some(cluster) => Ok(cluster.online(users).await?),
            None => Ok(users
                .iter()
                .map(|user| self.inner.users.contains_key(user))
                .collect()),
        }
    }

    /// Users with a socket on this node.
    pub fn local_users(&self) -> Vec<i64> {
        self.inner.users.iter().map(|e| *e.key()).collect()
    }

    /// Another node died holding `user`'s last socket: tell their partners
    /// they are offline.
    pub async fn gone_with_node(&self, user: i64) {
        let now = now_ms();
        if let Err(err) = self.inner.store.set_last_seen(user, now).await {
            tracing::warn!(error = %err, user, "could not store last_seen_at");
        }
        if let Some((partners, frame)) =
            news_for_partners(&self.inner, user, PresenceStatus::Offline, Some(now)).await
        {
            for partner in partners {
                self.inner
                    .hub
                    .publish_frame(Topic::User(partner), frame.clone());
            }
        }
    }

    /// A socket of `user` said hello.
    pub fn connected(&self, user: i64) {
        let newly_online = {
            let mut tracked = self.inner.users.entry(user).or_default();
            tracked.sockets += 1;
            tracked.epoch += 1;
            !std::mem::replace(&mut tracked.announced_online, true)
        };
        if newly_online {
            self.announce(user, PresenceStatus::Online, None);
        }
    }

    /// A socket of `user` closed.
    pub fn disconnected(&self, user: i64) {
        let epoch = {
            let Some(mut tracked) = self.inner.users.get_mut(&user) else {
                return;
            };
            tracked.sockets = tracked.sockets.saturating_sub(1);
            tracked.epoch += 1;
            if tracked.sockets > 0 {
                return;
            }
            tracked.epoch
        };
        let presence = self.clone();
        let shutdown = self.inner.shutdown.clone();
        let grace = self.inner.offline_grace;
        self.inner.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                // A draining node still says goodbye: its users go offline.
                _ = shutdown.cancelled() => {}
            }
            presence.go_offline_if_still_gone(user, epoch).await;
        });
    }

    async fn go_offline_if_still_gone(&self, user: i64, epoch: u64) {
        let gone = self
            .inner
            .users
            .remove_if(&user, |_, t| t.sockets == 0 && t.epoch == epoch)
            .is_some();
        if !gone {
            return;
        }
        let now = now_ms();
        if let Err(err) = self.inner.store.set_last_seen(user, now).await {
            tracing::warn!(error = %err, user, "could not store last_seen_at");
        }
        self.announce(user, PresenceStatus::Offline, Some(now));
    }

    /// Tells every partner of `user`; the partner list needs the database,
    /// so this runs on its own task and never holds up a socket.
    fn announce(&self, user: i64, status: PresenceStatus, last_seen_at: Option<i64>) {
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            // While Redis is away nobody else can be told, and asking
            // would wait out the client's reconnects: this node's partners
            // hear it at once, and upkeep puts Redis in line once it is
            // back.
            let cluster = inner.cluster.as_ref().filter(|c| c.is_connected());
            let mut redis_says_news = false;
            if let Some(cluster) = cluster {
                let changed = match status {
                    PresenceStatus::Online => cluster.arrived(user).await,
                    PresenceStatus::Offline => cluster.departed(user).await,
                };
                // A transition racing the other way may have reached Redis
                // first; put Redis back in line with this node.
                let here = inner.users.contains_key(&user);
                let settle = match (status, here) {
                    (PresenceStatus::Online, false) => cluster.departed(user).await.map(drop),
                    (PresenceStatus::Offline, true) => cluster.arrived(user).await.map(drop),
                    _ => Ok(()),
                };
                if let Err(error) = settle {
                    tracing::warn!(%error, user, "could not report presence to Redis");
                }
                match changed {
                    Ok(true) => redis_says_news = true,
                    // Another node holds the user still, or held them first.
                    Ok(false) => return,
                    // Redis went away meanwhile: as above.
                    Err(error) => {
                        tracing::warn!(%error, user, "could not report presence to Redis");
                    }
                }
            }
            let Some((partners, frame)) =
                news_for_partners(&inner, user, status, last_seen_at).await
            else {
                return;
            };
            let publish = || {
                for &partner in &partners {
                    inner.hub.publish_frame(Topic::User(partner), frame.clone());
                }
            };
            // Loading partners took a while; publish only if the status
            // still holds and is news to the partners, under the user's
            // shard lock, so an old transition never lands after a newer
            // one and partners never hear the same status twice running.
            // In a cluster, Redis has usually said already that this is
            // news; while it is away, this node's own record decides.
            let entry = inner.users.entry(user);
            let news = match (&entry, status) {
                (Entry::Occupied(_), PresenceStatus::Online) => {
                    inner.heard_online.insert(user) || redis_says_news
                }
                (Entry::Vacant(_), PresenceStatus::Offline) => {
                    inner.heard_online.remove(&user).is_some() || redis_says_news
                }
                _ => false,
            };
            if news {
                publish();
            }
            drop(entry);
        });
    }
}

/// The partners to tell of `user`'s new status and the frame telling them;
/// `None` when there is nobody to tell or the partners cannot be loaded.
async fn news_for_partners(
    inner: &Inner,
    user: i64,
    status: PresenceStatus,
    last_seen_at: Option<i64>,
) -> Option<(Vec<i64>, Frame)> {
    let partners = match inner.store.partner_ids(user).await {
        Ok(partners) => partners,
        Err(err) => {
            tracing::warn!(error = %err, user, "could not load partners for presence");
            return None;
        }
    };
    if partners.is_empty() {
        return None;
    }
    let frame = encode(&ServerFrame::Presence(PresenceFrame {
        user_id: user.to_string(),
        status,
        last_seen_at: last_seen_at.map(rfc3339),
    }));
    Some((partners, frame))
}
