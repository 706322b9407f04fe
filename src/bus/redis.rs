//! A bus over Redis pub/sub, so that several nodes serve one set of rooms.
//!
//! # Design
//! - `publish` delivers to this node's sockets at once, then queues the
//!   delivery for the other nodes. Local delivery never depends on Redis:
//!   while Redis is away, a node keeps serving the sockets it holds.
//! - One publisher task drains the bounded queue in order and sends each
//!   batch as one pipeline of PUBLISH commands on a multiplexed
//!   [`ConnectionManager`], which reconnects by itself. A full queue drops
//!   the delivery (`meshi_bus_dropped_total`) instead of making the caller
//!   wait, because callers publish while holding a room's lock.
//! - One subscriber task owns a dedicated pub/sub connection. It listens
//!   only to the topics this node has local sockets for: [`Subscribers`]
//!   reports a topic's first and last subscriber, and the task subscribes
//!   or unsubscribes. When the connection drops it reconnects with backoff
//!   (100 ms doubling to 5 s) and subscribes again to every topic that has
//!   local sockets at that moment.
//! - Every payload names the node that published it; a node ignores its own,
//!   having delivered them already.
//!
//! A socket that subscribes is heard from other nodes once the SUBSCRIBE has
//! reached Redis; deliveries published elsewhere before that are not seen.
//! Nothing is stored: what is published while Redis is down, or while this
//! node is disconnected, does not reach the other nodes.
//!
//! # Channels
//! `<prefix>:room:<room id>`, `<prefix>:user:<user id>`,
//! `<prefix>:session:<session id>` and `<prefix>:dir` (the room directory).
//! The prefix lets several deployments, or tests, share one Redis.
//!
//! # Cost
//! One PUBLISH per delivery, to one topic's channel, however many sockets
//! listen; Redis sends it once to each node subscribed to that channel, and
//! each node fans it out to its own sockets. Cost grows with nodes
//! interested in a topic, not with recipients.
//!
//! # Payload (version 1)
//! ```text
//! byte 0        version, 1
//! byte 1        'F' frame or 'C' close
//! byte 2        n, the origin node id's length (1..=255)
//! 3 .. 3+n      origin node id, UTF-8
//! frame:  1 byte 0 or 1 (is there a skip_user), then 8 bytes of it
//!         (i64, big-endian) if 1, then the serialized frame to the end
//! close:  2 bytes close code (big-endian), then the reason, UTF-8, to the end
//! ```
//! Room events that Redis itself sequences (see `cluster::rooms`) are
//! published by a script, not by a node: kind 'P', an empty origin, so
//! every node delivers them, then `<position>:<seq> ` in ASCII decimal
//! (`seq` is 0 for events that are not messages), then the frame. A room's
//! closing event has kind 'X' instead, so nodes forget the room after it.
//! A member taken out of a room (their access ended) is kind 'R', with
//! `<position>:<user id> ` before the frame they alone receive: every node
//! takes that user's sockets off the room at that point of its order.
//! Nodes publish an eviction of their own as kind 'E': 8 bytes of the user
//! id (i64, big-endian), then the frame.
//! The frame's bytes travel as they were serialized, so no node parses or
//! re-serializes a frame it forwards.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Bus;
use crate::hub::outbox::Frame;
use crate::hub::subscribers::{Delivery, Subscribers, Topic};

/// A client whose connections send at once. Script calls and publishes are
/// small writes; with Nagle's algorithm one written while the previous is
/// unacknowledged waits for Redis's delayed ACK, up to 40 ms.
pub fn open_client(url: &str) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    redis::Client::open(info)
}

/// Most messages handled at once before the listener looks at anything else.
const RECEIVE_BATCH: usize = 1024;
/// Most topics one SUBSCRIBE or UNSUBSCRIBE carries.
const RECONCILE_BATCH: usize = 1024;
/// Deliveries waiting for the publisher; past this, they are dropped.
const QUEUE: usize = 16_384;
/// Deliveries sent to Redis in one pipeline.
const BATCH: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A half-open connection (peer gone without a FIN) sends no error; a ping
/// that goes unanswered is how the subscriber finds out.
const PING_EVERY: Duration = Duration::from_secs(10);
/// The publisher pings when it has sent nothing for this long.
const PING_EVERY_IDLE: Duration = Duration::from_secs(1);
/// Further tries of a batch whose first send failed.
const PUBLISH_RETRIES: usize = 3;
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the Redis URL is not valid: {0}")]
    Url(#[source] redis::RedisError),
    #[error("cannot reach Redis: {0}")]
    Connect(#[source] redis::RedisError),
    #[error("a node id must be 1 to 255 bytes long")]
    NodeId,
    #[error("these subscribers are already fed by another bus")]
    AlreadyWatched,
    #[error("Redis did not confirm the subscription in time")]
    NotListening,
}

pub struct RedisBus {
    channels: Channels,
    subscribers: Arc<Subscribers>,
    queue: mpsc::Sender<Delivery>,
    health: Arc<Health>,
    heard: Arc<Heard>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Default)]
