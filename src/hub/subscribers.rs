//! Who on this node listens to what: topic -> the outboxes of local sockets.
//!
//! This is the delivery end of the bus: whatever a bus carries, it hands to
//! [`Subscribers::deliver`] on every node, the publishing one included.
//! Delivery holds a shard's read lock only while pushing into outboxes,
//! which never waits.
//!
//! A networked bus listens only to the topics this node has sockets for; an
//! [`InterestWatcher`] tells it when a topic gains its first local
//! subscriber or loses its last.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::frame::Frame;
use super::gate::Gate;
use super::outbox::Outbox;
use super::{ConnId, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Sockets joined to a room.
    Room(Arc<str>),
    /// Every socket of a user.
    User(UserId),
    /// Every socket opened with one session token.
    Session(i64),
    /// Sockets watching the room directory (`rooms.watch`).
    Directory,
}

/// What a bus carries to the sockets behind a topic.
#[derive(Debug, Clone)]
pub enum Delivery {
    Frame {
        topic: Topic,
        frame: Frame,
        /// Skip this user's sockets (typing goes to the others).
        skip_user: Option<UserId>,
        /// Where this event stands in its room's order, when a cluster
        /// sequenced it; see [`Gate`].
        position: Option<u64>,
    },
    Close {
        topic: Topic,
        code: u16,
        reason: &'static str,
    },
    /// Takes every socket of `user` off `topic` (a room they may no longer
    /// be in) and hands each of them `frame`, the last it hears of it.
    /// Later deliveries on the topic pass them by.
    Evict {
        topic: Topic,
        user: UserId,
        frame: Frame,
    },
}

/// What carries a delivery to the subscribers of every node, this one's
/// included; `bus` has the two kinds. It is declared here, beside what it
/// carries, so the hub publishes through it without depending on any of
/// them. `publish` must not wait: callers hold a room's lock while they
/// publish, so that a room's messages leave in `seq` order.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    fn publish(&self, delivery: Delivery);

    /// Resolves to true once deliveries on `topic` published anywhere reach
    /// this node, which a local subscriber asked for; false if that did not
    /// happen `within`. A room join waits for it, so that no event
    /// sequenced after the join can pass this node by.
    async fn listening(&self, topic: &Topic, within: std::time::Duration) -> bool;
}

/// What taking one socket off a topic left of its user there.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The socket was not on the topic (or was taken off it already).
    NotOn,
    /// Another socket of the same user still is.
    OthersOfUser,
    /// It was the user's last socket on the topic.
    LastOfUser,
}

#[derive(Clone)]
pub struct Subscriber {
    pub conn: ConnId,
    pub user: UserId,
    pub outbox: Outbox,
    /// Set on a room subscription whose join is still on its way.
    pub gate: Option<Arc<Gate>>,
}

impl Subscriber {
    pub fn new(conn: ConnId, user: UserId, outbox: Outbox) -> Self {
        Subscriber {
            conn,
            user,
            outbox,
            gate: None,
        }
    }

    /// The same socket, its room deliveries held by `gate`.
    pub fn gated(&self, gate: Arc<Gate>) -> Self {
        Subscriber {
            gate: Some(gate),
            ..self.clone()
        }
    }
}

/// Called with `true` when a topic gains its first local subscriber and
/// `false` when it loses its last. It runs inside `subscribe` and
/// `unsubscribe`, so it must not block or call back into [`Subscribers`].
/// Reports for one topic from racing sockets can arrive out of order, so
/// treat one as a prompt to look at [`Subscribers::count`], not as the state.
pub type InterestWatcher = Arc<dyn Fn(&Topic, bool) + Send + Sync>;

#[derive(Default)]
pub struct Subscribers {
    topics: DashMap<Topic, Vec<Subscriber>>,
    /// Set once, by the bus that serves this node; a local bus needs none.
    watcher: OnceLock<InterestWatcher>,
}

