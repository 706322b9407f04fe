//! What every handler and socket is given: the node's services behind one
//! pointer. `app` builds it; `http` and `ws` only read it, so neither
//! imports the module that wires them.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Accounts;
use crate::cluster::{Cluster, RedisEngine};
use crate::config::Config;
use crate::dm::DirectMessages;
use crate::hub::Hub;
use crate::notify::Notifier;
use crate::presence::Presence;
use crate::rooms::Rooms;
use crate::store::Store;

/// Everything a handler or a socket needs, behind one pointer: axum clones
/// the state for every request and every socket, and cloning each service
/// (a dozen reference counts and a vector of channels) showed in profiles
/// of connect storms.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub accounts: Accounts,
    pub hub: Hub,
    pub rooms: Rooms,
    /// The rooms' engine when it is Redis, for the cluster's upkeep.
    pub redis_rooms: Option<Arc<RedisEngine>>,
    /// Set when this node is one of a cluster.
    pub cluster: Option<Cluster>,
    pub notifier: Notifier,
    pub dms: DirectMessages,
    pub presence: Presence,
    pub metrics: PrometheusHandle,
    /// Cancelled when the node starts draining.
    pub shutdown: CancellationToken,
    /// Every socket and timer, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Open sockets per client address, for `MESHI_MAX_SOCKETS_PER_ADDR`.
    pub sockets_by_addr: crate::net::CountsByAddr,
}
