//! A bus over Redis pub/sub, so that several nodes serve one set of rooms.
//!
//! # Design
//! - `publish` delivers to this node's sockets at once, then queues the
//!   delivery for the other nodes. Local delivery never depends on Redis:
//!   while Redis is away, a node keeps serving the sockets it holds.
//! - One publisher task drains the bounded queue in order and sends each
//!   batch as one pipeline of PUBLISH commands on a multiplexed
//!   `ConnectionManager`, which reconnects by itself. A full queue drops
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
//! The payload format, and the events Redis scripts publish in it, are in
//! [`codec`]; the two tasks are [`publisher`] and [`listener`].

mod codec;
mod listener;
mod publisher;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use redis::aio::ConnectionManagerConfig;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Bus;
use crate::hub::subscribers::{Delivery, Subscribers, Topic};

use listener::Listener;
use publisher::Publisher;

/// A client whose connections send at once. Script calls and publishes are
/// small writes; with Nagle's algorithm one written while the previous is
/// unacknowledged waits for Redis's delayed ACK, up to 40 ms.
///
/// A `rediss://` URL speaks TLS, checked against `root_cert_pem` (PEM
/// certificates) when given and against the system's roots otherwise.
/// Every connection of a node opens from the one client, so the bus's two
/// and the cluster's share one TLS setup.
pub fn open_client(url: &str, root_cert_pem: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    match root_cert_pem {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => redis::Client::open(info),
    }
}

/// Deliveries waiting for the publisher; past this, they are dropped.
const QUEUE: usize = 16_384;
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);
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
pub(super) struct Health {
    pub(super) subscriber_up: AtomicBool,
    pub(super) publisher_up: AtomicBool,
}

/// What the listener has heard: the channels subscribed right now, and the
/// highest event position and message `seq` it delivered per room.
pub(super) struct Heard {
    pub(super) channels: Mutex<HashSet<String>>,
    /// Bumped whenever `channels` changes, so waiters can look again.
    pub(super) changed: watch::Sender<u64>,
    pub(super) room_seqs: DashMap<Arc<str>, (u64, u64)>,
    pub(super) on_room_closed: OnceLock<RoomClosed>,
    pub(super) on_member_evicted: OnceLock<MemberEvicted>,
    /// Bumped each time the listener is subscribed again after losing
    /// Redis: whatever was published meanwhile never reached this node.
    pub(super) resubscribed: watch::Sender<u64>,
}

/// Told of every room that closes, anywhere, while this node listens to it.
pub type RoomClosed = Arc<dyn Fn(&str) + Send + Sync>;

/// Told of every user taken out of a room this node listens to.
pub type MemberEvicted = Arc<dyn Fn(&str, i64) + Send + Sync>;

impl Heard {
    pub(super) fn set_channels(&self, update: impl FnOnce(&mut HashSet<String>)) {
        update(&mut self.channels.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.send_modify(|version| *version += 1);
    }

    pub(super) fn has_channel(&self, channel: &str) -> bool {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(channel)
    }
}

impl RedisBus {
    /// Connects both ends from `client` (see [`open_client`]) and starts
    /// their tasks. Fails if Redis cannot be reached now; once started, the
    /// bus outlives Redis restarts.
    pub async fn start(
        client: redis::Client,
        prefix: &str,
        node_id: String,
        subscribers: Arc<Subscribers>,
    ) -> Result<RedisBus, BusError> {
        if node_id.is_empty() || node_id.len() > 255 {
            return Err(BusError::NodeId);
        }
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
                probes: channels.probes(),
                channels: channels.clone(),
                node_id: node_id.clone(),
                health: health.clone(),
                probe_due: None,
            }
            .run(shutdown.clone()),
        );
        tasks.spawn(
            Listener {
                client,
                probes: channels.probes(),
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

#[async_trait::async_trait]
impl Bus for RedisBus {
    fn publish(&self, delivery: Delivery) {
        self.subscribers.deliver(&delivery);
        if self.queue.try_send(delivery).is_err() {
            metrics::counter!("meshi_bus_dropped_total").increment(1);
        }
    }

    /// Waits for Redis to confirm the subscription to `topic`'s channel.
    async fn listening(&self, topic: &Topic, within: Duration) -> bool {
        let channel = self.channels.name(topic);
        let mut changed = self.heard.changed.subscribe();
        let wait = async {
            loop {
                if self.heard.has_channel(&channel) {
                    return true;
                }
                if changed.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(within, wait).await.unwrap_or(false)
    }
}

#[derive(Clone)]
pub(super) struct Channels {
    pub(super) prefix: String,
}

impl Channels {
    pub(super) fn name(&self, topic: &Topic) -> String {
        let prefix = &self.prefix;
        match topic {
            Topic::Room(id) => format!("{prefix}:room:{id}"),
            Topic::User(id) => format!("{prefix}:user:{id}"),
            Topic::Session(id) => format!("{prefix}:session:{id}"),
            Topic::Directory => format!("{prefix}:dir"),
        }
    }

    /// Where the nodes' lag probes travel; every node listens to it.
    pub(super) fn probes(&self) -> String {
        format!("{}:probe", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_carry_the_prefix() {
        let channels = Channels {
            prefix: "meshi-test".into(),
        };
        assert_eq!(
            channels.name(&Topic::Room("lobby".into())),
            "meshi-test:room:lobby"
        );
        assert_eq!(channels.name(&Topic::User(5)), "meshi-test:user:5");
        assert_eq!(channels.name(&Topic::Session(9)), "meshi-test:session:9");
        assert_eq!(channels.name(&Topic::Directory), "meshi-test:dir");
    }
}