impl Subscribers {
    /// Installs the one watcher of interest changes. Returns false if one is
    /// already installed: two buses feeding one node would deliver twice.
    pub fn watch(&self, watcher: InterestWatcher) -> bool {
        self.watcher.set(watcher).is_ok()
    }

    pub fn subscribe(&self, topic: Topic, subscriber: Subscriber) {
        match self.topics.entry(topic) {
            Entry::Occupied(mut entry) => {
                if !entry.get().iter().any(|s| s.conn == subscriber.conn) {
                    entry.get_mut().push(subscriber);
                }
            }
            Entry::Vacant(entry) => {
                if let Some(watcher) = self.watcher.get() {
                    watcher(entry.key(), true);
                }
                entry.insert(vec![subscriber]);
            }
        }
    }

    /// Subscribes, or swaps in `subscriber` for the same socket's entry.
    pub fn resubscribe(&self, topic: Topic, subscriber: Subscriber) {
        if let Some(mut entry) = self.topics.get_mut(&topic) {
            if let Some(existing) = entry.iter_mut().find(|s| s.conn == subscriber.conn) {
                *existing = subscriber;
                return;
            }
        }
        self.subscribe(topic, subscriber);
    }

    /// Takes a socket off a topic; returns whether it was on it.
    pub fn unsubscribe(&self, topic: &Topic, conn: ConnId) -> bool {
        self.unsubscribe_where(topic, |s| s.conn == conn)
            .next()
            .is_some()
    }

    /// Takes a socket off a topic and says, in the same step, whether its
    /// user still has a socket there.
    pub fn unsubscribe_counting(&self, topic: &Topic, conn: ConnId) -> Unsubscribed {
        let mut outcome = Unsubscribed::NotOn;
        self.take_from(topic, |subscribers| {
            if let Some(at) = subscribers.iter().position(|s| s.conn == conn) {
                let gone = subscribers.remove(at);
                outcome = if subscribers.iter().any(|s| s.user == gone.user) {
                    Unsubscribed::OthersOfUser
                } else {
                    Unsubscribed::LastOfUser
                };
            }
        });
        outcome
    }

    /// Takes every socket off `topic`: its last event was delivered (a
    /// room closed), and nothing later under the same name is theirs.
    pub fn end(&self, topic: &Topic) {
        self.take_from(topic, Vec::clear);
    }

    /// Takes every subscriber `leaves` picks off `topic` and returns them.
    fn unsubscribe_where(
        &self,
        topic: &Topic,
        leaves: impl Fn(&Subscriber) -> bool,
    ) -> std::vec::IntoIter<Subscriber> {
        let mut left = Vec::new();
        self.take_from(topic, |subscribers| {
            let (gone, stay): (Vec<_>, Vec<_>) =
                std::mem::take(subscribers).into_iter().partition(&leaves);
            *subscribers = stay;
            left = gone;
        });
        left.into_iter()
    }

    /// Runs `take` on a topic's subscribers under its shard lock; a topic
    /// left without any is dropped, and the watcher told.
    fn take_from(&self, topic: &Topic, take: impl FnOnce(&mut Vec<Subscriber>)) {
        let emptied = self.topics.remove_if_mut(topic, |_, subscribers| {
            take(subscribers);
            subscribers.is_empty()
        });
        if let (Some((topic, _)), Some(watcher)) = (emptied, self.watcher.get()) {
            watcher(&topic, false);
        }
    }

