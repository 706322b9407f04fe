//! One socket's life: a reader loop (this task) that parses frames and runs
//! ops in order, and a writer task that drains the bounded outbox into the
//! socket in batches. The reader owns the connection's state, so nothing
//! here is shared but the outbox.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use meshi_protocol::{close, Ref, ServerFrame};
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{field, Instrument};

use super::rate::{RateLimit, Verdict};
use crate::auth::Identity;
use crate::clock::now_ms;
use crate::error::Error;
use crate::hub::frame::ok_reply;
use crate::hub::outbox::{Inbox, Kill, Outbound, Outbox};
use crate::hub::subscribers::{Bus, Subscriber, Topic};
use crate::hub::Frame;
use crate::hub::{encode, ConnId};
use crate::state::AppState;
use crate::store::Pair;
use meshi_protocol::UserSummary;

/// How long a closing socket waits for the client's close reply, so a
/// close frame is not lost to a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long a killed socket's close frame may wait behind a backlog the
/// client has not read yet.
const KILLED_CLOSE_WAIT: Duration = Duration::from_secs(10);
/// How long `hello` waits for Redis to confirm the user's channels.
const HELLO_LISTEN_WITHIN: Duration = Duration::from_secs(3);
/// Most frames written before one flush.
const WRITE_BATCH: usize = 64;

pub(super) struct Connection {
    pub state: AppState,
    pub id: ConnId,
    pub outbox: Outbox,
    pub session: Option<Session>,
    /// Rooms this socket has joined.
    pub joined: HashSet<Arc<str>>,
    pub watching: bool,
    /// Conversations this socket touched, with their pair.
    pub pairs: HashMap<i64, Pair>,
    /// When typing was last forwarded, per conversation.
    pub typing_forwarded: HashMap<i64, std::time::Instant>,
    rate: RateLimit,
    /// The socket's span, which learns the user at `hello`; an op's own
    /// span is current then, so `Span::current()` would be the wrong one.
    span: tracing::Span,
}

pub(super) struct Session {
    pub identity: Identity,
    pub user: UserSummary,
    pub subscriber: Subscriber,
}

/// Whether the rate limit lets a frame through.
enum Admission {
    Go,
    /// Answered with `rate_limited`; skip the frame.
    Refused,
    Close(u16, &'static str),
}

/// What the reader decided after a frame.
pub(super) enum Flow {
    Continue,
    /// Close after flushing what is queued.
    Close(u16, &'static str),
}

/// Serves one socket until it ends. Sync up to the returned future, so
/// the task keeps only what the socket needs while it lives; an idle
/// socket's footprint is mostly this future.
pub fn run(
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    state: AppState,
    origin_allowed: bool,
) -> impl Future<Output = ()> + Send {
    let id = state.hub.next_conn_id();
    let span = tracing::info_span!("conn", conn_id = id, user_id = field::Empty);
    let conn_span = span.clone();
    let serve = async move {
        if !origin_allowed {
            let _ = sink
                .send(close_message(
                    close::ORIGIN_NOT_ALLOWED,
                    "origin not allowed",
                ))
                .await;
            linger(&mut stream).await;
            return;
        }
        metrics::gauge!("meshi_connections").increment(1.0);
        let (outbox, rx, kill) = Outbox::new(state.config.outbox_frames);
        let _counted = state.hub.outbox_depths().track(id, &outbox);
        let writer = state
            .tasks
            .spawn(write_loop(sink, rx, kill.clone(), state.config.heartbeat()).in_current_span());
        let mut conn = Connection {
            rate: RateLimit::new(state.config.rate_per_sec, state.config.rate_burst),
            state,
            id,
            outbox,
            session: None,
            joined: HashSet::new(),
            watching: false,
            pairs: HashMap::new(),
            typing_forwarded: HashMap::new(),
            span: conn_span,
        };
        let ending = conn.read_loop(&mut stream, &kill).await;
        // Leave rooms before lingering over the close, so the others hear
        // of it at once.
        match ending {
            Some((code, reason)) => {
                conn.outbox.close_after_flush(code, reason);
                Box::pin(conn.leave_everything()).await;
                Box::pin(linger(&mut stream)).await;
            }
            None => {
                conn.outbox.kill(1000, "");
                Box::pin(conn.leave_everything()).await;
            }
        }
        let _ = writer.await;
        metrics::gauge!("meshi_connections").decrement(1.0);
        tracing::debug!("socket closed");
    };
    serve.instrument(span)
}

impl Connection {
    /// Reads until the socket ends. Returns the close to send, or `None`
    /// when the client went away or the socket was killed.
    async fn read_loop(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        kill: &Kill,
    ) -> Option<(u16, &'static str)> {
        let heartbeat = self.state.config.heartbeat();
        let hello_deadline = Instant::now() + self.state.config.hello_timeout();
        let mut idle_deadline = Instant::now() + heartbeat * 2;
        let shutdown = self.state.shutdown.clone();
        loop {
            // One timer for whichever deadline comes first: every idle
            // socket carries it.
            let (deadline, ending) = self.next_deadline(hello_deadline, idle_deadline);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.outbox.push(encode(&ServerFrame::Reconnect {
                        reason: "server restart".into(),
                        retry_after_ms: self.state.config.reconnect_after_ms,
                    }));
                    return Some((close::SERVER_RESTART, "server restart"));
                }
                _ = kill.killed() => return None,
                _ = sleep_until(deadline) => return Some(ending),
                message = stream.next() => {
                    idle_deadline = Instant::now() + heartbeat * 2;
                    let message = match message {
                        None => return None,
                        Some(Ok(message)) => message,
                        Some(Err(err)) => return self.transport_error(err),
                    };
                    metrics::counter!("meshi_frames_in_total").increment(1);
                    if let Message::Text(_) | Message::Binary(_) = &message {
                        let text = match &message {
                            Message::Text(text) => text.as_str(),
                            _ => "",
                        };
                        match self.admit(text) {
                            Admission::Go => {}
                            Admission::Refused => continue,
                            Admission::Close(code, reason) => return Some((code, reason)),
                        }
                    }
                    match message {
                        Message::Text(text) => {
                            // Boxed: an op's future is large and lives only
                            // while the op runs, not in every idle socket.
                            let flow = Box::pin(self.on_text(text.as_str())).await;
                            if let Flow::Close(code, reason) = flow {
                                return Some((code, reason));
                            }
                        }
                        Message::Binary(_) => self.reply_error(
                            None,
                            &Error::BadRequest("frames must be JSON text".into()),
                        ),
                        Message::Close(_) => return None,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
            }
        }
    }

