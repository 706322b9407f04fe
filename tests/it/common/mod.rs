//! Test harness: a real server on an ephemeral port, real WebSocket and
//! HTTP clients. Every receive is under a timeout so failures are fast.
//!
//! - [`TestServer`]: one server in this process on a fresh SQLite file
//!   (or a database of the test's choosing).
//! - [`api`]: the REST client every kind of server dereferences to.
//! - [`ws`] and [`wait`]: the socket client and bounded waits on it.
//! - [`chat`] and [`platform`]: rooms, conversations and presence over the
//!   socket; cards, matches, events and communities over REST.
//! - [`json`]: checks of what the server answers.
//! - [`place`]: one node or two, for tests that hold both room engines to
//!   one contract.
//! - [`cluster`], [`services`], [`postgres`]: several nodes on a shared
//!   Postgres and Redis, and the services themselves.
//! - [`binary`]: the `meshi` binary as a child process.
//! - [`certs`]: a CA and a server certificate made at run time, for TLS.
//! - [`store`]: store contracts run on both backends.

use std::net::SocketAddr;
use std::time::Duration;

use meshi::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod api;
pub mod binary;
pub mod certs;
pub mod chat;
pub mod cluster;
pub mod json;
pub mod place;
pub mod platform;
pub mod postgres;
pub mod prom;
pub mod services;
pub mod store;
pub mod wait;
mod ws;

pub use api::Api;
/// A port on 127.0.0.1 nobody listened on a moment ago.
pub use meshi_testkit::free_port;
pub use ws::{Ended, WsClient, RECV_TIMEOUT};

/// The configuration every test server starts from: the defaults with
/// abuse limits and rates lifted, so tests are limited only where they
/// mean to be.
pub fn test_config(database_url: String) -> Config {
    let mut config = Config::defaults();
    config.lift_abuse_limits();
    config.database_url = database_url;
    config.rate_per_sec = 1_000;
    config.rate_burst = 1_000;
    config
}

/// The task serving one in-process server.
type ServeTask = JoinHandle<Result<(), meshi::app::ServeError>>;

/// `meshi::serve` on a task of the test's runtime, on an ephemeral port,
/// with the configuration `config` makes for that port. Sending on the
/// returned channel starts the drain.
async fn serve_here(
    config: impl FnOnce(SocketAddr) -> Config,
) -> (SocketAddr, oneshot::Sender<()>, ServeTask) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(meshi::serve(listener, config(addr), async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

/// One server in this process; it dereferences to its REST client.
pub struct TestServer {
    api: Api,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<ServeTask>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestServer {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestServer {
    /// A server on a fresh SQLite file with test-friendly limits.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(format!(
            "sqlite://{}",
            dir.path().join("meshi.db").display()
        ));
        tweak(&mut config);
        Self::start_on(config, dir).await
    }

    /// A server on a fresh database of the shared Postgres (see
    /// [`postgres`]).
    pub async fn start_on_postgres(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(postgres::fresh_database().await);
        tweak(&mut config);
        Self::start_on(config, tempfile::tempdir().expect("temp dir")).await
    }

    /// A server on a database of the caller's choosing.
    pub async fn start_on(config: Config, dir: tempfile::TempDir) -> Self {
        let (addr, stop, task) = serve_here(|_| config.clone()).await;
        let server = TestServer {
            api: Api::new(
                addr,
                reqwest::Client::new(),
                format!("the server on {addr}"),
            ),
            config,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if self.healthy().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server on {} never became healthy", self.addr);
    }

    /// Makes `handle` an admin the way an operator does, from the command
    /// line's code path, then logs it in: listed admin handles cannot be
    /// registered. Returns the token and user id.
    pub async fn admin(&self, handle: &str) -> (String, String) {
        make_admin(&self.config.database_url, handle).await;
        self.sign_in(handle).await
    }

    /// Starts draining and waits for the server to stop.
    pub async fn shutdown(mut self) {
        self.stop_and_wait().await;
    }

    async fn stop_and_wait(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops within 30 s")
                .expect("server task joins")
                .expect("server returns Ok");
        }
    }

    /// Signals the drain without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn wait_stopped(mut self) {
        self.stop_and_wait().await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Creates `handle` (password [`api::PASSWORD`]) as an admin in the database
/// at `database_url`, as `meshi admin create` does.
async fn make_admin(database_url: &str, handle: &str) {
    let store = meshi::store::Store::connect(database_url)
        .await
        .expect("open the database to make an admin");
    let accounts =
        meshi::auth::Accounts::new(store.clone(), std::sync::Arc::new(Config::defaults()), None);
    let user = accounts
        .create_admin(handle, api::PASSWORD, None)
        .await
        .unwrap_or_else(|e| panic!("make {handle} an admin: {e}"));
    assert_eq!(user.role, "admin");
    store.close().await;
}
