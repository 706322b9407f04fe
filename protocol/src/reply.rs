//! The `data` of each op's `ok` reply.

use crate::model::{DmMessage, Presence, Room, RoomMessage, UserSummary};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloOk {
    pub user: UserSummary,
    pub session_id: String,
    pub heartbeat_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingOk {
    pub server_time: String,
}

/// The reply of ops that promise nothing but success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomCreated {
    pub room: Room,
}

/// Reply of `room.list` and `rooms.watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomList {
    pub rooms: Vec<Room>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomJoined {
    pub room: Room,
    pub members: Vec<UserSummary>,
    pub messages: Vec<RoomMessage>,
    pub last_seq: u64,
    pub recovered: bool,
}

/// Reply of `room.send` and `dm.send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub message_id: String,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DmHistoryOk {
    pub messages: Vec<DmMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceList {
    pub presence: Vec<Presence>,
}