    /// Whether a socket listens to a topic right now.
    pub fn has(&self, topic: &Topic, conn: ConnId) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|subscribers| subscribers.iter().any(|s| s.conn == conn))
    }

    /// Whether any socket of `user` listens to a topic right now.
    pub fn has_user(&self, topic: &Topic, user: UserId) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|subscribers| subscribers.iter().any(|s| s.user == user))
    }

    /// Every topic with at least one local subscriber right now.
    pub fn topics(&self) -> Vec<Topic> {
        self.topics.iter().map(|e| e.key().clone()).collect()
    }

    pub fn deliver(&self, delivery: &Delivery) {
        match delivery {
            Delivery::Frame {
                topic,
                frame,
                skip_user,
                position,
            } => {
                let Some(subscribers) = self.topics.get(topic) else {
                    return;
                };
                let started = Instant::now();
                let mut sent = 0u64;
                for s in subscribers.iter() {
                    if Some(s.user) == *skip_user {
                        continue;
                    }
                    match &s.gate {
                        Some(gate) => gate.pass(*position, frame, &s.outbox),
                        None => s.outbox.push(frame.clone()),
                    }
                    sent += 1;
                }
                metrics::counter!("meshi_deliveries_total").increment(sent);
                // Measured here, where both room engines' messages end up,
                // so a cluster's fan-out is charted like a lone node's.
                if let Topic::Room(_) = topic {
                    metrics::histogram!("meshi_fanout_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
            }
            Delivery::Close {
                topic,
                code,
                reason,
            } => {
                if let Some(subscribers) = self.topics.get(topic) {
                    for s in subscribers.iter() {
                        s.outbox.kill(*code, reason);
                    }
                }
            }
            Delivery::Evict { topic, user, frame } => {
                for evicted in self.unsubscribe_where(topic, |s| s.user == *user) {
                    evicted.outbox.push(frame.clone());
                }
            }
        }
    }

    pub fn count(&self, topic: &Topic) -> usize {
        self.topics.get(topic).map_or(0, |s| s.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn the_watcher_hears_only_first_and_last_subscribers() {
        let subscribers = Subscribers::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        assert!(
            subscribers.watch(Arc::new(move |topic: &Topic, gained: bool| {
                log.lock().unwrap().push((topic.clone(), gained));
            }))
        );
        assert!(!subscribers.watch(Arc::new(|_: &Topic, _: bool| {})));

        let topic = Topic::User(1);
        let subscriber = |conn| Subscriber::new(conn, 1, Outbox::new(1).0);
        subscribers.subscribe(topic.clone(), subscriber(1));
        subscribers.subscribe(topic.clone(), subscriber(2));
        subscribers.subscribe(topic.clone(), subscriber(2));
        subscribers.unsubscribe(&topic, 1);
        subscribers.unsubscribe(&topic, 3);
        assert_eq!(subscribers.topics(), vec![topic.clone()]);
        subscribers.unsubscribe(&topic, 2);
        subscribers.unsubscribe(&topic, 2);

        assert_eq!(
            *heard.lock().unwrap(),
            vec![(topic.clone(), true), (topic, false)]
        );
        assert!(subscribers.topics().is_empty());
    }

    #[test]
    fn unsubscribing_says_whether_the_user_is_still_on_the_topic() {
        let subscribers = Subscribers::default();
        let topic = Topic::Room(Arc::from("r"));
        let subscriber = |conn, user| Subscriber::new(conn, user, Outbox::new(1).0);
        subscribers.subscribe(topic.clone(), subscriber(1, 7));
        subscribers.subscribe(topic.clone(), subscriber(2, 7));
        subscribers.subscribe(topic.clone(), subscriber(3, 8));
        assert_eq!(
            subscribers.unsubscribe_counting(&topic, 1),
            Unsubscribed::OthersOfUser
        );
        assert_eq!(
            subscribers.unsubscribe_counting(&topic, 1),
            Unsubscribed::NotOn
        );
        assert!(subscribers.has_user(&topic, 7));
        assert_eq!(
            subscribers.unsubscribe_counting(&topic, 2),
            Unsubscribed::LastOfUser
        );
        assert!(!subscribers.has_user(&topic, 7));
        assert_eq!(
            subscribers.unsubscribe_counting(&topic, 3),
            Unsubscribed::LastOfUser
        );
        assert_eq!(subscribers.count(&topic), 0);
    }
}
