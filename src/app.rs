//! Wires the services together and runs the server until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::jwt::{JwtSetupError, JwtVerifier};
use crate::auth::Accounts;
use crate::bus::{Bus, BusError, LocalBus, RedisBus};
use crate::cluster::{Cluster, ClusterError, ClusterPresence, RedisEngine};
use crate::config::{Config, ConfigError, TlsRoots};
use crate::dm::DirectMessages;
use crate::hub::subscribers::Subscribers;
use crate::hub::Hub;
use crate::notify::Notifier;
use crate::presence::Presence;
use crate::rooms::memory::MemoryEngine;
use crate::rooms::quota::RoomQuota;
use crate::rooms::{RoomEngine, RoomSettings, Rooms};
use crate::state::{AppState, Services};
use crate::store::{ConnectOptions, Store, StoreError};
use crate::upkeep::Upkeep;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot join the cluster: {0}")]
    Bus(#[from] BusError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("single sign-on is misconfigured: {0}")]
    Jwt(#[from] JwtSetupError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// How this node reaches the others: not at all, or through Redis.
pub enum Reach {
    Alone,
    Cluster {
        cluster: Cluster,
        bus: Arc<RedisBus>,
    },
}

impl AppState {
    /// Builds every service. `jwt` checks identity-provider tokens; `None`
    /// refuses them all. `subscribers` are the ones `reach` delivers to.
    pub fn new(
        config: Config,
        store: Store,
        jwt: Option<JwtVerifier>,
        subscribers: Arc<Subscribers>,
        reach: Reach,
    ) -> Self {
        let config = Arc::new(config);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (bus, cluster): (Arc<dyn Bus>, _) = match reach {
            Reach::Alone => (Arc::new(LocalBus::new(subscribers.clone())), None),
            Reach::Cluster { cluster, bus } => (bus, Some(cluster)),
        };
        let hub = Hub::new(bus, subscribers);
        let settings = RoomSettings {
            empty_grace: config.room_empty_grace(),
            history: config.room_history as usize,
            quota: RoomQuota {
                max_hosted: config.max_hosted_rooms,
                create_per_min: config.room_create_per_min,
            },
        };
        // The one place where one node and a cluster part ways for rooms.
        let (engine, redis_rooms): (Arc<dyn RoomEngine>, _) = match &cluster {
            Some(cluster) => {
                let engine = Arc::new(RedisEngine::new(cluster.clone(), settings.clone()));
                (engine.clone(), Some(engine))
            }
            None => (
                Arc::new(MemoryEngine::new(
                    hub.clone(),
                    settings.clone(),
                    tasks.clone(),
                    shutdown.clone(),
                )),
                None,
            ),
        };
        let rooms = Rooms::new(hub.clone(), engine, settings);
        AppState(Arc::new(Services {
            accounts: Accounts::new(store.clone(), config.clone(), jwt),
            notifier: Notifier::new(store.clone(), hub.clone()),
            dms: DirectMessages::start(store.clone(), hub.clone(), cluster.clone()),
            presence: Presence::new(
                hub.clone(),
                store.clone(),
                Duration::from_millis(config.presence_grace_ms),
                cluster.clone().map(ClusterPresence::new),
                tasks.clone(),
                shutdown.clone(),
            ),
            config,
            store,
            hub,
            rooms,
            redis_rooms,
            cluster,
            metrics: crate::metrics::handle(),
            shutdown,
            tasks,
            sockets_by_addr: Default::default(),
        }))
    }
}

/// Joins the cluster named by `MESHI_REDIS_URL`, or runs alone without it.
async fn reach(
    config: &Config,
    roots: &TlsRoots,
    subscribers: &Arc<Subscribers>,
) -> Result<Reach, ServeError> {
    let Some(url) = &config.redis_url else {
        return Ok(Reach::Alone);
    };
    let client =
        crate::bus::open_redis_client(url, roots.redis.as_deref()).map_err(BusError::Url)?;
    let node = config
        .node_id
        .clone()
        .unwrap_or_else(|| crate::ids::random("n"));
    let bus = Arc::new(
        RedisBus::start(
            client.clone(),
            &config.redis_prefix,
            node.clone(),
            subscribers.clone(),
        )
        .await?,
    );
    let cluster = Cluster::connect(&client, &config.redis_prefix, &node, bus.clone()).await?;
    tracing::info!(node, prefix = %config.redis_prefix, "joined the cluster");
    Ok(Reach::Cluster { cluster, bus })
}

/// Serves on `listener` until `shutdown` resolves, then drains: sockets
/// get `reconnect` and close with 1012, queued frames are flushed, and the
/// call returns once they are done or the drain time is up.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Keys and certificates are read before the database is touched, so a
    // bad file stops the start without side effects.
    let jwt = JwtVerifier::from_config(&config)?;
    let roots = config.tls_roots()?;
    let store = open_store(&config, &roots).await?;
    store.migrate().await?;
    let drain_time = Duration::from_secs(config.drain_secs);
    let subscribers = Arc::new(Subscribers::default());
    let reach = reach(&config, &roots, &subscribers).await?;
    let node_ttl = Duration::from_millis(config.node_ttl_ms);
    let state = AppState::new(config, store, jwt, subscribers, reach);
    let router = crate::http::router(state.clone());
    let upkeep_stop = CancellationToken::new();
    // The node joins the cluster's upkeep before it takes any socket.
    let upkeep = match (&state.cluster, &state.redis_rooms) {
        (Some(cluster), Some(rooms)) => Some(
            Upkeep {
                cluster: cluster.clone(),
                rooms: rooms.clone(),
                presence: state.presence.clone(),
                cluster_presence: ClusterPresence::new(cluster.clone()),
                ttl: node_ttl,
            }
            .start(upkeep_stop.clone())
            .await?,
        ),
        _ => None,
    };

    crate::auth::revocation::RevocationSweep {
        store: state.store.clone(),
        hub: state.hub.clone(),
        every: Duration::from_secs(state.config.revocation_check_secs),
        resubscribed: state.cluster.as_ref().map(|c| c.bus().resubscriptions()),
    }
    .start(&state.tasks, state.shutdown.clone());

    let metrics_server = match state.config.metrics_addr {
        Some(addr) => Some(serve_metrics(addr, state.clone()).await?),
        None => None,
    };

    let server = tokio::spawn(crate::net::serve(
        listener,
        router,
        crate::net::Limits::from_config(state.config.clone()),
        state.shutdown.clone(),
    ));
    tracing::info!(backend = state.store.backend(), "serving");

    shutdown.await;
    tracing::info!("draining");
    state.shutdown.cancel();
    state.tasks.close();
    if tokio::time::timeout(drain_time, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain time ran out with sockets still open");
    }
    match tokio::time::timeout(drain_time, server).await {
        Ok(Ok(())) => {}
        Ok(Err(join)) => tracing::error!(error = %join, "server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open after the drain time"),
    }
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    if let (Some(upkeep), Some(cluster)) = (upkeep, &state.cluster) {
        upkeep_stop.cancel();
        let _ = upkeep.await;
        cluster.leave().await;
        cluster.bus().shutdown().await;
    }
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the database `config` names, with its CA file read into `roots`
/// (see [`Config::tls_roots`]).
pub async fn open_store(config: &Config, roots: &TlsRoots) -> Result<Store, StoreError> {
    let options = ConnectOptions {
        root_cert_pem: roots.database.clone(),
    };
    Store::connect_with(&config.database_url, &options).await
}

/// Serves `/metrics` on `addr` until the node drains.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    state: AppState,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving metrics");
    let router = crate::http::metrics_router(state.clone());
    let limits = crate::net::Limits::from_config(state.config.clone());
    Ok(tokio::spawn(crate::net::serve(
        listener,
        router,
        limits,
        state.shutdown.clone(),
    )))
}
