//! Who on this node listens to what: topic -> the outboxes of local sockets.
//!
//! This is the delivery end of the bus: whatever a bus carries, it hands to
//! [`Subscribers::deliver`] on every node, the publishing one included.
//! Delivery holds a shard's read lock only while pushing into outboxes,
//! which never waits.

use std::sync::Arc;

use dashmap::DashMap;

use super::outbox::{Frame, Outbox};
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
    },
    Close {
        topic: Topic,
        code: u16,
        reason: &'static str,
    },
}

#[derive(Clone)]
pub struct Subscriber {
    pub conn: ConnId,
    pub user: UserId,
    pub outbox: Outbox,
}

#[derive(Default)]
pub struct Subscribers {
    topics: DashMap<Topic, Vec<Subscriber>>,
}

impl Subscribers {
    pub fn subscribe(&self, topic: Topic, subscriber: Subscriber) {
        let mut entry = self.topics.entry(topic).or_default();
        if !entry.iter().any(|s| s.conn == subscriber.conn) {
            entry.push(subscriber);
        }
    }

    pub fn unsubscribe(&self, topic: &Topic, conn: ConnId) {
        self.topics.remove_if_mut(topic, |_, subscribers| {
            subscribers.retain(|s| s.conn != conn);
            subscribers.is_empty()
        });
    }

    pub fn deliver(&self, delivery: &Delivery) {
        match delivery {
            Delivery::Frame {
                topic,
                frame,
                skip_user,
            } => {
                let Some(subscribers) = self.topics.get(topic) else {
                    return;
                };
                let mut sent = 0u64;
                for s in subscribers.iter() {
                    if Some(s.user) != *skip_user {
                        s.outbox.push(frame.clone());
                        sent += 1;
                    }
                }
                metrics::counter!("meshi_deliveries_total").increment(sent);
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
        }
    }

    pub fn count(&self, topic: &Topic) -> usize {
        self.topics.get(topic).map_or(0, |s| s.len())
    }
}
