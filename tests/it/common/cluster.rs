//! Several meshi nodes sharing one Postgres database and one Redis, for the
//! multi-node tests.
//!
//! - [`Node`]: one node, either served in this process
//!   ([`NodeKind::InProcess`], fast, drained by resolving its shutdown
//!   future) or a child process of the `meshi` binary
//!   ([`NodeKind::Process`], which can be killed with SIGKILL or drained
//!   with SIGTERM). Child logs go to a file whose tail is printed when the
//!   node fails to start. A node dereferences to its REST client.
//! - [`Cluster`]: `n` nodes on one fresh Postgres database, one Redis URL
//!   (see [`super::services`]) and one random key prefix, so tests never
//!   hear each other.
//!
//! Every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use meshi::config::Config;
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout, Instant};

use super::postgres::fresh_database;
use super::services::{delete_keys, random_prefix};
use super::{binary, free_port, serve_here, test_config, Api, ServeTask};

/// How long a node may take to answer /healthz and /readyz after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Node settings that tests vary, applied both to an in-process [`Config`]
/// and to the environment of a child process.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node_ttl_ms: u64,
    pub presence_grace_ms: u64,
    pub room_empty_grace_secs: u64,
    /// `MESHI_ROOM_HISTORY`, the messages a room keeps for recovery.
    pub room_history: u32,
    pub drain_secs: u64,
    pub reconnect_after_ms: u64,
    /// Handles that are admins (`MESHI_ADMIN_HANDLES`); none by default.
    pub admin_handles: Vec<String>,
    pub revocation_check_secs: u64,
    /// `MESHI_MAX_HOSTED_ROOMS` and `MESHI_ROOM_CREATE_PER_MIN`; lifted (0)
    /// by default, as every per-user limit is.
    pub max_hosted_rooms: usize,
    pub room_create_per_min: u32,
    /// `MESHI_MAX_ROOMS_PER_SOCKET` (lifted by default) and
    /// `MESHI_ROOM_LIST_MAX`.
    pub max_rooms_per_socket: usize,
    pub room_list_max: u32,
    /// `MESHI_OUTBOX_FRAMES`: frames a socket's queue holds before 4009.
    pub outbox_frames: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_ttl_ms: 10_000,
            presence_grace_ms: 300,
            room_empty_grace_secs: 30,
            room_history: 200,
            drain_secs: 5,
            reconnect_after_ms: 200,
            admin_handles: Vec::new(),
            revocation_check_secs: 15,
            max_hosted_rooms: 0,
            room_create_per_min: 0,
            max_rooms_per_socket: 0,
            room_list_max: meshi::config::Config::defaults().room_list_max,
            outbox_frames: meshi::config::Config::defaults().outbox_frames,
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
        let mut config = test_config(self.database_url.clone());
        config.addr = addr;
        config.redis_url = Some(self.redis_url.clone());
        config.redis_prefix = self.redis_prefix.clone();
        config.node_id = Some(self.node_id.clone());
        config.node_ttl_ms = self.settings.node_ttl_ms;
        config.presence_grace_ms = self.settings.presence_grace_ms;
        config.room_empty_grace_secs = self.settings.room_empty_grace_secs;
        config.room_history = self.settings.room_history;
        config.drain_secs = self.settings.drain_secs;
        config.reconnect_after_ms = self.settings.reconnect_after_ms;
        config.revocation_check_secs = self.settings.revocation_check_secs;
        config.max_hosted_rooms = self.settings.max_hosted_rooms;
        config.room_create_per_min = self.settings.room_create_per_min;
        config.max_rooms_per_socket = self.settings.max_rooms_per_socket;
        config.room_list_max = self.settings.room_list_max;
        config.outbox_frames = self.settings.outbox_frames;
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
            ("MESHI_ROOM_HISTORY", s.room_history.to_string()),
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
            (
                "MESHI_MAX_ROOMS_PER_SOCKET",
                s.max_rooms_per_socket.to_string(),
            ),
            ("MESHI_ROOM_LIST_MAX", s.room_list_max.to_string()),
            ("MESHI_OUTBOX_FRAMES", s.outbox_frames.to_string()),
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
        task: Option<ServeTask>,
    },
    Process {
        child: Option<Child>,
        log: PathBuf,
    },
}

/// One running node.
pub struct Node {
    pub id: String,
    api: Api,
    database_url: String,
    running: Running,
}

impl std::ops::Deref for Node {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
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
        let (addr, stop, task) = serve_here(|addr| spec.config(addr)).await;
        let mut node = Node {
            id: spec.node_id.clone(),
            api: node_api(addr, spec),
            database_url: spec.database_url.clone(),
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
            let mut command = binary::command(log_dir, &["serve"]);
            command.envs(spec.env(addr));
            let child = binary::spawn_logging_to(command, &log);
            let mut node = Node {
                id: spec.node_id.clone(),
                api: node_api(addr, spec),
                database_url: spec.database_url.clone(),
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
            if self.healthy().await {
                return Ok(());
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

    /// Makes `handle` an admin as the operator would (see
    /// [`super::make_admin`]) and logs it in here; returns token and id.
    pub async fn admin(&self, handle: &str) -> (String, String) {
        super::make_admin(&self.database_url, handle).await;
        self.sign_in(handle).await
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

/// A node's client gives up on a request after 10 s, so a node that hangs
/// fails the test instead of stalling it.
fn node_api(addr: SocketAddr, spec: &NodeSpec) -> Api {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    Api::new(addr, http, format!("node {}", spec.node_id))
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