struct Health {
    subscriber_up: AtomicBool,
    publisher_up: AtomicBool,
}

/// What the listener has heard: the channels subscribed right now, and the
/// highest event position and message `seq` it delivered per room.
struct Heard {
    channels: Mutex<HashSet<String>>,
    /// Bumped whenever `channels` changes, so waiters can look again.
    changed: watch::Sender<u64>,
    room_seqs: DashMap<Arc<str>, (u64, u64)>,
    on_room_closed: OnceLock<RoomClosed>,
    on_member_evicted: OnceLock<MemberEvicted>,
    /// Bumped each time the listener is subscribed again after losing
    /// Redis: whatever was published meanwhile never reached this node.
    resubscribed: watch::Sender<u64>,
}

/// Told of every room that closes, anywhere, while this node listens to it.
pub type RoomClosed = Arc<dyn Fn(&str) + Send + Sync>;

/// Told of every user taken out of a room this node listens to.
pub type MemberEvicted = Arc<dyn Fn(&str, i64) + Send + Sync>;

impl Heard {
    fn set_channels(&self, update: impl FnOnce(&mut HashSet<String>)) {
        update(&mut self.channels.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.send_modify(|version| *version += 1);
    }

    fn has_channel(&self, channel: &str) -> bool {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(channel)
    }
}

impl RedisBus {
    /// Connects both ends and starts their tasks. Fails if Redis cannot be
    /// reached now; once started, the bus outlives Redis restarts.
    pub async fn start(
        url: &str,
        prefix: &str,
        node_id: String,
        subscribers: Arc<Subscribers>,
    ) -> Result<RedisBus, BusError> {
        if node_id.is_empty() || node_id.len() > 255 {
            return Err(BusError::NodeId);
        }
        let client = open_client(url).map_err(BusError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_min_delay(BACKOFF_MIN)
            .set_max_delay(BACKOFF_MAX)
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let publisher = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(BusError::Connect)?;
        let pubsub = client.get_async_pubsub().await.map_err(BusError::Connect)?;

        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let watching = subscribers.watch(Arc::new(move |topic: &Topic, _gained: bool| {
            let _ = interest_tx.send(topic.clone());
        }));
        if !watching {
            return Err(BusError::AlreadyWatched);
        }

        let channels = Channels {
            prefix: prefix.to_owned(),
        };
        let health = Arc::new(Health {
            subscriber_up: AtomicBool::new(true),
            publisher_up: AtomicBool::new(true),
        });
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (queue, queued) = mpsc::channel(QUEUE);
        let heard = Arc::new(Heard {
            channels: Mutex::default(),
            changed: watch::channel(0).0,
            room_seqs: DashMap::new(),
            on_room_closed: OnceLock::new(),
            on_member_evicted: OnceLock::new(),
            resubscribed: watch::channel(0).0,
        });

        tasks.spawn(
            Publisher {
                conn: publisher,
                queued,
                channels: channels.clone(),
                node_id: node_id.clone(),
                health: health.clone(),
            }
            .run(shutdown.clone()),
        );
        tasks.spawn(
            Listener {
                client,
                channels,
                node_id,
                subscribers: subscribers.clone(),
                interest: interest_rx,
                subscribed: HashMap::new(),
                health: health.clone(),
                heard: heard.clone(),
            }
            .run(pubsub, shutdown.clone()),
        );
        tasks.close();

        Ok(RedisBus {
            channels: Channels {
                prefix: prefix.to_owned(),
            },
            subscribers,
            queue,
            health,
            heard,
            shutdown,
            tasks,
        })
    }

    /// Whether both connections to Redis are up, for readiness checks.
    pub fn is_connected(&self) -> bool {
        self.health.subscriber_up.load(Ordering::Relaxed)
            && self.health.publisher_up.load(Ordering::Relaxed)
    }

    /// Resolves once this node hears `topic`'s channel, which a local
    /// subscriber asked for; a room join waits for it so that no event
    /// sequenced after the join can pass this node by.
    pub async fn listening(&self, topic: &Topic, within: Duration) -> Result<(), BusError> {
        let channel = self.channels.name(topic);
        let mut changed = self.heard.changed.subscribe();
        let wait = async {
            loop {
                if self.heard.has_channel(&channel) {
                    return Ok(());
                }
                if changed.changed().await.is_err() {
                    return Err(BusError::NotListening);
                }
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .map_err(|_| BusError::NotListening)?
    }

    /// Installs the one listener for rooms closing; false if one is set.
    pub fn on_room_closed(&self, closed: RoomClosed) -> bool {
        self.heard.on_room_closed.set(closed).is_ok()
    }

    /// Installs the one listener for members taken out of rooms; false if
    /// one is set.
    pub fn on_member_evicted(&self, evicted: MemberEvicted) -> bool {
        self.heard.on_member_evicted.set(evicted).is_ok()
    }

    /// Changes each time the listener has subscribed again after losing
    /// Redis, so state that only the bus carried can be checked anew.
    pub fn resubscriptions(&self) -> watch::Receiver<u64> {
        self.heard.resubscribed.subscribe()
    }

    /// The Redis channel carrying `topic`.
    pub fn channel(&self, topic: &Topic) -> String {
        self.channels.name(topic)
    }

    /// The highest event position and message `seq` this node has heard in
    /// a room since it last subscribed to it; zeros when none.
    pub fn room_heard(&self, room: &str) -> (u64, u64) {
        self.heard
            .room_seqs
            .get(room)
            .map_or((0, 0), |heard| *heard)
    }

    /// Stops listening, sends what is already queued, and waits for both
    /// tasks to end.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Bus for RedisBus {
    fn publish(&self, delivery: Delivery) {
        self.subscribers.deliver(&delivery);
        if self.queue.try_send(delivery).is_err() {
            metrics::counter!("meshi_bus_dropped_total").increment(1);
        }
    }
}

#[derive(Clone)]
struct Channels {
    prefix: String,
}

impl Channels {
    fn name(&self, topic: &Topic) -> String {
        let prefix = &self.prefix;
        match topic {
            Topic::Room(id) => format!("{prefix}:room:{id}"),
            Topic::User(id) => format!("{prefix}:user:{id}"),
            Topic::Session(id) => format!("{prefix}:session:{id}"),
            Topic::Directory => format!("{prefix}:dir"),
        }
    }
}

fn topic_of(delivery: &Delivery) -> &Topic {
    match delivery {
        Delivery::Frame { topic, .. }
        | Delivery::Close { topic, .. }
        | Delivery::Evict { topic, .. } => topic,
    }
}

struct Publisher {
    conn: ConnectionManager,
    queued: mpsc::Receiver<Delivery>,
    channels: Channels,
    node_id: String,
    health: Arc<Health>,
}

impl Publisher {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut draining = false;
        let mut idle = tokio::time::interval(PING_EVERY_IDLE);
        loop {
            let received = if draining {
                self.queued.recv_many(&mut batch, BATCH).await
            } else {
                tokio::select! {
                    biased;
                    n = self.queued.recv_many(&mut batch, BATCH) => n,
                    () = shutdown.cancelled() => {
                        // What was queued before shutdown still goes out.
                        self.queued.close();
                        draining = true;
                        continue;
                    }
                    _ = idle.tick() => {
                        self.ping().await;
                        continue;
                    }
                }
            };
            idle.reset();
            if received == 0 {
                return;
            }
            self.send(&mut batch).await;
        }
    }

    /// An idle connection that died unnoticed would lose the next batch;
    /// a ping finds out first and lets the manager reconnect.
    async fn ping(&mut self) {
        let answered = redis::cmd("PING")
            .query_async::<String>(&mut self.conn)
            .await;
        let up = answered.is_ok();
        if self.health.publisher_up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("bus publishing to Redis again");
            } else {
                tracing::warn!("bus cannot reach Redis to publish");
            }
        }
    }

