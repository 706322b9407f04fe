//! The live delivery side of this node: sockets' outboxes, who listens to
//! which topic, the join gate, and publishing through the bus.
//!
//! It owns no room, conversation or user state and imports nothing above
//! it: rooms (`rooms`), direct messages (`dm`) and presence publish
//! through it. Publishing never waits, so callers may hold their own
//! short locks while they publish to keep an order. Frames are serialized
//! once and the same bytes go to every recipient.

pub mod frame;
pub mod gate;
pub mod outbox;
pub mod subscribers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meshi_protocol::ServerFrame;

pub use frame::{encode, Frame};
use subscribers::{Bus, Delivery, Subscriber, Subscribers, Topic};

pub type ConnId = u64;
pub type UserId = i64;

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn Bus>,
    subscribers: Arc<Subscribers>,
    next_conn: AtomicU64,
    depths: Arc<outbox::Depths>,
}

impl Hub {
    pub fn new(bus: Arc<dyn Bus>, subscribers: Arc<Subscribers>) -> Self {
        Hub {
            inner: Arc::new(Inner {
                bus,
                subscribers,
                next_conn: AtomicU64::new(1),
                depths: Arc::default(),
            }),
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The queues of this node's open sockets, for the metrics scrape.
    pub fn outbox_depths(&self) -> &Arc<outbox::Depths> {
        &self.inner.depths
    }

    pub fn subscribe(&self, topic: Topic, subscriber: Subscriber) {
        self.inner.subscribers.subscribe(topic, subscriber);
    }

    /// Takes a socket off a topic; returns whether it was on it.
    pub fn unsubscribe(&self, topic: &Topic, conn: ConnId) -> bool {
        self.inner.subscribers.unsubscribe(topic, conn)
    }

    /// Pushes a frame to every socket listening to `topic`, on every node.
    pub fn publish(&self, topic: Topic, frame: &ServerFrame) {
        self.inner.bus.publish(Delivery::Frame {
            topic,
            frame: encode(frame),
            skip_user: None,
            position: None,
        });
    }

    /// Pushes an already serialized frame, so several topics can share it.
    pub fn publish_frame(&self, topic: Topic, frame: Frame) {
        self.inner.bus.publish(Delivery::Frame {
            topic,
            frame,
            skip_user: None,
            position: None,
        });
    }

    /// Pushes a room event at its `position` in the room's order, which
    /// gates of joining sockets go by.
    pub fn publish_in_order(&self, topic: Topic, frame: Frame, position: u64) {
        self.inner.bus.publish(Delivery::Frame {
            topic,
            frame,
            skip_user: None,
            position: Some(position),
        });
    }

    /// Takes every socket of `user` off `topic`, on every node, each told
    /// so by `frame`.
    pub fn evict(&self, topic: Topic, user: UserId, frame: Frame) {
        self.inner
            .bus
            .publish(Delivery::Evict { topic, user, frame });
    }

    /// Whether what is published on `topic` anywhere reaches this node's
    /// subscribers of it (by `within`).
    pub async fn listening(&self, topic: &Topic, within: Duration) -> bool {
        self.inner.bus.listening(topic, within).await
    }

    /// Pushes a frame to every socket listening to `topic` but `skip_user`'s.
    pub fn publish_except(&self, topic: Topic, frame: &ServerFrame, skip_user: UserId) {
        self.inner.bus.publish(Delivery::Frame {
            topic,
            frame: encode(frame),
            skip_user: Some(skip_user),
            position: None,
        });
    }

    /// Pushes a frame to this node's sockets on `topic` only.
    pub fn deliver_here(&self, topic: Topic, frame: Frame) {
        self.inner.subscribers.deliver(&Delivery::Frame {
            topic,
            frame,
            skip_user: None,
            position: None,
        });
    }

    /// The local subscriber table.
    pub fn subscribers(&self) -> &Arc<Subscribers> {
        &self.inner.subscribers
    }

    /// Takes this node's sockets off `topic`, whose last event they have.
    pub fn end_here(&self, topic: &Topic) {
        self.inner.subscribers.end(topic);
    }

    /// Closes this node's sockets listening to `topic`.
    pub fn close_here(&self, topic: Topic, code: u16, reason: &'static str) {
        self.inner.subscribers.deliver(&Delivery::Close {
            topic,
            code,
            reason,
        });
    }

    /// Closes every socket listening to `topic`, on every node.
    pub fn close_all(&self, topic: Topic, code: u16, reason: &'static str) {
        self.inner.bus.publish(Delivery::Close {
            topic,
            code,
            reason,
        });
    }
}
