//! Rooms as handlers see them, whichever engine keeps them: this node's
//! hub when it runs alone, Redis when it is one of a cluster.

use std::sync::Arc;

use meshi_protocol::{
    Room as RoomView, RoomClosedReason, RoomJoined, Sent, ServerFrame, UserSummary,
};

use crate::cluster::ClusterRooms;
use crate::error::Result;
use crate::hub::subscribers::Subscriber;
use crate::hub::{Hub, StandingRoom, UserId};

#[derive(Clone)]
pub enum Rooms {
    Local(Hub),
    Cluster(Arc<ClusterRooms>),
}

impl Rooms {
    /// Opens a drop-in room with the creator inside as host.
    pub async fn create(
        &self,
        creator: &Subscriber,
        creator_user: &UserSummary,
        name: &str,
        topic: Option<&str>,
        capacity: Option<u32>,
    ) -> Result<RoomView> {
        match self {
            Rooms::Local(hub) => hub.create_room(creator, creator_user, name, topic, capacity),
            Rooms::Cluster(rooms) => {
                rooms
                    .create(creator, creator_user, name, topic, capacity)
                    .await
            }
        }
    }

    /// Opens the room of an event or a community unless it is open.
    pub async fn ensure(&self, spec: StandingRoom) -> Result<RoomView> {
        match self {
            Rooms::Local(hub) => Ok(hub.ensure_room(spec)),
            Rooms::Cluster(rooms) => rooms.ensure(spec).await,
        }
    }

    /// Joins a socket to a room; `on_joined` queues the reply before any
    /// room event that follows it.
    pub async fn join(
        &self,
        room_id: &str,
        joiner: &Subscriber,
        joiner_user: &UserSummary,
        since_seq: Option<u64>,
        already_joined: bool,
        on_joined: impl FnOnce(&RoomJoined),
    ) -> Result<()> {
        match self {
            Rooms::Local(hub) => hub.join_room(
                room_id,
                joiner,
                joiner_user,
                since_seq,
                already_joined,
                on_joined,
            ),
            Rooms::Cluster(rooms) => {
                rooms
                    .join(
                        room_id,
                        joiner,
                        joiner_user,
                        since_seq,
                        already_joined,
                        on_joined,
                    )
                    .await
            }
        }
    }

    pub async fn leave(&self, room_id: &str, conn: &Subscriber) -> Result<()> {
        match self {
            Rooms::Local(hub) => hub.leave_room(room_id, conn),
            Rooms::Cluster(rooms) => rooms.leave(room_id, conn).await,
        }
    }

    /// Takes `user` out of a room that goes on without them; each of their
    /// sockets in it gets `removed`. Returns whether they were inside; a
    /// room that is not open has nobody to take out.
    pub async fn remove(&self, room_id: &str, user: UserId, removed: &ServerFrame) -> Result<bool> {
        match self {
            Rooms::Local(hub) => Ok(hub.remove_from_room(room_id, user, removed)),
            Rooms::Cluster(rooms) => rooms.remove(room_id, user, removed).await,
        }
    }

    pub async fn send(
        &self,
        room_id: &str,
        sender: &Subscriber,
        sender_user: &UserSummary,
        text: String,
        client_msg_id: Option<String>,
    ) -> Result<Sent> {
        match self {
            Rooms::Local(hub) => {
                hub.send_to_room(room_id, sender, sender_user, text, client_msg_id)
            }
            Rooms::Cluster(rooms) => {
                rooms
                    .send(room_id, sender, sender_user, text, client_msg_id)
                    .await
            }
        }
    }

    pub async fn typing(&self, room_id: &str, typist: &Subscriber) -> Result<()> {
        match self {
            Rooms::Local(hub) => hub.room_typing(room_id, typist),
            Rooms::Cluster(rooms) => rooms.typing(room_id, typist).await,
        }
    }

    /// Closes a room for everyone inside, telling them why.
    pub async fn close(&self, room_id: &str, reason: RoomClosedReason) -> Result<()> {
        match self {
            Rooms::Local(hub) => hub.close_room(room_id, reason),
            Rooms::Cluster(rooms) => rooms.close(room_id, reason).await,
        }
    }

    /// An open room as the directory shows it.
    pub async fn info(&self, room_id: &str) -> Result<RoomView> {
        match self {
            Rooms::Local(hub) => hub.room_info(room_id),
            Rooms::Cluster(rooms) => rooms.info(room_id).await,
        }
    }

    pub async fn exists(&self, room_id: &str) -> Result<bool> {
        match self {
            Rooms::Local(hub) => Ok(hub.room_exists(room_id)),
            Rooms::Cluster(rooms) => rooms.exists(room_id).await,
        }
    }

    pub async fn has_member(&self, room_id: &str, user: UserId) -> Result<bool> {
        match self {
            Rooms::Local(hub) => Ok(hub.room_has_member(room_id, user)),
            Rooms::Cluster(rooms) => rooms.has_member(room_id, user).await,
        }
    }

    /// Open drop-in rooms, newest first, after the `(created_at, id)` key
    /// of the last room a previous page served; each with its key.
    pub async fn page(
        &self,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<(i64, RoomView)>> {
        match self {
            Rooms::Local(hub) => Ok(hub.rooms_page(after, limit)),
            Rooms::Cluster(rooms) => rooms.page(after, limit).await,
        }
    }
}
