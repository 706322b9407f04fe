//! Several meshi nodes sharing one Postgres database and one Redis, for the
//! multi-node tests.
//!
//! - [`ThrowawayRedis`]: a `redis-server` child on a free loopback port that
//!   a test may stop and restart empty (killed on drop). Tests that never
//!   stop Redis use the shared one ([`shared_redis`]), which is never
//!   stopped.
//! - [`Node`]: one node, either served in this process
//!   ([`NodeKind::InProcess`], fast, drained by resolving its shutdown
//!   future) or a child process of the `meshi` binary
//!   ([`NodeKind::Process`], which can be killed with SIGKILL or drained
//!   with SIGTERM). Child logs go to a file whose tail is printed when the
//!   node fails to start.
//! - [`Cluster`]: `n` nodes on one fresh Postgres database, one Redis URL
//!   and one random key prefix, so tests never hear each other.
//!
//! Every wait is bounded; an unreachable service fails the test saying how
//! to start it.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meshi::config::Config;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::postgres::fresh_database;
use super::WsClient;

/// How long a node may take to answer /healthz and /readyz after start.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A random key prefix of the form `meshi-test-<16 hex digits>`.
pub fn random_prefix() -> String {
    format!("meshi-test-{:016x}", rand::thread_rng().gen::<u64>())
}

/// A port on 127.0.0.1 nobody listened on a moment ago.
pub use meshi_testkit::free_port;

/// Awaits `work` for at most `wait`; `None` when it did not finish.
/// `WsClient` reads are cancel-safe: frames read while waiting stay pending.
pub async fn within<T>(wait: Duration, work: impl std::future::Future<Output = T>) -> Option<T> {
    timeout(wait, work).await.ok()
}

/// Polls `check` every 100 ms until it returns `Some`, failing with
/// `what` after `wait`.
pub async fn eventually<T, F, Fut>(wait: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + wait;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("{what} did not happen within {wait:?}; last seen: {last}");
                }
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- Redis

pub fn shared_redis_url() -> String {
    meshi_testkit::redis_url().to_owned()
}

