//! Sockets as the tool opens and drives them.
//!
//! A socket is bound to a chosen source address before it connects (so a
//! run can spread over 127.0.0.x) and speaks WebSocket over that stream.
//! Every frame it sends goes through a [`Pacer`] that keeps the socket
//! under the server's per-socket rate limit, because a tool that trips the
//! limit measures the limiter instead of the server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use meshi_protocol::{Request, SUBPROTOCOL};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::frame::{encode, Incoming};
use crate::stats::{Count, Lat, Stats};
use crate::target::Target;

pub type Ws = WebSocketStream<TcpStream>;

/// Frames a socket may send at once before its rate applies. Well under
/// the server's default burst, so the tool's pacing is never the part that
/// trips the server's limiter.
const PACER_BURST: f64 = 5.0;

/// Opens sockets round-robin over targets and source addresses.
#[derive(Debug, Clone)]
pub struct Connector {
    targets: Arc<[Target]>,
    sources: Arc<[IpAddr]>,
    timeout: Duration,
}

impl Connector {
    pub fn new(targets: Vec<Target>, sources: Vec<IpAddr>, timeout: Duration) -> Connector {
        Connector {
            targets: targets.into(),
            sources: sources.into(),
            timeout,
        }
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The target socket `index` goes to.
    pub fn target(&self, index: usize) -> &Target {
        &self.targets[index % self.targets.len()]
    }

    fn source(&self, index: usize) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        Some(self.sources[(index / self.targets.len()) % self.sources.len()])
    }

    /// Connects socket `index`; on failure, a short reason for the report.
    pub async fn connect(&self, index: usize) -> Result<Ws, &'static str> {
        let target = self.target(index);
        let source = self.source(index);
        match tokio::time::timeout(self.timeout, open(target, source)).await {
            Ok(result) => result,
            Err(_) => Err("connect_timeout"),
        }
    }
}

async fn open(target: &Target, source: Option<IpAddr>) -> Result<Ws, &'static str> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(io_reason)?;
    if let Some(source) = source {
        if source.is_ipv4() != target.addr.is_ipv4() {
            return Err("source_family_mismatch");
        }
        socket.bind(SocketAddr::new(source, 0)).map_err(io_reason)?;
    }
    let stream = socket.connect(target.addr).await.map_err(io_reason)?;
    // Frames are small and latency is what is measured.
    let _ = stream.set_nodelay(true);
    let mut request = target
        .ws
        .as_str()
        .into_client_request()
        .map_err(|_| "bad_request_url")?;
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    // The library's default 128 KiB read buffer per socket would make the
    // tool's memory, not the server, the limit of a large connect run; the
    // buffer still grows for a large frame.
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|_| "handshake_failed")?;
    Ok(ws)
}

/// Bytes each client socket reads at once.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

fn io_reason(err: std::io::Error) -> &'static str {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect_refused",
        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::AddrInUse => "no_free_port",
        std::io::ErrorKind::ConnectionReset => "connect_reset",
        _ if matches!(err.raw_os_error(), Some(EMFILE | ENFILE)) => "too_many_open_files",
        _ => "connect_error",
    }
}

/// A token bucket on the client side of a socket.
#[derive(Debug)]
pub struct Pacer {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    pub fn new(per_sec: f64) -> Pacer {
        let burst = PACER_BURST.min(per_sec.max(1.0));
        Pacer {
            per_sec,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one; otherwise says how long until there
    /// will be.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
    }

