//! The live state of this node: sockets, who listens to what, and rooms.
//!
//! Synchronous and free of I/O: no method awaits. Rooms sit in a sharded
//! map, each behind its own short-lived lock, so rooms never contend with
//! one another. Frames are serialized once and the same bytes go to every
//! recipient through the bus.

pub mod frame;
pub mod gate;
pub mod outbox;
pub mod quota;
mod rooms;
pub mod subscribers;

pub use rooms::{
    validate_message, validate_new_room, validate_text, RoomSettings, StandingRoom, LATEST_ON_JOIN,
};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use meshi_protocol::ServerFrame;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use frame::{encode, Frame};
use subscribers::{Bus, Delivery, Subscriber, Subscribers, Topic};

pub type ConnId = u64;
pub type UserId = i64;

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    rooms: DashMap<Arc<str>, Arc<rooms::Room>>,
    bus: Arc<dyn Bus>,
    subscribers: Arc<Subscribers>,
    settings: RoomSettings,
    /// Rooms each user hosts and has created lately, when this node runs
    /// alone; a cluster counts them in Redis.
    quota: quota::LocalQuota,
    next_conn: AtomicU64,
    /// Timers (empty-room grace) are tracked and cancelled with the node.
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Hub {
    pub fn new(
        bus: Arc<dyn Bus>,
        subscribers: Arc<Subscribers>,
        settings: RoomSettings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Hub {
            inner: Arc::new(Inner {
                rooms: DashMap::new(),
                bus,
                subscribers,
                settings,
                quota: quota::LocalQuota::default(),
                next_conn: AtomicU64::new(1),
                tasks,
                shutdown,
            }),
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
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

    /// The local subscriber table, which a cluster's rooms manage directly.
    pub fn subscribers(&self) -> &Arc<Subscribers> {
        &self.inner.subscribers
    }

    pub fn settings(&self) -> &RoomSettings {
        &self.inner.settings
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
