//! The seam between the node-side rules of rooms and where room state
//! lives: this node's memory when it runs alone (`rooms::memory`), Redis
//! when it is one of a cluster (`cluster::rooms`).
//!
//! An engine owns a room's shared state: its members (users, not
//! sockets), message numbering, the history window, `client_msg_id`
//! dedupe, capacity, the hosting quota, and closing a drop-in room that
//! stayed empty. Each change is atomic with the events it publishes, and
//! every event on a room's topic carries the room's next position, so a
//! join can answer the position its reply is current to (see `hub::gate`).
//!
//! An engine must not validate input, know sockets or subscriptions, or
//! decide who may do what: that is `rooms`, written once above both.
//! Inputs reach it checked, and it answers outcomes, not protocol errors.

use async_trait::async_trait;
use meshi_protocol::{Room as RoomView, RoomClosedReason, RoomJoined, RoomMessage, Sent};
use meshi_protocol::{RoomKind, UserSummary};

pub use super::quota::Creating;
use super::quota::RoomQuota;
use crate::error::Result;
use crate::hub::{Frame, UserId};

/// An event's or a community's room, as the store describes it.
pub struct StandingRoom {
    pub id: String,
    pub kind: RoomKind,
    pub name: String,
    pub topic: Option<String>,
    pub capacity: u32,
    pub host_id: Option<UserId>,
}

pub enum Joining {
    Joined(Box<Joined>),
    Full,
    NoRoom,
    /// The user was kicked with a ban that ends at `until_ms`.
    Banned {
        until_ms: i64,
    },
}

pub struct Joined {
    pub reply: RoomJoined,
    /// The room's position the reply is current to: events up to it are
    /// in the reply, events after it are not.
    pub position: u64,
}

pub enum Sending {
    /// Sent now, or earlier under the same `client_msg_id`.
    Sent(Sent),
    NotMember,
    NoRoom,
}

/// What putting a revised message in place of a kept one came to.
pub enum Replacing {
    Replaced,
    /// The history no longer holds the message as it was read: it changed
    /// meanwhile, or left the window.
    Stale,
    NoRoom,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Membership {
    Member,
    Outsider,
    NoRoom,
}

/// Room state one node alone, or a cluster together, agrees on.
#[async_trait]
pub trait RoomEngine: Send + Sync + 'static {
    /// Opens the drop-in room `room` describes (its member count is the
    /// host's one place), with `host` inside, if the quota allows it.
    async fn create(
        &self,
        room: &RoomView,
        created_ms: i64,
        host: UserId,
        host_summary: &UserSummary,
    ) -> Result<Creating>;

    /// Opens a standing room unless it is open; answers its view either way.
    async fn ensure(&self, spec: &StandingRoom, created_ms: i64) -> Result<RoomView>;

    /// Puts `user` in the room. Idempotent per user: a member joining again
    /// (from another socket) is no new member and finds no capacity limit.
    async fn join(
        &self,
        room_id: &str,
        user: UserId,
        summary: &UserSummary,
        since_seq: Option<u64>,
    ) -> Result<Joining>;

    /// Takes `user` out of the room unless `back` says, at the last moment
    /// the engine can look, that they are in it again by another socket.
    async fn leave(
        &self,
        room_id: &str,
        user: UserId,
        back: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<()>;

    /// Takes `user` out of a room that goes on without them; each of their
    /// sockets in it, on every node, gets `removed` and is off the room
    /// before its next event. With `ban_until_ms` they may not join again
    /// before then (set even if they were not inside; kept as long as the
    /// room is open). Returns whether they were inside.
    async fn remove(
        &self,
        room_id: &str,
        user: UserId,
        removed: Frame,
        ban_until_ms: Option<i64>,
    ) -> Result<bool>;

    /// Numbers `message` (its `seq` is set here), keeps it in the history
    /// and publishes it, unless `sender` sent it before under the same
    /// `client_msg_id`.
    async fn send(&self, room_id: &str, sender: UserId, message: RoomMessage) -> Result<Sending>;

    /// A message still in the room's history window, as the history keeps
    /// it; `None` when it is not (or the room is not open).
    async fn message(&self, room_id: &str, message_id: &str) -> Result<Option<RoomMessage>>;

    /// The room's history window, oldest first; empty when the room is
    /// not open.
    async fn history(&self, room_id: &str) -> Result<Vec<RoomMessage>>;

    /// Every open room whose history holds a message, wherever it is
    /// held: for sweeping a deleted account's words out of them.
    async fn rooms_with_history(&self) -> Result<Vec<String>>;

    /// Puts `revised` in place of `kept` in the history, and publishes
    /// `event` to the room in the same step, if the history still holds
    /// `kept` exactly as it was read: a compare-and-set, so two revisions
    /// of one message never lose one another.
    async fn replace(
        &self,
        room_id: &str,
        kept: &RoomMessage,
        revised: &RoomMessage,
        event: Frame,
    ) -> Result<Replacing>;

    async fn membership(&self, room_id: &str, user: UserId) -> Result<Membership>;

    /// Closes an open room for everyone inside; false when it is not open.
    async fn close(&self, room_id: &str, reason: RoomClosedReason) -> Result<bool>;

    async fn info(&self, room_id: &str) -> Result<Option<RoomView>>;

    async fn exists(&self, room_id: &str) -> Result<bool>;

    /// Open drop-in rooms, newest first, after the `(created_at, id)` key
    /// of the last room a previous page served; each with its key.
    async fn page(&self, after: Option<(i64, &str)>, limit: usize) -> Result<Vec<(i64, RoomView)>>;
}

/// Room rules a node is configured with; the engine keeps them.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub empty_grace: std::time::Duration,
    /// Messages kept per room for `since_seq` recovery.
    pub history: usize,
    /// What one user may open; see `quota`.
    pub quota: RoomQuota,
}

/// Messages a join returns when it cannot, or was not asked to, recover.
pub const LATEST_ON_JOIN: usize = 50;
