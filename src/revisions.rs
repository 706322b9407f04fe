//! Changing a message after it was sent: edits by its author, deletes by
//! its author or, in rooms, by the room's host or staff. The rules are
//! here once for every door (the socket ops, and resolving a report);
//! who may is asked of `auth::roles`.
//!
//! A room message can change while it is in the room's history window,
//! which the room engine keeps; a direct message is stored, so it can
//! change for as long as the conversation takes messages. Either way the
//! change reaches every socket that can see the message at once.

use meshi_protocol::ServerFrame;
use serde_json::json;

use crate::auth::roles::{self, hosts, MessageActor};
use crate::auth::Identity;
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::moderation;
use crate::pairing::tell_pair;
use crate::rooms::Revision;
use crate::state::Services;
use crate::store::{DmRevision, DmRow, Pair, AUDIT_MESSAGE_DELETE};

/// The author rewrites their message, while they are in the room.
pub async fn edit_room_message(
    state: &Services,
    by: &Identity,
    room_id: &str,
    message_id: &str,
    text: String,
) -> Result<()> {
    require_member(state, by, room_id).await?;
    state
        .rooms
        .revise(room_id, message_id, Revision::Edit(text), |kept| {
            roles::require_author(by, &kept.from.id)
        })
        .await
}

/// Deletes a room message: its author (while in the room), the host of a
/// drop-in room, or staff; the last two are on the record.
pub async fn delete_room_message(
    state: &Services,
    by: &Identity,
    room_id: &str,
    message_id: &str,
) -> Result<()> {
    let room = state.rooms.info(room_id).await?;
    let hosts = hosts(by, &room);
    let kept = state.rooms.find_message(room_id, message_id).await?;
    match roles::require_room_delete(by, hosts, &kept.from.id)? {
        MessageActor::Author => require_member(state, by, room_id).await?,
        acting_as => {
            let details = json!({
                "room_id": room_id,
                "message_id": message_id,
                "author_id": kept.from.id,
                "as": acting_as.as_str(),
            });
            let target = format!("room_message:{message_id}");
            moderation::record(state, by, AUDIT_MESSAGE_DELETE, &target, &details).await?;
        }
    }
    state
        .rooms
        .revise(room_id, message_id, Revision::Delete(by.user.id), |kept| {
            roles::require_room_delete(by, hosts, &kept.from.id).map(drop)
        })
        .await
}

/// The author rewrites one of their direct messages.
pub async fn edit_dm(
    state: &Services,
    by: &Identity,
    conversation_id: i64,
    message_id: &str,
    text: String,
) -> Result<()> {
    crate::rooms::validate::text(&text)?;
    let at = now_ms();
    let (pair, row) = revise_own_dm(
        state,
        by,
        conversation_id,
        message_id,
        DmRevision::Edit { text: &text, at },
    )
    .await?;
    let frame = ServerFrame::DmMessageEdited {
        conversation_id: conversation_id.to_string(),
        message_id: row.message_id,
        seq: row.seq as u64,
        text: row.text,
        edited_at: rfc3339(row.edited_at.unwrap_or(at)),
    };
    tell_pair(state, pair, &frame);
    Ok(())
}

/// The author deletes one of their direct messages.
pub async fn delete_dm(
    state: &Services,
    by: &Identity,
    conversation_id: i64,
    message_id: &str,
) -> Result<()> {
    let (pair, row) =
        revise_own_dm(state, by, conversation_id, message_id, DmRevision::Delete).await?;
    tell_pair(state, pair, &deleted_frame(&row));
    Ok(())
}

/// Staff delete a direct message reported to them; on the record.
pub async fn delete_reported_dm(
    state: &Services,
    by: &Identity,
    conversation_id: i64,
    message_id: &str,
) -> Result<()> {
    roles::require(by, roles::Permission::RemoveMessage)?;
    let pair = pair_of(state, conversation_id).await?;
    let kept = live_dm(state, conversation_id, message_id).await?;
    let details = json!({
        "conversation_id": conversation_id.to_string(),
        "message_id": message_id,
        "author_id": kept.sender_id.to_string(),
        "as": MessageActor::Staff.as_str(),
    });
    let target = format!("dm_message:{message_id}");
    moderation::record(state, by, AUDIT_MESSAGE_DELETE, &target, &details).await?;
    let row = state
        .store
        .revise_dm(
            conversation_id,
            message_id,
            kept.sender_id,
            DmRevision::Delete,
        )
        .await?
        .ok_or(Error::NotFound("message"))?;
    tell_pair(state, pair, &deleted_frame(&row));
    Ok(())
}

/// Applies `revision` to the caller's own message in a conversation they
/// are in and that takes messages.
async fn revise_own_dm(
    state: &Services,
    by: &Identity,
    conversation_id: i64,
    message_id: &str,
    revision: DmRevision<'_>,
) -> Result<(Pair, DmRow)> {
    let me = by.user.id;
    let pair = crate::pairing::require_writable(state, conversation_id, me).await?;
    let kept = live_dm(state, conversation_id, message_id).await?;
    roles::require_author(by, &kept.sender_id.to_string())?;
    let row = state
        .store
        .revise_dm(conversation_id, message_id, me, revision)
        .await?
        .ok_or(Error::NotFound("message"))?;
    Ok((pair, row))
}

async fn pair_of(state: &Services, conversation_id: i64) -> Result<Pair> {
    state
        .store
        .conversation_pair(conversation_id)
        .await?
        .ok_or(Error::NotFound("conversation"))
}

/// A message of the conversation that is not deleted.
async fn live_dm(state: &Services, conversation_id: i64, message_id: &str) -> Result<DmRow> {
    state
        .store
        .dm_message(conversation_id, message_id)
        .await?
        .filter(|row| !row.deleted)
        .ok_or(Error::NotFound("message"))
}

fn deleted_frame(row: &DmRow) -> ServerFrame {
    ServerFrame::DmMessageDeleted {
        conversation_id: row.conversation_id.to_string(),
        message_id: row.message_id.clone(),
        seq: row.seq as u64,
    }
}

/// Authors change room messages only while they may send there.
async fn require_member(state: &Services, by: &Identity, room_id: &str) -> Result<()> {
    if state.rooms.has_member(room_id, by.user.id).await? {
        Ok(())
    } else if state.rooms.exists(room_id).await? {
        Err(Error::Forbidden("join the room first"))
    } else {
        Err(Error::NotFound("room"))
    }
}