    fn transport_error(&self, err: axum::Error) -> Option<(u16, &'static str)> {
        let too_big = err
            .into_inner()
            .downcast::<tungstenite::Error>()
            .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)));
        too_big.then_some((close::TOO_BIG, "frame too big"))
    }

    /// The first of: the hello deadline (before hello), the token's end
    /// (after it), and the idle deadline; with the close it calls for.
    fn next_deadline(
        &self,
        hello_deadline: Instant,
        idle_deadline: Instant,
    ) -> (Instant, (u16, &'static str)) {
        let mut next = (idle_deadline, (close::IDLE, "idle"));
        let other = match self.token_expiry() {
            None => (hello_deadline, (close::AUTH_FAILED, "hello timeout")),
            Some(expiry) => (expiry, (close::TOKEN_ENDED, "token expired")),
        };
        if other.0 < next.0 {
            next = other;
        }
        next
    }

    fn token_expiry(&self) -> Option<Instant> {
        let session = self.session.as_ref()?;
        let left_ms = session.identity.expires_at.saturating_sub(now_ms()).max(0);
        Some(Instant::now() + Duration::from_millis(left_ms as u64))
    }

    /// Applies the rate limit to a data frame. `text` is the frame's text
    /// (empty for binary), read only for the `ref` of a refusal.
    fn admit(&mut self, text: &str) -> Admission {
        match self.rate.check(std::time::Instant::now()) {
            Verdict::Allow => Admission::Go,
            Verdict::Refuse { retry_after_ms } => {
                metrics::counter!("meshi_rate_limited_total").increment(1);
                let reference = serde_json::from_str::<meshi_protocol::Header>(text)
                    .ok()
                    .and_then(|h| h.reference);
                self.reply_error(reference, &Error::rate_limited(retry_after_ms));
                Admission::Refused
            }
            Verdict::Abuse => {
                metrics::counter!("meshi_rate_limit_closes_total").increment(1);
                Admission::Close(close::RATE_LIMIT_ABUSE, "rate limit abuse")
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        if text.len() > self.state.config.max_frame_bytes {
            return Flow::Close(close::TOO_BIG, "frame too big");
        }
        self.handle(text).await
    }

    pub(super) fn reply_ok(&self, reference: Option<&Ref>, data: &serde_json::value::RawValue) {
        if let Some(reference) = reference {
            self.outbox.push(ok_reply(reference, data));
        }
    }

    pub(super) fn reply_error(&self, reference: Option<Ref>, error: &Error) {
        self.outbox.push(encode(&ServerFrame::Error {
            reference,
            error: error.body(),
        }));
    }

    /// Starts listening as this user: called once `hello` succeeds.
    pub(super) fn open_session(&mut self, identity: Identity) -> &Session {
        let user = crate::profile::summary(&identity.user);
        self.span.record("user_id", identity.user.id);
        let subscriber = Subscriber::new(self.id, identity.user.id, self.outbox.clone());
        self.state
            .hub
            .subscribe(Topic::User(identity.user.id), subscriber.clone());
        // Only stored sessions can be revoked; a JWT socket ends at `exp`.
        if let Some(session_id) = identity.session_id() {
            self.state
                .hub
                .subscribe(Topic::Session(session_id), subscriber.clone());
        }
        self.state.presence.connected(identity.user.id);
        self.session.insert(Session {
            identity,
            user,
            subscriber,
        })
    }

    /// In a cluster, pushes for this user reach this node only once Redis
    /// has confirmed the subscriptions `open_session` asked for. `hello` is
    /// answered after that, so a message sent to the user on another node
    /// right after the `ok` is not missed. While Redis is away the socket
    /// still gets this node's pushes, so there is no wait then, and the
    /// wait is bounded otherwise.
    pub(super) async fn hear_own_topics(&self) {
        let (Some(cluster), Some(session)) = (&self.state.cluster, &self.session) else {
            return;
        };
        if !cluster.bus().is_connected() {
            return;
        }
        let mut topics = vec![Topic::User(session.identity.user.id)];
        topics.extend(session.identity.session_id().map(Topic::Session));
        for topic in &topics {
            if !cluster.bus().listening(topic, HELLO_LISTEN_WITHIN).await {
                tracing::warn!("hello answered before Redis confirmed the user's channels");
                return;
            }
        }
    }

    /// Swaps in a new token of the same user (`auth.refresh`).
    pub(super) fn replace_identity(&mut self, identity: Identity) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let hub = &self.state.hub;
        if let Some(old) = session.identity.session_id() {
            hub.unsubscribe(&Topic::Session(old), self.id);
        }
        if let Some(new) = identity.session_id() {
            hub.subscribe(Topic::Session(new), session.subscriber.clone());
        }
        session.identity = identity;
    }

    async fn leave_everything(&mut self) {
        let hub = self.state.hub.clone();
        let Some(session) = self.session.take() else {
            return;
        };
        for room_id in std::mem::take(&mut self.joined) {
            if let Err(err) = self.state.rooms.leave(&room_id, &session.subscriber).await {
                tracing::debug!(error = %err, room = %room_id, "leaving a room on close failed");
            }
        }
        if self.watching {
            hub.unsubscribe(&Topic::Directory, self.id);
        }
        if let Some(session_id) = session.identity.session_id() {
            hub.unsubscribe(&Topic::Session(session_id), self.id);
        }
        hub.unsubscribe(&Topic::User(session.identity.user.id), self.id);
        self.state.presence.disconnected(session.identity.user.id);
    }
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Reads and drops what the client still sends until it answers our close
/// or the linger time runs out.
async fn linger(stream: &mut SplitStream<WebSocket>) {
    let _ = timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Writes queued frames in batches, pings on the heartbeat, and closes the
/// socket when asked to (in order) or killed (at once).
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: Inbox,
    kill: Arc<Kill>,
    heartbeat: Duration,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let closing = loop {
        let step = async {
            tokio::select! {
                next = rx.recv() => match next {
                    None => Some((1000, "")),
                    Some(Outbound::Close(code, reason)) => Some((code, reason)),
                    Some(Outbound::Frame(frame)) => write_batch(&mut sink, &mut rx, frame).await,
                },
                _ = ping.tick() => sink
                    .send(Message::Ping(Default::default()))
                    .await
                    .err()
                    .map(|_| (1000, "")),
            }
        };
        tokio::select! {
            biased;
            _ = kill.killed() => break kill.reason().unwrap_or((1000, "")),
            done = step => if let Some(close) = done { break close },
        }
    };
    let _ = timeout(
        KILLED_CLOSE_WAIT,
        sink.send(close_message(closing.0, closing.1)),
    )
    .await;
}

/// Writes `first` and whatever else is queued, then flushes once. Returns
/// a close when one was queued among them or the socket failed.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    rx: &mut Inbox,
    first: Frame,
) -> Option<(u16, &'static str)> {
    let mut written = 1u64;
    let mut close = None;
    if sink.feed(Message::Text(first)).await.is_err() {
        return Some((1000, ""));
    }
    while written < WRITE_BATCH as u64 {
        match rx.try_recv() {
            Ok(Outbound::Frame(frame)) => {
                if sink.feed(Message::Text(frame)).await.is_err() {
                    return Some((1000, ""));
                }
                written += 1;
            }
            Ok(Outbound::Close(code, reason)) => {
                close = Some((code, reason));
                break;
            }
            Err(_) => break,
        }
    }
    metrics::counter!("meshi_frames_out_total").increment(written);
    if sink.flush().await.is_err() {
        return Some((1000, ""));
    }
    close
}
