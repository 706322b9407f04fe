//! Moderation actions on rooms as every door takes them, REST and the
//! socket alike: the audit record first, then the effect, so an action
//! that cannot be recorded does not happen. Who may act is for the caller
//! to check (`auth::roles`) before it calls here; the input reaches here
//! checked.

use std::time::Duration;

use meshi_protocol::{Room as RoomView, RoomClosedReason};
use serde_json::json;

use crate::auth::roles::RoomActor;
use crate::auth::Identity;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::state::Services;
use crate::store::{NewAudit, AUDIT_ROOM_CLOSE, AUDIT_ROOM_KICK};

/// Closes `room` for everyone inside, telling them `reason`.
pub async fn close_room(
    state: &Services,
    by: &Identity,
    acting_as: RoomActor,
    room: &RoomView,
    reason: RoomClosedReason,
) -> Result<()> {
    let details = json!({
        "name": room.name,
        "kind": room.kind,
        "member_count": room.member_count,
        "host_id": room.host_id,
        "as": acting_as.as_str(),
    });
    record(
        state,
        by,
        AUDIT_ROOM_CLOSE,
        &format!("room:{}", room.id),
        &details,
    )
    .await?;
    match state.rooms.close(&room.id, reason).await {
        // It may have closed on its own since it was looked up (it
        // emptied); it is closed either way, which is what was asked.
        Ok(()) | Err(Error::NotFound(_)) => {}
        Err(other) => return Err(other),
    }
    tracing::info!(actor_id = by.user.id, room_id = %room.id, as_ = acting_as.as_str(), "room closed");
    Ok(())
}

/// Kicks `target` out of `room`, banned from it for `ban_secs` if given.
pub async fn kick(
    state: &Services,
    by: &Identity,
    acting_as: RoomActor,
    room: &RoomView,
    target: i64,
    ban_secs: Option<u64>,
    reason: Option<&str>,
) -> Result<()> {
    let details = json!({
        "room_id": room.id,
        "room_kind": room.kind,
        "ban_secs": ban_secs,
        "reason": reason,
        "as": acting_as.as_str(),
    });
    record(
        state,
        by,
        AUDIT_ROOM_KICK,
        &format!("user:{target}"),
        &details,
    )
    .await?;
    state
        .rooms
        .kick(&room.id, target, ban_secs.map(Duration::from_secs))
        .await?;
    tracing::info!(actor_id = by.user.id, target, room_id = %room.id, "user kicked from room");
    Ok(())
}

pub(crate) async fn record(
    state: &Services,
    by: &Identity,
    action: &str,
    target: &str,
    details: &serde_json::Value,
) -> Result<()> {
    state
        .store
        .append_audit(NewAudit {
            actor_id: Some(by.user.id),
            action,
            target,
            data: &details.to_string(),
            now: now_ms(),
        })
        .await?;
    Ok(())
}