    async fn send(&mut self, batch: &mut Vec<Delivery>) {
        let mut pipe = redis::pipe();
        for delivery in batch.iter() {
            pipe.publish(
                self.channels.name(topic_of(delivery)),
                encode(&self.node_id, delivery),
            )
            .ignore();
        }
        let sent = batch.len() as u64;
        batch.clear();
        let started = Instant::now();
        let mut result = pipe.query_async::<()>(&mut self.conn).await;
        // A connection that broke since the last batch fails this one
        // while the manager reconnects; one more try usually lands it.
        // A timeout may have published after all, so only a refused or
        // broken connection is retried: nothing is delivered twice.
        for _ in 0..PUBLISH_RETRIES {
            match &result {
                Err(error)
                    if !error.is_timeout()
                        && (error.is_connection_dropped()
                            || error.is_connection_refusal()
                            || error.is_io_error()) => {}
                _ => break,
            }
            tokio::time::sleep(BACKOFF_MIN).await;
            result = pipe.query_async::<()>(&mut self.conn).await;
        }
        match result {
            Ok(()) => {
                metrics::histogram!("meshi_bus_publish_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("meshi_bus_published_total").increment(sent);
                if !self.health.publisher_up.swap(true, Ordering::Relaxed) {
                    tracing::info!("bus publishing to Redis again");
                }
            }
            Err(error) => {
                metrics::counter!("meshi_bus_publish_errors_total").increment(1);
                metrics::counter!("meshi_bus_dropped_total").increment(sent);
                if self.health.publisher_up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "bus cannot publish to Redis; other nodes miss deliveries");
                }
            }
        }
    }
}