/// The shared Redis, checked to answer. Never stopped by any test.
pub async fn shared_redis() -> String {
    let url = shared_redis_url();
    if let Err(error) = redis_ping(&url).await {
        panic!(
            "these tests need Redis at {url} ({error}); start one with \
             `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" \
             --appendonly no` (install it with `apt-get install redis-server`) or set \
             MESHI_TEST_REDIS_URL"
        );
    }
    url
}

pub async fn redis_ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match timeout(Duration::from_secs(1), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 1 s".into()),
    }
}

/// A `redis-server` of this test alone, on a free loopback port.
pub struct ThrowawayRedis {
    pub port: u16,
    child: Option<Child>,
}

impl ThrowawayRedis {
    pub async fn start() -> Self {
        match Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) => panic!(
                "this test runs its own Redis and needs `redis-server` on PATH ({e}); install \
                 it with `apt-get install redis-server`"
            ),
        }
        let mut redis = ThrowawayRedis {
            port: free_port(),
            child: None,
        };
        redis.start_again().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts an empty server on the same port and waits until it answers.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            // Wait for PING, or for the child to exit (port not yet free).
            loop {
                if redis_ping(&self.url()).await.is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        Instant::now() < deadline,
                        "redis-server on port {} keeps exiting ({status})",
                        self.port
                    );
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("redis-server on port {} never answered PING", self.port);
                }
                sleep(Duration::from_millis(50)).await;
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- Nodes

/// Node settings that tests vary, applied both to an in-process [`Config`]
/// and to the environment of a child process.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node_ttl_ms: u64,
    pub presence_grace_ms: u64,
    pub room_empty_grace_secs: u64,
    pub drain_secs: u64,
    pub reconnect_after_ms: u64,
    /// Handles that are admins (`MESHI_ADMIN_HANDLES`); none by default.
    pub admin_handles: Vec<String>,
    pub revocation_check_secs: u64,
    /// `MESHI_MAX_HOSTED_ROOMS` and `MESHI_ROOM_CREATE_PER_MIN`; lifted (0)
    /// by default, as every per-user limit is.
    pub max_hosted_rooms: usize,
    pub room_create_per_min: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_ttl_ms: 10_000,
            presence_grace_ms: 300,
            room_empty_grace_secs: 30,
            drain_secs: 5,
            reconnect_after_ms: 200,
            admin_handles: Vec::new(),
            revocation_check_secs: 15,
            max_hosted_rooms: 0,
            room_create_per_min: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// `meshi::serve` on a task of the test's runtime.
    InProcess,
    /// A child process of the `meshi` binary.
    Process,
}

/// What one node needs to know about its cluster.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub node_id: String,
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub settings: Settings,
}

impl NodeSpec {
    pub fn config(&self, addr: SocketAddr) -> Config {
        let mut config = Config::defaults();
        config.lift_abuse_limits();
        config.addr = addr;
        config.database_url = self.database_url.clone();
        config.redis_url = Some(self.redis_url.clone());
        config.redis_prefix = self.redis_prefix.clone();
        config.node_id = Some(self.node_id.clone());
        config.node_ttl_ms = self.settings.node_ttl_ms;
        config.presence_grace_ms = self.settings.presence_grace_ms;
        config.room_empty_grace_secs = self.settings.room_empty_grace_secs;
        config.drain_secs = self.settings.drain_secs;
        config.reconnect_after_ms = self.settings.reconnect_after_ms;
        config.revocation_check_secs = self.settings.revocation_check_secs;
        config.rate_per_sec = 1_000;
        config.rate_burst = 1_000;
        config.max_hosted_rooms = self.settings.max_hosted_rooms;
        config.room_create_per_min = self.settings.room_create_per_min;
        if !self.settings.admin_handles.is_empty() {
            config.admin_handles = self.settings.admin_handles.clone();
        }
        config
    }

    pub fn env(&self, addr: SocketAddr) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        let mut env = vec![
            ("MESHI_ADDR", addr.to_string()),
            ("MESHI_DATABASE_URL", self.database_url.clone()),
            ("MESHI_REDIS_URL", self.redis_url.clone()),
            ("MESHI_REDIS_PREFIX", self.redis_prefix.clone()),
            ("MESHI_NODE_ID", self.node_id.clone()),
            ("MESHI_NODE_TTL_MS", s.node_ttl_ms.to_string()),
            ("MESHI_PRESENCE_GRACE_MS", s.presence_grace_ms.to_string()),
            (
                "MESHI_ROOM_EMPTY_GRACE_SECS",
                s.room_empty_grace_secs.to_string(),
            ),
            ("MESHI_DRAIN_SECS", s.drain_secs.to_string()),
            ("MESHI_RECONNECT_AFTER_MS", s.reconnect_after_ms.to_string()),
            (
                "MESHI_REVOCATION_CHECK_SECS",
                s.revocation_check_secs.to_string(),
            ),
            ("MESHI_RATE_PER_SEC", "1000".into()),
            ("MESHI_RATE_BURST", "1000".into()),
            // As `Config::lift_abuse_limits` does in process.
            ("MESHI_AUTH_RATE_PER_MIN", "0".into()),
            ("MESHI_MAX_CONNECTIONS_PER_ADDR", "0".into()),
            ("MESHI_MAX_SOCKETS_PER_USER", "0".into()),
            ("MESHI_MAX_SOCKETS_PER_ADDR", "0".into()),
            ("MESHI_MAX_HOSTED_ROOMS", s.max_hosted_rooms.to_string()),
            (
                "MESHI_ROOM_CREATE_PER_MIN",
                s.room_create_per_min.to_string(),
            ),
            ("MESHI_MAX_ROOMS_PER_SOCKET", "0".into()),
            ("MESHI_LOG", "info,tower_http=warn,sqlx=warn".into()),
        ];
        if !s.admin_handles.is_empty() {
            env.push(("MESHI_ADMIN_HANDLES", s.admin_handles.join(",")));
        }
        env
    }
}

enum Running {
    InProcess {
        stop: Option<oneshot::Sender<()>>,
        task: Option<JoinHandle<Result<(), meshi::app::ServeError>>>,
    },
    Process {
        child: Option<Child>,
        log: PathBuf,
    },
}

/// One running node.
pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    database_url: String,
    pub http: reqwest::Client,
    running: Running,
}

impl Node {
    /// Starts a node and waits until /healthz and /readyz answer 200.
    pub async fn start(kind: NodeKind, spec: &NodeSpec, log_dir: &Path) -> Node {
        let node = match kind {
            NodeKind::InProcess => Self::start_in_process(spec).await,
            NodeKind::Process => Self::start_process(spec, log_dir).await,
        };
        node.wait_ready().await;
        node
    }

    async fn start_in_process(spec: &NodeSpec) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(meshi::serve(listener, spec.config(addr), async {
            let _ = stopped.await;
        }));
        let mut node = Node {
            id: spec.node_id.clone(),
            addr,
            database_url: spec.database_url.clone(),
            http: http_client(),
            running: Running::InProcess {
                stop: Some(stop),
                task: Some(task),
            },
        };
        if let Err(why) = node.poll_healthy().await {
            panic!("node {} on {addr} did not start: {why}", spec.node_id);
        }
        node
    }

    async fn start_process(spec: &NodeSpec, log_dir: &Path) -> Node {
        let log = log_dir.join(format!("{}.log", spec.node_id));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let file = File::create(&log).expect("create the node's log file");
            let mut command = Command::new(env!("CARGO_BIN_EXE_meshi"));
            command.arg("serve");
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("MESHI_") {
                    command.env_remove(key);
                }
            }
            command
                .envs(spec.env(addr))
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("clone the log file"))
                .stderr(file);
            let child = command.spawn().expect("spawn the meshi binary");
            let mut node = Node {
                id: spec.node_id.clone(),
                addr,
                database_url: spec.database_url.clone(),
                http: http_client(),
                running: Running::Process {
                    child: Some(child),
                    log: log.clone(),
                },
            };
            match node.poll_healthy().await {
                Ok(()) => return node,
                Err(why) => {
                    let tail = node.log_tail();
                    node.kill();
                    // The free port may have been taken in between; try
                    // another one before giving up.
                    if attempt < 3 && tail.contains("in use") {
                        continue;
                    }
                    panic!(
                        "node {} on {addr} did not start: {why}\n--- log tail ---\n{tail}",
                        spec.node_id
                    );
                }
            }
        }
    }

    /// Polls /healthz until 200; fails early when the node has exited.
    async fn poll_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(resp) = self.http.get(self.url("/healthz")).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(exit) = self.exited().await {
                return Err(format!("it exited before answering /healthz: {exit}"));
            }
            if Instant::now() >= deadline {
                return Err(format!("no 200 from /healthz within {START_TIMEOUT:?}"));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// How the node ended, when it has.
    async fn exited(&mut self) -> Option<String> {
        match &mut self.running {
            Running::InProcess { task, .. } => {
                if task.as_ref().is_some_and(|t| t.is_finished()) {
                    let task = task.take().expect("checked above");
                    Some(match task.await {
                        Ok(Ok(())) => "serve returned Ok".into(),
                        Ok(Err(e)) => format!("serve failed: {e}"),
                        Err(e) => format!("serve task panicked: {e}"),
                    })
                } else {
                    None
                }
            }
            Running::Process { child, .. } => match child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => Some(format!("process exited with {status}")),
                _ => None,
            },
        }
    }

    /// Polls /readyz until 200.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let (status, body) = self.readyz().await;
            if status == 200 {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "node {} never became ready: /readyz answers {status} {body}\n{}",
                    self.id,
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of a child node's log (empty for in-process nodes).
    pub fn log_tail(&self) -> String {
        match &self.running {
            Running::Process { log, .. } => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(40);
                lines[from..].join("\n")
            }
            Running::InProcess { .. } => String::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// SIGKILL: the node stops at once, without draining or saying goodbye
    /// to Redis. Only child-process nodes can die like this.
    pub fn kill(&mut self) {
        match &mut self.running {
            Running::Process { child, .. } => {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Running::InProcess { .. } => {
                panic!("an in-process node cannot be killed; start it as NodeKind::Process")
            }
        }
    }

    /// SIGTERM for a child, the shutdown future for an in-process node:
    /// the node starts draining. Does not wait.
    pub fn terminate(&mut self) {
        match &mut self.running {
            Running::Process { child, .. } => {
                if let Some(child) = child.as_ref() {
                    let status = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status()
                        .expect("run kill -TERM");
                    assert!(status.success(), "kill -TERM {} failed", child.id());
                }
            }
            Running::InProcess { stop, .. } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
        }
    }

    /// Waits for a draining node to stop; fails after `wait`. In-process
    /// nodes must return `Ok`, children must exit successfully.
    pub async fn wait_stopped(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        match &mut self.running {
            Running::InProcess { task, .. } => {
                if let Some(task) = task.take() {
                    let result = timeout(wait, task)
                        .await
                        .unwrap_or_else(|_| panic!("node {} did not stop within {wait:?}", self.id))
                        .expect("serve task joins");
                    if let Err(e) = result {
                        panic!("node {} stopped with an error: {e}", self.id);
                    }
                }
            }
            Running::Process { child, .. } => {
                let Some(c) = child.as_mut() else { return };
                loop {
                    if let Some(status) = c.try_wait().expect("wait for the node") {
                        child.take();
                        assert!(
                            status.success(),
                            "node {} exited with {status}\n{}",
                            self.id,
                            self.log_tail()
                        );
                        return;
                    }
                    if Instant::now() >= deadline {
                        panic!(
                            "node {} did not exit within {wait:?}\n{}",
                            self.id,
                            self.log_tail()
                        );
                    }
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    // ---- HTTP

    pub async fn readyz(&self) -> (u16, Value) {
        // The store's pool waits up to 5 s for a connection, so a check
        // against a dead database takes that long before it answers 503.
        match timeout(
            Duration::from_secs(10),
            self.http.get(self.url("/readyz")).send(),
        )
        .await
        {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                (status, resp.json().await.unwrap_or(Value::Null))
            }
            Ok(Err(e)) => (0, json!(format!("request failed: {e}"))),
            Err(_) => (0, json!("no answer within 10 s")),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on node {}: {e}", self.id));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} on node {}: {e}", self.id));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// DELETE without a body; returns the status and the body (`Null` when
    /// there is none).
    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        let resp = self
            .http
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {path} on node {}: {e}", self.id));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// PUT with a JSON body; returns the status and the body (`Null` when
    /// there is none).
    pub async fn put_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .put(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {path} on node {}: {e}", self.id));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Logs `handle` in (password `password123`); returns a new token.
    pub async fn login(&self, handle: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"handle": handle, "password": "password123"}),
            )
            .await;
        assert_eq!(status, 200, "login {handle} on node {}: {body}", self.id);
        body["token"].as_str().expect("login token").to_owned()
    }

    /// PUT without a body; returns the status.
    pub async fn put(&self, path: &str, token: &str) -> u16 {
        self.http
            .put(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {path} on node {}: {e}", self.id))
            .status()
            .as_u16()
    }

    /// Makes `handle` an admin as the operator would (see
    /// [`super::make_admin`]) and logs it in here; returns token and id.
    pub async fn admin(&self, handle: &str) -> (String, String) {
        super::make_admin(&self.database_url, handle).await;
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"handle": handle, "password": "password123"}),
            )
            .await;
        assert_eq!(
            status, 200,
            "admin {handle} logs in on node {}: {body}",
            self.id
        );
        (
            body["token"].as_str().expect("token").to_owned(),
            body["user"]["id"].as_str().expect("user id").to_owned(),
        )
    }

    /// Registers `handle` (password `password123`); returns token and id.
    pub async fn register(&self, handle: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"handle": handle, "password": "password123", "display_name": handle}),
            )
            .await;
        assert_eq!(status, 201, "register {handle} on node {}: {body}", self.id);
        (
            body["token"].as_str().expect("token").to_owned(),
            body["user"]["id"].as_str().expect("user id").to_owned(),
        )
    }

    /// A socket on this node that has said hello with `token`.
    pub async fn client(&self, token: &str) -> WsClient {
        WsClient::hello_url(&self.ws_url(), token).await
    }

    /// Registers a user here and opens a socket here.
    pub async fn user(&self, handle: &str) -> (WsClient, String, String) {
        let (token, id) = self.register(handle).await;
        let client = self.client(&token).await;
        (client, token, id)
    }

    /// The open rooms per GET /api/v1/rooms on this node.
    pub async fn rooms(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/rooms", Some(token)).await;
        assert_eq!(status, 200, "GET /api/v1/rooms on node {}: {body}", self.id);
        body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("items in {body}"))
            .clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        match &mut self.running {
            Running::InProcess { stop, .. } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
            Running::Process { child, .. } => {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

// ---------------------------------------------------------------- Cluster

/// Nodes sharing one fresh Postgres database, one Redis and one prefix.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub database_url: String,
    pub redis_url: String,
    pub prefix: String,
    pub settings: Settings,
    pub kind: NodeKind,
    logs: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes named `node-1` … `node-n`. The first starts alone
    /// (it applies the migrations); the others start together.
    pub async fn start(kind: NodeKind, n: usize, redis_url: String, settings: Settings) -> Self {
        let database_url = fresh_database().await;
        Self::start_on(kind, n, database_url, redis_url, settings).await
    }

    pub fn spec(&self, index: usize) -> NodeSpec {
        NodeSpec {
            node_id: format!("node-{index}"),
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.prefix.clone(),
            settings: self.settings.clone(),
        }
    }

    /// Starts node number `index` (1-based) of this cluster, not yet added.
    pub async fn start_node(&self, index: usize) -> Node {
        Node::start(self.kind, &self.spec(index), self.logs.path()).await
    }

    /// Node number `i`, 1-based as in the test descriptions.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i - 1]
    }
}

impl Drop for Cluster {
    /// Stops the nodes, then deletes this cluster's keys (`<prefix>:*`)
    /// so runs do not pile keys up in the shared Redis. Best effort.
    fn drop(&mut self) {
        self.nodes.clear();
        delete_keys(&self.redis_url, &self.prefix);
    }
}

/// Deletes every key under `<prefix>:` in the Redis at `url`, ignoring
/// failures (a throwaway Redis may already be gone).
pub fn delete_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query::<(u64, Vec<String>)>(&mut conn)
        else {
            return;
        };
        if !keys.is_empty() && redis::cmd("DEL").arg(&keys).query::<()>(&mut conn).is_err() {
            return;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

impl Cluster {
    /// Like [`Cluster::start`], on a database of the caller's choosing.
    pub async fn start_on(
        kind: NodeKind,
        n: usize,
        database_url: String,
        redis_url: String,
        settings: Settings,
    ) -> Self {
        let logs = tempfile::tempdir().expect("temp dir for node logs");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            database_url,
            redis_url,
            prefix: random_prefix(),
            settings,
            kind,
            logs,
        };
        let first = cluster.start_node(1).await;
        cluster.nodes.push(first);
        let rest = futures_util::future::join_all((2..=n).map(|i| cluster.start_node(i))).await;
        cluster.nodes.extend(rest);
        cluster
    }
}

// ---------------------------------------------------------------- Sockets

/// The next frame matching `wanted` within `bound` (which may exceed the
/// per-frame receive timeout); fails naming `what`.
pub async fn wait_for(
    client: &mut WsClient,
    bound: Duration,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!(
                "{what}: nothing arrived within {bound:?}; frames seen meanwhile: {:?}",
                client.pending()
            );
        }
        let slice = left.min(Duration::from_secs(3));
        if let Some(frame) = within(slice, client.next_matching(&wanted)).await {
            return frame;
        }
    }
}

/// Asserts that no frame matching `unwanted` arrives within `wait` (nor is
/// already pending).
pub async fn assert_quiet(
    client: &mut WsClient,
    wait: Duration,
    what: &str,
    unwanted: impl Fn(&Value) -> bool,
) {
    if let Some(frame) = client.pending().iter().find(|f| unwanted(f)) {
        panic!("{what}: unexpected {frame}");
    }
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let slice = left.min(Duration::from_secs(3));
        if let Some(frame) = within(slice, client.next_matching(&unwanted)).await {
            panic!("{what}: unexpected {frame}");
        }
    }
}

/// Sends `frame` with the string `reference` and waits up to `bound` for
/// the reply to it.
pub async fn request_within(
    client: &mut WsClient,
    mut frame: Value,
    reference: &str,
    bound: Duration,
) -> Value {
    frame["ref"] = json!(reference);
    client.send(frame.clone()).await;
    wait_for(client, bound, &format!("the reply to {frame}"), |f| {
        f["ref"] == reference && (f["type"] == "ok" || f["type"] == "error")
    })
    .await
}

/// Reads every frame until the server closes the socket (within `bound`);
/// returns them with how the socket ended. Pending frames come first.
pub async fn read_until_closed(
    client: &mut WsClient,
    bound: Duration,
) -> (Vec<Value>, super::Ended) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut frames = Vec::new();
    while !client.pending().is_empty() {
        frames.push(client.next().await);
    }
    let deadline = Instant::now() + bound;
    loop {
        let next = tokio::time::timeout_at(deadline, client.raw().next())
            .await
            .unwrap_or_else(|_| {
                panic!("the server did not close the socket within {bound:?}; got {frames:?}")
            });
        match next {
            Some(Ok(Message::Text(text))) => {
                frames.push(serde_json::from_str(text.as_str()).expect("server frames are JSON"))
            }
            Some(Ok(Message::Close(close))) => {
                let code = close.map_or(1005, |c| u16::from(c.code));
                return (frames, super::Ended::Closed(code));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (frames, super::Ended::Dropped),
        }
    }
}

// ---------------------------------------------------------------- Postgres

/// A Postgres server of this test alone (initdb into a temp dir, then the
/// `postgres` binary as a child on a free loopback port), so a test may
/// stop and restart it. `None` when the server binaries are not installed.
pub struct ThrowawayPostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    as_postgres_user: bool,
}

impl ThrowawayPostgres {
    pub async fn start() -> Option<Self> {
        let bin = meshi_testkit::postgres_binaries()?;
        let dir = tempfile::tempdir().expect("temp dir for Postgres");
        // Postgres refuses to run as root; run it as the `postgres` user then.
        let as_postgres_user = meshi_testkit::is_root();
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown the Postgres temp dir");
            assert!(status.success(), "chown the Postgres temp dir to postgres");
        }
        let mut pg = ThrowawayPostgres {
            port: free_port(),
            bin,
            dir,
            child: None,
            as_postgres_user,
        };
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-U", "postgres", "-A", "trust", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_again().await;
        Some(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            // setpriv execs (no extra parent process), so the child's pid
            // is the postmaster's.
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server on its data directory and waits until it answers.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        let log = File::create(self.dir.path().join("postgres.log")).expect("postgres log");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let mut child = command.spawn().expect("spawn postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            use sqlx::Connection;
            if let Ok(Ok(conn)) = timeout(
                Duration::from_secs(2),
                sqlx::PgConnection::connect(&self.admin_url()),
            )
            .await
            {
                let _ = conn.close().await;
                self.child = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the throwaway postgres exited with {status}: {}",
                    std::fs::read_to_string(self.dir.path().join("postgres.log"))
                        .unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the throwaway postgres never accepted connections");
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fast shutdown (SIGINT): every connection is cut; waits for the exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(&self.admin_url())
            .await
            .expect("connect to the throwaway postgres");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create a database");
        let _ = conn.close().await;
        self.url_of(name)
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------- Chat

pub fn text_of(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}

pub fn seq_of(value: &Value) -> u64 {
    value["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a seq in {value}"))
}

pub async fn create_room(client: &mut WsClient, name: &str) -> String {
    let created = client
        .ok(json!({"type": "room.create", "name": name}))
        .await;
    text_of(&created["room"]["id"])
}

pub async fn join(client: &mut WsClient, room_id: &str) -> Value {
    client
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await
}

pub fn is_message_of(frame: &Value, room_id: &str) -> bool {
    frame["type"] == "room.message" && frame["room_id"] == room_id
}

pub fn find_room(rooms: &[Value], room_id: &str) -> Option<Value> {
    rooms.iter().find(|r| r["id"] == room_id).cloned()
}
