//! Wires the services together and runs the server until shutdown.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::jwt::{JwtSetupError, JwtVerifier};
use crate::auth::Accounts;
use crate::bus::LocalBus;
use crate::config::Config;
use crate::dm::DirectMessages;
use crate::hub::subscribers::Subscribers;
use crate::hub::{Hub, RoomSettings};
use crate::notify::Notifier;
use crate::presence::Presence;
use crate::store::{Store, StoreError};

/// Everything a handler or a socket needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub accounts: Accounts,
    pub hub: Hub,
    pub notifier: Notifier,
    pub dms: DirectMessages,
    pub presence: Presence,
    pub metrics: PrometheusHandle,
    /// Cancelled when the node starts draining.
    pub shutdown: CancellationToken,
    /// Every socket and timer, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("MESHI_REDIS_URL is set, but this build runs one node only; unset it")]
    RedisUnsupported,
    #[error("single sign-on is misconfigured: {0}")]
    Jwt(#[from] JwtSetupError),
}

impl AppState {
    /// Builds every service. `jwt` checks identity-provider tokens; `None`
    /// refuses them all.
    pub fn new(config: Config, store: Store, jwt: Option<JwtVerifier>) -> Self {
        let config = Arc::new(config);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let subscribers = Arc::new(Subscribers::default());
        let bus = Arc::new(LocalBus::new(subscribers.clone()));
        let hub = Hub::new(
            bus,
            subscribers,
            RoomSettings {
                empty_grace: config.room_empty_grace(),
                history: config.room_history as usize,
            },
            tasks.clone(),
            shutdown.clone(),
        );
        AppState {
            accounts: Accounts::new(store.clone(), config.clone(), jwt),
            notifier: Notifier::new(store.clone(), hub.clone()),
            dms: DirectMessages::start(store.clone(), hub.clone()),
            presence: Presence::new(
                hub.clone(),
                store.clone(),
                Duration::from_millis(config.presence_grace_ms),
                tasks.clone(),
                shutdown.clone(),
            ),
            config,
            store,
            hub,
            metrics: crate::metrics::handle(),
            shutdown,
            tasks,
        }
    }
}

/// Serves on `listener` until `shutdown` resolves, then drains: sockets
/// get `reconnect` and close with 1012, queued frames are flushed, and the
/// call returns once they are done or the drain time is up.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if config.redis_url.is_some() {
        return Err(ServeError::RedisUnsupported);
    }
    // Keys are read before the database is touched, so a bad key file
    // stops the start without side effects.
    let jwt = JwtVerifier::from_config(&config)?;
    let store = Store::connect(&config.database_url).await?;
    store.migrate().await?;
    let drain_time = Duration::from_secs(config.drain_secs);
    let state = AppState::new(config, store, jwt);
    let router = crate::http::router(state.clone());

    let draining = state.shutdown.clone();
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { draining.cancelled().await })
            .into_future(),
    );
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
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => tracing::error!(error = %join, "server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open after the drain time"),
    }
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}