struct Listener {
    client: redis::Client,
    channels: Channels,
    node_id: String,
    subscribers: Arc<Subscribers>,
    interest: mpsc::UnboundedReceiver<Topic>,
    /// Channels subscribed on the current connection, and their topics.
    subscribed: HashMap<String, Topic>,
    health: Arc<Health>,
    heard: Arc<Heard>,
}

/// Why a connection's session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

impl Listener {
    async fn run(mut self, first: redis::aio::PubSub, shutdown: CancellationToken) {
        let mut pubsub = Some(first);
        let mut backoff = BACKOFF_MIN;
        loop {
            let connection = match pubsub.take() {
                Some(connection) => Ok(connection),
                None => self.client.get_async_pubsub().await,
            };
            match connection {
                Ok(connection) => {
                    backoff = BACKOFF_MIN;
                    match self.session(connection, &shutdown).await {
                        Ended::Shutdown => return,
                        Ended::Lost(error) => {
                            self.health.subscriber_up.store(false, Ordering::Relaxed);
                            gauge_channels(0);
                            tracing::warn!(%error, "bus lost its Redis subscription; reconnecting");
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, ?backoff, "bus cannot reach Redis yet");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            metrics::counter!("meshi_bus_reconnects_total").increment(1);
        }
    }

    /// Listens on one connection until it fails or the node shuts down.
    async fn session(&mut self, pubsub: redis::aio::PubSub, shutdown: &CancellationToken) -> Ended {
        let (mut sink, mut stream) = pubsub.split();
        self.subscribed.clear();
        self.heard.set_channels(HashSet::clear);
        // A fresh connection listens to nothing: catch up with every topic
        // that has local sockets now. Reports queued meanwhile are covered.
        while self.interest.try_recv().is_ok() {}
        for topics in self.subscribers.topics().chunks(RECONCILE_BATCH) {
            if let Err(error) = self.reconcile(&mut sink, topics).await {
                return Ended::Lost(error.to_string());
            }
        }
        if !self.health.subscriber_up.swap(true, Ordering::Relaxed) {
            tracing::info!(
                channels = self.subscribed.len(),
                "bus subscribed to Redis again"
            );
            self.heard.resubscribed.send_modify(|n| *n += 1);
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        self.receive(&message);
                        // Everything else already here goes too: one
                        // message per turn of this loop, which also waits
                        // on subscription round trips, falls behind in a
                        // connect storm.
                        for _ in 0..RECEIVE_BATCH {
                            match stream.next().now_or_never() {
                                Some(Some(message)) => self.receive(&message),
                                Some(None) => return Ended::Lost("connection closed".into()),
                                None => break,
                            }
                        }
                    }
                    None => return Ended::Lost("connection closed".into()),
                },
                Some(topic) = self.interest.recv() => {
                    // In a connect storm reports come faster than one round
                    // trip each; take all that are waiting in one go.
                    let mut topics = vec![topic];
                    while topics.len() < RECONCILE_BATCH {
                        match self.interest.try_recv() {
                            Ok(topic) => topics.push(topic),
                            Err(_) => break,
                        }
                    }
                    if let Err(error) = self.reconcile(&mut sink, &topics).await {
                        return Ended::Lost(error.to_string());
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return Ended::Lost(error.to_string()),
                        Err(_) => return Ended::Lost("ping unanswered".into()),
                    }
                }
                () = shutdown.cancelled() => return Ended::Shutdown,
            }
        }
    }

