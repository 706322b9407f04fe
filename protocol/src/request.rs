//! Client requests: `{"type": "<op>", "ref": R?, ...fields}`.

use crate::envelope::Ref;
use serde::{Deserialize, Serialize};

/// The part of a request read before its op: enough to answer an error with
/// the right `ref` even when the rest of the frame is malformed.
#[derive(Debug, Default, Deserialize)]
pub struct Header {
    #[serde(rename = "ref", default)]
    pub reference: Option<Ref>,
}

/// One op with its fields. `ref` is read separately through [`Header`], so a
/// request's fields never need to repeat it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Request {
    #[serde(rename = "hello")]
    Hello { token: String },
    #[serde(rename = "ping")]
    Ping,
    #[serde(rename = "auth.refresh")]
    AuthRefresh { token: String },

    #[serde(rename = "room.create")]
    RoomCreate {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capacity: Option<u32>,
    },
    #[serde(rename = "room.list")]
    RoomList,
    #[serde(rename = "room.join")]
    RoomJoin {
        room_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_seq: Option<u64>,
    },
    #[serde(rename = "room.leave")]
    RoomLeave { room_id: String },
    #[serde(rename = "room.send")]
    RoomSend {
        room_id: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
    #[serde(rename = "room.typing")]
    RoomTyping { room_id: String },
    /// The author rewrites a message still in the room's history window.
    #[serde(rename = "room.edit")]
    RoomEdit {
        room_id: String,
        message_id: String,
        text: String,
    },
    /// The author, a moderator or a drop-in room's host deletes a message
    /// still in the room's history window.
    #[serde(rename = "room.delete")]
    RoomDelete { room_id: String, message_id: String },
    /// Takes a user out of a room, by a moderator or a drop-in room's host;
    /// with `ban_secs` they may not join again until the ban ends.
    #[serde(rename = "room.kick")]
    RoomKick {
        room_id: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ban_secs: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Closes a room for everyone inside, by its host or a moderator.
    #[serde(rename = "room.close")]
    RoomClose { room_id: String },
    #[serde(rename = "rooms.watch")]
    RoomsWatch,

    #[serde(rename = "dm.send")]
    DmSend {
        conversation_id: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
    #[serde(rename = "dm.history")]
    DmHistory {
        conversation_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before_seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// The author rewrites one of their messages.
    #[serde(rename = "dm.edit")]
    DmEdit {
        conversation_id: String,
        message_id: String,
        text: String,
    },
    /// The author deletes one of their messages.
    #[serde(rename = "dm.delete")]
    DmDelete {
        conversation_id: String,
        message_id: String,
    },
    #[serde(rename = "dm.read")]
    DmRead { conversation_id: String, seq: u64 },
    #[serde(rename = "dm.typing")]
    DmTyping { conversation_id: String },
    #[serde(rename = "presence.query")]
    PresenceQuery { user_ids: Vec<String> },
}

impl Request {
    /// The op name as it appears in `type`.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Ping => "ping",
            Request::AuthRefresh { .. } => "auth.refresh",
            Request::RoomCreate { .. } => "room.create",
            Request::RoomList => "room.list",
            Request::RoomJoin { .. } => "room.join",
            Request::RoomLeave { .. } => "room.leave",
            Request::RoomSend { .. } => "room.send",
            Request::RoomTyping { .. } => "room.typing",
            Request::RoomEdit { .. } => "room.edit",
            Request::RoomDelete { .. } => "room.delete",
            Request::RoomKick { .. } => "room.kick",
            Request::RoomClose { .. } => "room.close",
            Request::RoomsWatch => "rooms.watch",
            Request::DmSend { .. } => "dm.send",
            Request::DmHistory { .. } => "dm.history",
            Request::DmEdit { .. } => "dm.edit",
            Request::DmDelete { .. } => "dm.delete",
            Request::DmRead { .. } => "dm.read",
            Request::DmTyping { .. } => "dm.typing",
            Request::PresenceQuery { .. } => "presence.query",
        }
    }
}
