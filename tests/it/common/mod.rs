//! Test harness: a real server on an ephemeral port, real WebSocket and
//! HTTP clients. Every receive is under a timeout so failures are fast.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use meshi::config::Config;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod binary;
pub mod cluster;
pub mod postgres;
pub mod store;

/// How long a test waits for any one frame before it fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), meshi::app::ServeError>>>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server on a fresh SQLite file with test-friendly limits.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::defaults();
        config.lift_abuse_limits();
        config.database_url = format!("sqlite://{}", dir.path().join("meshi.db").display());
        config.rate_per_sec = 1_000;
        config.rate_burst = 1_000;
        tweak(&mut config);
        Self::start_on(config, dir).await
    }

    /// A server on a database of the caller's choosing.
    pub async fn start_on(config: Config, dir: tempfile::TempDir) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(meshi::serve(listener, config.clone(), async {
            let _ = stopped.await;
        }));
        let server = TestServer {
            addr,
            config,
            stop: Some(stop),
            task: Some(task),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(resp) = self.http.get(self.url("/healthz")).send().await {
                if resp.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server on {} never became healthy", self.addr);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Registers `handle` (password `password123`) and returns the token
    /// and user id.
    pub async fn register(&self, handle: &str) -> (String, String) {
        let resp = self
            .http
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({"handle": handle, "password": "password123", "display_name": handle}))
            .send()
            .await
            .expect("register request");
        assert_eq!(resp.status(), 201, "register {handle}");
        let body: Value = resp.json().await.expect("register body");
        (
            body["token"].as_str().expect("token").to_owned(),
            body["user"]["id"].as_str().expect("user id").to_owned(),
        )
    }

    /// Makes `handle` an admin the way an operator does, from the command
    /// line's code path, then logs it in (password `password123`): listed
    /// admin handles cannot be registered. Returns the token and user id.
    pub async fn admin(&self, handle: &str) -> (String, String) {
        make_admin(&self.config.database_url, handle).await;
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"handle": handle, "password": "password123"}),
            )
            .await;
        assert_eq!(status, 200, "admin {handle} logs in: {body}");
        (
            body["token"].as_str().expect("token").to_owned(),
            body["user"]["id"].as_str().expect("user id").to_owned(),
        )
    }

    /// Registers a user and opens a socket that has said hello.
    pub async fn user(&self, handle: &str) -> (WsClient, String, String) {
        let (token, id) = self.register(handle).await;
        let client = WsClient::hello(self, &token).await;
        (client, token, id)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("GET");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
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

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A socket client that keeps pushes aside while it waits for replies.
/// Creates `handle` (password `password123`) as an admin in the database
/// at `database_url`, as `meshi admin create` does.
pub async fn make_admin(database_url: &str, handle: &str) {
    let store = meshi::store::Store::connect(database_url)
        .await
        .expect("open the database to make an admin");
    let accounts =
        meshi::auth::Accounts::new(store.clone(), std::sync::Arc::new(Config::defaults()), None);
    let user = accounts
        .create_admin(handle, "password123", None)
        .await
        .unwrap_or_else(|e| panic!("make {handle} an admin: {e}"));
    assert_eq!(user.role, "admin");
    store.close().await;
}

pub struct WsClient {
    ws: Socket,
    next_ref: u64,
    /// Frames read while waiting for something else, oldest first.
    pending: VecDeque<Value>,
}

/// How a socket ended, as seen by the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(u16),
    /// The stream ended or failed without a close frame.
    Dropped,
}

impl WsClient {
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_url(&server.ws_url()).await
    }

    /// Connects to the socket endpoint at `url` (`ws://host:port/ws`), for
    /// servers that are not a [`TestServer`] (other nodes of a cluster).
    pub async fn connect_url(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("connect to {url} in time"))
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        WsClient {
            ws,
            next_ref: 1,
            pending: VecDeque::new(),
        }
    }

    pub async fn hello(server: &TestServer, token: &str) -> Self {
        Self::hello_url(&server.ws_url(), token).await
    }

    /// [`WsClient::connect_url`], then a successful `hello`.
    pub async fn hello_url(url: &str, token: &str) -> Self {
        let mut client = Self::connect_url(url).await;
        client.ok(json!({"type": "hello", "token": token})).await;
        client
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send frame");
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    /// Sends `frame` with a fresh `ref` and returns the reply to it.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let reference = self.next_ref;
        self.next_ref += 1;
        frame["ref"] = json!(reference);
        self.send(frame).await;
        self.next_matching(|f| {
            f["ref"] == json!(reference) && (f["type"] == "ok" || f["type"] == "error")
        })
        .await
    }

    /// Sends a request that must succeed; returns its `data`.
    pub async fn ok(&mut self, frame: Value) -> Value {
        let reply = self.request(frame.clone()).await;
        assert_eq!(reply["type"], "ok", "{frame} answered {reply}");
        reply["data"].clone()
    }

    /// Sends a request that must fail with `code`; returns the error object.
    pub async fn err(&mut self, frame: Value, code: &str) -> Value {
        let reply = self.request(frame.clone()).await;
        assert_eq!(reply["type"], "error", "{frame} answered {reply}");
        assert_eq!(reply["error"]["code"], code, "{frame} answered {reply}");
        assert!(reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        reply["error"].clone()
    }

    /// The next frame of any kind.
    pub async fn next(&mut self) -> Value {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        self.read().await
    }

    /// The next frame of this `type`, keeping others for later.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        self.next_matching(|f| f["type"] == kind).await
    }

    pub async fn next_matching(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.pending.iter().position(&wanted) {
            return self.pending.remove(at).expect("position is in range");
        }
        loop {
            let frame = self.read().await;
            if wanted(&frame) {
                return frame;
            }
            self.pending.push_back(frame);
        }
    }

    /// Asserts that nothing matching arrives within `wait`.
    pub async fn assert_no(&mut self, kind: &str, wait: Duration) {
        assert!(
            !self.pending.iter().any(|f| f["type"] == kind),
            "unexpected {kind} among {:?}",
            self.pending
        );
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.read_raw()).await {
            let frame = frame.unwrap_or_else(|e| panic!("socket ended while waiting: {e:?}"));
            assert_ne!(frame["type"], kind, "unexpected frame {frame}");
            self.pending.push_back(frame);
        }
    }

    async fn read(&mut self) -> Value {
        tokio::time::timeout(RECV_TIMEOUT, self.read_raw())
            .await
            .expect("a frame within the receive timeout")
            .unwrap_or_else(|ended| panic!("socket ended while a frame was expected: {ended:?}"))
    }

    async fn read_raw(&mut self) -> Result<Value, Ended> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(text.as_str()).expect("server frames are JSON"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Ended::Closed(frame.map_or(1005, |f| u16::from(f.code))))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    /// Reads (and drops) frames until the server closes; returns the code.
    pub async fn closed_with(&mut self, within: Duration) -> Ended {
        tokio::time::timeout(within, async {
            loop {
                if let Err(ended) = self.read_raw().await {
                    return ended;
                }
            }
        })
        .await
        .expect("the server closes the socket in time")
    }

    /// Frames already read but not yet consumed.
    pub fn pending(&self) -> &VecDeque<Value> {
        &self.pending
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }

    pub fn raw(&mut self) -> &mut Socket {
        &mut self.ws
    }
}