    /// Brings these topics' subscriptions in line with whether they have
    /// local sockets now (the reports that prompted this may be stale), in
    /// at most one UNSUBSCRIBE and one SUBSCRIBE.
    async fn reconcile(
        &mut self,
        sink: &mut PubSubSink,
        topics: &[Topic],
    ) -> redis::RedisResult<()> {
        let mut seen = HashSet::new();
        let (mut to_subscribe, mut to_unsubscribe) = (Vec::new(), Vec::new());
        for topic in topics {
            let channel = self.channels.name(topic);
            if !seen.insert(channel.clone()) {
                continue;
            }
            let wanted = self.subscribers.count(topic) > 0;
            let have = self.subscribed.contains_key(&channel);
            if wanted && !have {
                to_subscribe.push((channel, topic.clone()));
            } else if !wanted && have {
                to_unsubscribe.push((channel, topic.clone()));
            }
        }
        if !to_unsubscribe.is_empty() {
            self.heard.set_channels(|set| {
                for (channel, _) in &to_unsubscribe {
                    set.remove(channel);
                }
            });
            for (_, topic) in &to_unsubscribe {
                if let Topic::Room(room) = topic {
                    self.heard.room_seqs.remove(room);
                }
            }
            let channels: Vec<&str> = to_unsubscribe.iter().map(|(c, _)| c.as_str()).collect();
            sink.unsubscribe(&channels).await?;
            for (channel, _) in &to_unsubscribe {
                self.subscribed.remove(channel);
            }
        }
        if !to_subscribe.is_empty() {
            let channels: Vec<&str> = to_subscribe.iter().map(|(c, _)| c.as_str()).collect();
            sink.subscribe(&channels).await?;
            self.heard.set_channels(|set| {
                for (channel, _) in &to_subscribe {
                    set.insert(channel.clone());
                }
            });
            self.subscribed.extend(to_subscribe);
        }
        gauge_channels(self.subscribed.len());
        Ok(())
    }

    fn receive(&self, message: &redis::Msg) {
        // A message can trail an UNSUBSCRIBE; nobody here wants it.
        let Some(topic) = self.subscribed.get(message.get_channel_name()) else {
            return;
        };
        match decode(&self.node_id, message.get_payload_bytes(), topic) {
            Ok(Decoded::Own) => {}
            Ok(Decoded::Remote(delivery)) => {
                metrics::counter!("meshi_bus_received_total").increment(1);
                self.subscribers.deliver(&delivery);
            }
            Ok(Decoded::Sequenced {
                delivery,
                seq,
                closes,
            }) => {
                metrics::counter!("meshi_bus_received_total").increment(1);
                if let (Topic::Room(room), Delivery::Evict { user, .. }) = (topic, &delivery) {
                    self.subscribers.deliver(&delivery);
                    if let Some(evicted) = self.heard.on_member_evicted.get() {
                        evicted(room, *user);
                    }
                    return;
                }
                if let (
                    Topic::Room(room),
                    Delivery::Frame {
                        position: Some(position),
                        ..
                    },
                ) = (topic, &delivery)
                {
                    if closes {
                        self.heard.room_seqs.remove(room);
                        if let Some(closed) = self.heard.on_room_closed.get() {
                            closed(room);
                        }
                    } else {
                        let mut heard = self.heard.room_seqs.entry(room.clone()).or_default();
                        *heard = (heard.0.max(*position), heard.1.max(seq));
                    }
                }
                self.subscribers.deliver(&delivery);
            }
            Err(error) => {
                metrics::counter!("meshi_bus_decode_errors_total").increment(1);
                tracing::warn!(%error, channel = message.get_channel_name(), "bus dropped an unreadable payload");
            }
        }
    }
}

fn gauge_channels(n: usize) {
    metrics::gauge!("meshi_bus_channels").set(n as f64);
}

