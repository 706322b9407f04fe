//! The socket client: real WebSocket frames, every receive under a
//! timeout so failures are fast.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::Api;

/// How long a test waits for any one frame before it fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A socket client that keeps pushes aside while it waits for replies.
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
    pub async fn connect(server: &Api) -> Self {
        let url = server.ws_url();
        let request = url
            .as_str()
            .into_client_request()
            .expect("a valid ws request");
        Self::connect_request(&url, request).await.0
    }

    /// Connects with `name: value` on the upgrade request; returns the
    /// upgrade response's headers too.
    pub async fn connect_with_header(
        server: &Api,
        name: HeaderName,
        value: &str,
    ) -> (Self, HeaderMap) {
        let url = server.ws_url();
        let mut request = url
            .as_str()
            .into_client_request()
            .expect("a valid ws request");
        request.headers_mut().insert(
            name,
            HeaderValue::from_str(value).expect("a valid header value"),
        );
        Self::connect_request(&url, request).await
    }

    async fn connect_request(
        url: &str,
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> (Self, HeaderMap) {
        let (ws, response) =
            tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .unwrap_or_else(|_| panic!("connect to {url} in time"))
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let client = WsClient {
            ws,
            next_ref: 1,
            pending: VecDeque::new(),
        };
        (client, response.headers().clone())
    }

    /// [`WsClient::connect`], then a successful `hello`.
    pub async fn hello(server: &Api, token: &str) -> Self {
        let mut client = Self::connect(server).await;
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

    /// The next text frame as JSON, or how the socket ended.
    pub(super) async fn read_raw(&mut self) -> Result<Value, Ended> {
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