    /// Waits for a token.
    pub async fn ready(&mut self) {
        while let Err(wait) = self.try_take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds off after the server said `rate_limited`: no token until
    /// `retry_after_ms` has passed.
    pub fn back_off(&mut self, retry_after_ms: u64) {
        self.tokens = -(retry_after_ms as f64 / 1000.0) * self.per_sec;
        self.last = Instant::now();
    }
}

/// How a socket stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The server sent a close frame with this code.
    Closed(u16),
    /// The stream ended or failed without a close frame.
    Dropped,
    /// A reply did not come in time.
    Timeout,
}

/// One thing read from a socket.
pub enum Event {
    Text(Utf8Bytes),
    Ended(Ended),
    /// Pings, pongs and binary frames: nothing to act on.
    Nothing,
}

impl Event {
    pub fn of(next: Option<Result<Message, tungstenite::Error>>) -> Event {
        match next {
            Some(Ok(Message::Text(text))) => Event::Text(text),
            Some(Ok(Message::Close(frame))) => {
                Event::Ended(Ended::Closed(frame.map_or(1005, |f| u16::from(f.code))))
            }
            Some(Ok(_)) => Event::Nothing,
            Some(Err(_)) | None => Event::Ended(Ended::Dropped),
        }
    }
}

/// The answer to a request.
#[derive(Debug)]
pub enum Reply {
    /// The raw `data` of an `ok`.
    Ok(String),
    Error {
        code: String,
        retry_after_ms: Option<u64>,
    },
}

/// An open socket of the tool.
pub struct Conn {
    pub ws: Ws,
    /// The socket's number within its scenario: its histogram shard and
    /// the sender in its message stamps.
    pub index: usize,
    pub pacer: Pacer,
    next_ref: u64,
    stats: Arc<Stats>,
}

impl Conn {
    /// Opens socket `index`, recording how long it took or why it failed.
    pub async fn open(
        connector: &Connector,
        stats: &Arc<Stats>,
        index: usize,
        per_sec: f64,
    ) -> Option<Conn> {
        let started = Instant::now();
        match connector.connect(index).await {
            Ok(ws) => {
                stats.record(Lat::Connect, index, started.elapsed().as_micros() as u64);
                stats.add(Count::Connected, 1);
                stats.socket_opened();
                Some(Conn {
                    ws,
                    index,
                    pacer: Pacer::new(per_sec),
                    next_ref: 1,
                    stats: stats.clone(),
                })
            }
            Err(reason) => {
                stats.add(Count::ConnectFailed, 1);
                stats.transport(reason);
                None
            }
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn next_ref(&mut self) -> u64 {
        let reference = self.next_ref;
        self.next_ref += 1;
        reference
    }

    /// Sends one request once the pacer allows it.
    pub async fn send(
        &mut self,
        reference: Option<u64>,
        request: &Request,
    ) -> Result<(), tungstenite::Error> {
        self.pacer.ready().await;
        self.send_now(reference, request).await
    }

    /// Sends one request at once; the caller has waited for the pacer.
    pub async fn send_now(
        &mut self,
        reference: Option<u64>,
        request: &Request,
    ) -> Result<(), tungstenite::Error> {
        self.ws
            .send(Message::text(encode(reference, request)))
            .await
    }

    /// Sends `request` and reads until its reply. Other frames read on the
    /// way go to `on_other`.
    pub async fn request_with(
        &mut self,
        request: &Request,
        within: Duration,
        mut on_other: impl FnMut(&Incoming<'_>),
    ) -> Result<Reply, Ended> {
        let reference = self.next_ref();
        if self.send(Some(reference), request).await.is_err() {
            return Err(Ended::Dropped);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(next) => next,
                Err(_) => return Err(Ended::Timeout),
            };
            let text = match Event::of(next) {
                Event::Text(text) => text,
                Event::Ended(ended) => return Err(ended),
                Event::Nothing => continue,
            };
            let Some(frame) = Incoming::parse(text.as_str()) else {
                self.stats.add(Count::Unparsed, 1);
                continue;
            };
            if let Some(error) = &frame.error {
                self.stats.error(&error.code);
            }
            if frame.reference != Some(reference) {
                on_other(&frame);
                continue;
            }
            if let Some(error) = frame.error {
                if let Some(ms) = error.retry_after_ms {
                    self.pacer.back_off(ms);
                }
                return Ok(Reply::Error {
                    code: error.code.into_owned(),
                    retry_after_ms: error.retry_after_ms,
                });
            }
            let data = frame.data.map_or_else(String::new, |d| d.get().to_owned());
            return Ok(Reply::Ok(data));
        }
    }

    pub async fn request(&mut self, request: &Request, within: Duration) -> Result<Reply, Ended> {
        self.request_with(request, within, |_| {}).await
    }

    /// Like [`Conn::request`], retrying while the server answers
    /// `rate_limited` (the pacer then waits as told).
    pub async fn request_patiently(
        &mut self,
        request: &Request,
        within: Duration,
    ) -> Result<Reply, Ended> {
        for _ in 0..5 {
            match self.request(request, within).await? {
                Reply::Error { code, .. } if code == "rate_limited" => continue,
                reply => return Ok(reply),
            }
        }
        self.request(request, within).await
    }

    /// Says hello; false (and the reason recorded) when it did not work.
    pub async fn hello(&mut self, token: &str, within: Duration) -> bool {
        let started = Instant::now();
        let hello = Request::Hello {
            token: token.to_owned(),
        };
        match self.request_patiently(&hello, within).await {
            Ok(Reply::Ok(_)) => {
                self.stats
                    .record(Lat::Hello, self.index, started.elapsed().as_micros() as u64);
                self.stats.add(Count::HelloOk, 1);
                true
            }
            Ok(Reply::Error { .. }) => false,
            Err(ended) => {
                self.record_end(ended);
                false
            }
        }
    }

    /// Records how a socket ended when the tool did not end it.
    pub fn record_end(&self, ended: Ended) {
        match ended {
            Ended::Closed(code) => self.stats.closed_by_server(code),
            Ended::Dropped => self.stats.transport("dropped"),
            Ended::Timeout => self.stats.transport("reply_timeout"),
        }
    }

    /// Closes politely: a close frame, then a short wait for the server's.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if self.ws.close(None).await.is_ok() {
                while let Some(Ok(_)) = self.ws.next().await {}
            }
        })
        .await;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stats.socket_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_allows_its_burst_then_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(10.0);
        for _ in 0..5 {
            assert!(pacer.try_take(start).is_ok());
        }
        let wait = pacer.try_take(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(pacer.try_take(start + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn backing_off_withholds_tokens_for_the_given_time() {
        let mut pacer = Pacer::new(100.0);
        pacer.back_off(50);
        let now = Instant::now();
        let wait = pacer.try_take(now).unwrap_err();
        assert!(wait >= Duration::from_millis(55), "{wait:?}");
    }
}
