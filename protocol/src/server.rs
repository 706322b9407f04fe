//! Every frame the server sends: replies (`ok`, `error`) and pushes.

use crate::envelope::{ErrorBody, Ref};
use crate::model::{
    ConversationClosedReason, DmMessage, Notification, Presence, Room, RoomClosedReason,
    RoomMessage, RoomRemovedReason, UserSummary,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerFrame {
    #[serde(rename = "ok")]
    Ok {
        #[serde(rename = "ref")]
        reference: Ref,
        data: serde_json::Value,
    },
    #[serde(rename = "error")]
    Error {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        error: ErrorBody,
    },
    #[serde(rename = "room.message")]
    RoomMessage(RoomMessage),
    /// A message in the room's history window was edited by its author.
    #[serde(rename = "room.message_edited")]
    RoomMessageEdited {
        room_id: String,
        message_id: String,
        seq: u64,
        text: String,
        edited_at: String,
    },
    /// A message in the room's history window was deleted.
    #[serde(rename = "room.message_deleted")]
    RoomMessageDeleted {
        room_id: String,
        message_id: String,
        seq: u64,
        /// The user who deleted it: its author, a moderator or the host.
        deleted_by: String,
    },
    #[serde(rename = "room.member_joined")]
    RoomMemberJoined { room_id: String, user: UserSummary },
    #[serde(rename = "room.member_left")]
    RoomMemberLeft { room_id: String, user_id: String },
    #[serde(rename = "room.typing")]
    RoomTyping { room_id: String, user_id: String },
    #[serde(rename = "room.closed")]
    RoomClosed {
        room_id: String,
        reason: RoomClosedReason,
    },
    /// This user is out of a room that goes on without them; sent to each
    /// of their sockets that was in it.
    #[serde(rename = "room.removed")]
    RoomRemoved {
        room_id: String,
        reason: RoomRemovedReason,
        /// When a ban ends (RFC 3339); absent when there is none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
    },
    #[serde(rename = "rooms.changed")]
    RoomsChanged(RoomsChanged),
    #[serde(rename = "dm.message")]
    DmMessage(DmMessage),
    #[serde(rename = "dm.message_edited")]
    DmMessageEdited {
        conversation_id: String,
        message_id: String,
        seq: u64,
        text: String,
        edited_at: String,
    },
    #[serde(rename = "dm.message_deleted")]
    DmMessageDeleted {
        conversation_id: String,
        message_id: String,
        seq: u64,
    },
    /// The conversation takes no more messages: the pair unmatched, one
    /// blocked the other, or one deleted their account.
    #[serde(rename = "conversation.closed")]
    ConversationClosed {
        conversation_id: String,
        reason: ConversationClosedReason,
    },
    #[serde(rename = "dm.read")]
    DmRead {
        conversation_id: String,
        user_id: String,
        seq: u64,
    },
    #[serde(rename = "dm.typing")]
    DmTyping {
        conversation_id: String,
        user_id: String,
    },
    #[serde(rename = "presence")]
    Presence(Presence),
    #[serde(rename = "notification")]
    Notification { notification: Notification },
    #[serde(rename = "reconnect")]
    Reconnect { reason: String, retry_after_ms: u64 },
}

/// A change in the room directory: either a room's new state, or
/// `{room_id, closed: true}` once it is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomsChanged {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Room>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
}

impl RoomsChanged {
    pub fn open(room: Room) -> Self {
        RoomsChanged {
            room: Some(room),
            room_id: None,
            closed: None,
        }
    }

    pub fn closed(room_id: String) -> Self {
        RoomsChanged {
            room: None,
            room_id: Some(room_id),
            closed: Some(true),
        }
    }
}

impl ServerFrame {
    /// The `type` of the frame, for routing in clients.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerFrame::Ok { .. } => "ok",
            ServerFrame::Error { .. } => "error",
            ServerFrame::RoomMessage(_) => "room.message",
            ServerFrame::RoomMessageEdited { .. } => "room.message_edited",
            ServerFrame::RoomMessageDeleted { .. } => "room.message_deleted",
            ServerFrame::RoomMemberJoined { .. } => "room.member_joined",
            ServerFrame::RoomMemberLeft { .. } => "room.member_left",
            ServerFrame::RoomTyping { .. } => "room.typing",
            ServerFrame::RoomClosed { .. } => "room.closed",
            ServerFrame::RoomRemoved { .. } => "room.removed",
            ServerFrame::RoomsChanged(_) => "rooms.changed",
            ServerFrame::DmMessage(_) => "dm.message",
            ServerFrame::DmMessageEdited { .. } => "dm.message_edited",
            ServerFrame::DmMessageDeleted { .. } => "dm.message_deleted",
            ServerFrame::ConversationClosed { .. } => "conversation.closed",
            ServerFrame::DmRead { .. } => "dm.read",
            ServerFrame::DmTyping { .. } => "dm.typing",
            ServerFrame::Presence(_) => "presence",
            ServerFrame::Notification { .. } => "notification",
            ServerFrame::Reconnect { .. } => "reconnect",
        }
    }
}

/// The `ok` reply as the server writes it: the same frame as
/// [`ServerFrame::Ok`], with `data` any serializable value (a reply type,
/// or data serialized already), so the reply is serialized in one pass
/// and never goes through a `serde_json::Value`.
#[derive(Debug, Serialize)]
pub struct OkReply<'a, D: ?Sized> {
    #[serde(rename = "type")]
    kind: OkTag,
    #[serde(rename = "ref")]
    pub reference: &'a Ref,
    pub data: &'a D,
}

#[derive(Debug, Serialize)]
enum OkTag {
    #[serde(rename = "ok")]
    Ok,
}

impl<'a, D: Serialize + ?Sized> OkReply<'a, D> {
    pub fn new(reference: &'a Ref, data: &'a D) -> Self {
        OkReply {
            kind: OkTag::Ok,
            reference,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ok_reply_reads_back_as_the_ok_frame() {
        let data = serde_json::json!({"room": {"id": "r_1"}});
        let reference = Ref::from(7);
        let written = serde_json::to_string(&OkReply::new(&reference, &data)).unwrap();
        assert_eq!(
            written,
            r#"{"type":"ok","ref":7,"data":{"room":{"id":"r_1"}}}"#
        );
        assert_eq!(
            serde_json::from_str::<ServerFrame>(&written).unwrap(),
            ServerFrame::Ok {
                reference,
                data: serde_json::json!({"room": {"id": "r_1"}}),
            }
        );
    }
}