const VERSION: u8 = 1;
const KIND_FRAME: u8 = b'F';
const KIND_CLOSE: u8 = b'C';
const KIND_SEQUENCED: u8 = b'P';
/// Sequenced, and the room is closed after it.
const KIND_CLOSING: u8 = b'X';
/// Sequenced: a member taken out of the room.
const KIND_REMOVED: u8 = b'R';
const KIND_EVICT: u8 = b'E';

/// Encodes a delivery as published; the format is in the module docs.
fn encode(node_id: &str, delivery: &Delivery) -> Vec<u8> {
    let node = node_id.as_bytes();
    debug_assert!(!node.is_empty() && node.len() <= 255);
    let body = match delivery {
        Delivery::Frame { frame, .. } => 9 + frame.len(),
        Delivery::Close { reason, .. } => 2 + reason.len(),
        Delivery::Evict { frame, .. } => 8 + frame.len(),
    };
    let mut out = Vec::with_capacity(3 + node.len() + body);
    out.push(VERSION);
    out.push(match delivery {
        Delivery::Frame { .. } => KIND_FRAME,
        Delivery::Close { .. } => KIND_CLOSE,
        Delivery::Evict { .. } => KIND_EVICT,
    });
    out.push(node.len() as u8);
    out.extend_from_slice(node);
    match delivery {
        Delivery::Frame {
            frame, skip_user, ..
        } => {
            match skip_user {
                Some(user) => {
                    out.push(1);
                    out.extend_from_slice(&user.to_be_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(frame.as_bytes());
        }
        Delivery::Close { code, reason, .. } => {
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(reason.as_bytes());
        }
        Delivery::Evict { user, frame, .. } => {
            out.extend_from_slice(&user.to_be_bytes());
            out.extend_from_slice(frame.as_bytes());
        }
    }
    out
}

#[derive(Debug)]
enum Decoded {
    /// Published by this node, which delivered it already.
    Own,
    Remote(Delivery),
    /// A room event Redis sequenced, for every node; `closes` when the
    /// room is gone after it.
    Sequenced {
        delivery: Delivery,
        seq: u64,
        closes: bool,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum DecodeError {
    #[error("payload version {0} is unknown")]
    Version(u8),
    #[error("payload kind {0:#04x} is unknown")]
    Kind(u8),
    #[error("skip_user flag {0} is neither 0 nor 1")]
    Flag(u8),
    #[error("payload is cut short")]
    Short,
    #[error("payload text is not UTF-8")]
    Utf8,
    #[error("a sequenced payload's position is malformed")]
    Position,
}

/// Decodes a payload heard on `topic`'s channel by the node `own`.
fn decode(own: &str, payload: &[u8], topic: &Topic) -> Result<Decoded, DecodeError> {
    let [version, kind, n, rest @ ..] = payload else {
        return Err(DecodeError::Short);
    };
    if *version != VERSION {
        return Err(DecodeError::Version(*version));
    }
    let (origin, body) = rest
        .split_at_checked(usize::from(*n))
        .ok_or(DecodeError::Short)?;
    if origin == own.as_bytes() {
        return Ok(Decoded::Own);
    }
    let topic = topic.clone();
    if *kind == KIND_SEQUENCED || *kind == KIND_CLOSING {
        return decode_sequenced(topic, body, *kind == KIND_CLOSING);
    }
    if *kind == KIND_REMOVED {
        return decode_removed(topic, body);
    }
    let delivery = match *kind {
        KIND_FRAME => {
            let (skip_user, frame) = match body {
                [0, frame @ ..] => (None, frame),
                [1, rest @ ..] => {
                    let (user, frame) = rest.split_first_chunk::<8>().ok_or(DecodeError::Short)?;
                    (Some(i64::from_be_bytes(*user)), frame)
                }
                [] => return Err(DecodeError::Short),
                [other, ..] => return Err(DecodeError::Flag(*other)),
            };
            let frame =
                Frame::try_from(Bytes::copy_from_slice(frame)).map_err(|_| DecodeError::Utf8)?;
            Delivery::Frame {
                topic,
                frame,
                skip_user,
                position: None,
            }
        }
        KIND_CLOSE => {
            let (code, reason) = body.split_first_chunk::<2>().ok_or(DecodeError::Short)?;
            let reason = std::str::from_utf8(reason).map_err(|_| DecodeError::Utf8)?;
            Delivery::Close {
                topic,
                code: u16::from_be_bytes(*code),
                reason: intern_reason(reason),
            }
        }
        KIND_EVICT => {
            let (user, frame) = body.split_first_chunk::<8>().ok_or(DecodeError::Short)?;
            Delivery::Evict {
                topic,
                user: i64::from_be_bytes(*user),
                frame: Frame::try_from(Bytes::copy_from_slice(frame))
                    .map_err(|_| DecodeError::Utf8)?,
            }
        }
        other => return Err(DecodeError::Kind(other)),
    };
    Ok(Decoded::Remote(delivery))
}

/// `<position>:<seq> <frame>`, as a room script publishes it.
fn decode_sequenced(topic: Topic, body: &[u8], closes: bool) -> Result<Decoded, DecodeError> {
    let space = body
        .iter()
        .position(|b| *b == b' ')
        .ok_or(DecodeError::Position)?;
    let (header, frame) = (&body[..space], &body[space + 1..]);
    let header = std::str::from_utf8(header).map_err(|_| DecodeError::Position)?;
    let (position, seq) = header.split_once(':').ok_or(DecodeError::Position)?;
    let position = position.parse().map_err(|_| DecodeError::Position)?;
    let seq = seq.parse().map_err(|_| DecodeError::Position)?;
    let frame = Frame::try_from(Bytes::copy_from_slice(frame)).map_err(|_| DecodeError::Utf8)?;
    Ok(Decoded::Sequenced {
        delivery: Delivery::Frame {
            topic,
            frame,
            skip_user: None,
            position: Some(position),
        },
        seq,
        closes,
    })
}

/// `<position>:<user id> <frame>`, as the room script that takes a member
/// out publishes it.
fn decode_removed(topic: Topic, body: &[u8]) -> Result<Decoded, DecodeError> {
    let space = body
        .iter()
        .position(|b| *b == b' ')
        .ok_or(DecodeError::Position)?;
    let (header, frame) = (&body[..space], &body[space + 1..]);
    let header = std::str::from_utf8(header).map_err(|_| DecodeError::Position)?;
    let (position, user) = header.split_once(':').ok_or(DecodeError::Position)?;
    position.parse::<u64>().map_err(|_| DecodeError::Position)?;
    let user = user.parse().map_err(|_| DecodeError::Position)?;
    let frame = Frame::try_from(Bytes::copy_from_slice(frame)).map_err(|_| DecodeError::Utf8)?;
    Ok(Decoded::Sequenced {
        delivery: Delivery::Evict { topic, user, frame },
        seq: 0,
        closes: false,
    })
}

/// Close reasons are `&'static str` all the way to the socket writer, and
/// the ones sent are string constants in this codebase, so a handful of
/// distinct texts is expected. Each is kept once; past a bound, a
/// misbehaving publisher gets a generic reason instead of growing memory.
fn intern_reason(reason: &str) -> &'static str {
    const MAX_REASONS: usize = 128;
    static REASONS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut reasons = REASONS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = reasons.get(reason) {
        return known;
    }
    if reasons.len() >= MAX_REASONS {
        return "closed";
    }
    let leaked: &'static str = Box::leak(reason.to_owned().into_boxed_str());
    reasons.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Topic {
        Topic::Room("lobby".into())
    }

    fn remote(payload: &[u8]) -> Delivery {
        match decode("node-b", payload, &room()) {
            Ok(Decoded::Remote(delivery)) => delivery,
            other => panic!("expected a remote delivery, got {other:?}"),
        }
    }

    #[test]
    fn frames_round_trip_with_and_without_skip_user() {
        for skip_user in [None, Some(42), Some(-1), Some(i64::MAX)] {
            let frame = Frame::from(r#"{"t":"room.message","text":"héllo"}"#);
            let sent = Delivery::Frame {
                topic: room(),
                frame: frame.clone(),
                skip_user,
                position: None,
            };
            let Delivery::Frame {
                topic,
                frame: got,
                skip_user: got_skip,
                ..
            } = remote(&encode("node-a", &sent))
            else {
                panic!("not a frame");
            };
            assert_eq!(topic, room());
            assert_eq!(got.as_str(), frame.as_str());
            assert_eq!(got_skip, skip_user);
        }
    }

    #[test]
    fn closes_round_trip() {
        let sent = Delivery::Close {
            topic: room(),
            code: 4010,
            reason: "token revoked",
        };
        let Delivery::Close { code, reason, .. } = remote(&encode("node-a", &sent)) else {
            panic!("not a close");
        };
        assert_eq!((code, reason), (4010, "token revoked"));
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let sent = Delivery::Frame {
            topic: room(),
            frame: Frame::from("{}"),
            skip_user: Some(7),
            position: None,
        };
        let mut expected = vec![1, b'F', 2, b'n', b'a', 1];
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(b"{}");
        assert_eq!(encode("na", &sent), expected);

        let close = Delivery::Close {
            topic: room(),
            code: 4010,
            reason: "x",
        };
        assert_eq!(
            encode("na", &close),
            [1, b'C', 2, b'n', b'a', 0x0f, 0xaa, b'x']
        );
    }

    #[test]
    fn a_node_recognizes_its_own_payloads() {
        let sent = Delivery::Frame {
            topic: room(),
            frame: Frame::from("{}"),
            skip_user: None,
            position: None,
        };
        assert!(matches!(
            decode("node-a", &encode("node-a", &sent), &room()),
            Ok(Decoded::Own)
        ));
        // A prefix of another node's id is not the same node.
        assert!(matches!(
            decode("node", &encode("node-a", &sent), &room()),
            Ok(Decoded::Remote(_))
        ));
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let own = "me";
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", DecodeError::Short),
            (&[1, b'F'], DecodeError::Short),
            (&[2, b'F', 1, b'x', 0], DecodeError::Version(2)),
            (&[1, b'F', 9, b'x'], DecodeError::Short),
            (&[1, b'Z', 1, b'x', 0], DecodeError::Kind(b'Z')),
            (&[1, b'F', 1, b'x'], DecodeError::Short),
            (&[1, b'F', 1, b'x', 1, 0, 0], DecodeError::Short),
            (&[1, b'F', 1, b'x', 2], DecodeError::Flag(2)),
            (&[1, b'F', 1, b'x', 0, 0xff], DecodeError::Utf8),
            (&[1, b'C', 1, b'x', 0x0f], DecodeError::Short),
            (&[1, b'C', 1, b'x', 0x0f, 0xaa, 0xff], DecodeError::Utf8),
        ];
        for (payload, expected) in cases {
            let got = decode(own, payload, &room()).map(|_| ()).unwrap_err();
            assert_eq!(&got, expected, "payload {payload:?}");
        }
    }

    #[test]
    fn sequenced_payloads_reach_every_node_with_their_position() {
        let payload = b"\x01P\x0042:7 {\"type\":\"room.message\"}";
        for own in ["node-a", "node-b"] {
            let Ok(Decoded::Sequenced { delivery, seq, .. }) = decode(own, payload, &room()) else {
                panic!("not sequenced");
            };
            let Delivery::Frame {
                frame, position, ..
            } = delivery
            else {
                panic!("not a frame");
            };
            assert_eq!((position, seq), (Some(42), 7));
            assert_eq!(frame.as_str(), r#"{"type":"room.message"}"#);
        }
        assert_eq!(
            decode("me", b"\x01P\x00x:1 {}", &room()).map(|_| ()),
            Err(DecodeError::Position)
        );
    }

    #[test]
    fn removals_reach_every_node_naming_the_user() {
        let payload = b"\x01R\x0043:7 {\"type\":\"room.removed\"}";
        for own in ["node-a", "node-b"] {
            let Ok(Decoded::Sequenced { delivery, .. }) = decode(own, payload, &room()) else {
                panic!("not sequenced");
            };
            let Delivery::Evict { user, frame, .. } = delivery else {
                panic!("not an eviction");
            };
            assert_eq!(user, 7);
            assert_eq!(frame.as_str(), r#"{"type":"room.removed"}"#);
        }
        let sent = Delivery::Evict {
            topic: room(),
            user: 9,
            frame: Frame::from("{}"),
        };
        let Delivery::Evict { user, frame, .. } = remote(&encode("node-a", &sent)) else {
            panic!("not an eviction");
        };
        assert_eq!((user, frame.as_str()), (9, "{}"));
    }

    #[test]
    fn reasons_are_interned_once() {
        let a = intern_reason("interned once");
        let b = intern_reason(&String::from("interned once"));
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn channel_names_carry_the_prefix() {
        let channels = Channels {
            prefix: "meshi-test".into(),
        };
        assert_eq!(channels.name(&room()), "meshi-test:room:lobby");
        assert_eq!(channels.name(&Topic::User(5)), "meshi-test:user:5");
        assert_eq!(channels.name(&Topic::Session(9)), "meshi-test:session:9");
        assert_eq!(channels.name(&Topic::Directory), "meshi-test:dir");
    }
}
