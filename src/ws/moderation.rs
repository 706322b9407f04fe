//! The socket's room moderation ops, `room.kick` and `room.close`: who may
//! act (asked of `auth::roles`), the audit record, then the room op. The
//! record is written first: an action that cannot be recorded does not
//! happen.

use std::time::Duration;

use meshi_protocol::{Empty, RoomClosedReason, RoomKind};
use serde_json::json;

use super::conn::Connection;
use super::dispatch::{data, Reply};
use crate::auth::roles::{self, Permission, Role, RoomActor};
use crate::auth::Identity;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::store::{NewAudit, AUDIT_ROOM_CLOSE, AUDIT_ROOM_KICK};

/// The longest ban `room.kick` sets: thirty days.
const MAX_BAN_SECS: u64 = 2_592_000;
const MAX_REASON_CHARS: usize = 500;

impl Connection {
    pub(super) async fn room_kick(
        &self,
        identity: &Identity,
        room_id: &str,
        user_id: &str,
        ban_secs: Option<u64>,
        reason: Option<String>,
    ) -> Result<Reply> {
        let target: i64 = user_id
            .parse()
            .map_err(|_| Error::bad("user_id", "must be a user id"))?;
        if ban_secs.is_some_and(|secs| !(1..=MAX_BAN_SECS).contains(&secs)) {
            return Err(Error::bad("ban_secs", "must be 1-2592000"));
        }
        let reason = reason
            .map(|r| crate::validate::line("reason", &r, 0, MAX_REASON_CHARS))
            .transpose()?;
        if target == identity.user.id {
            return Err(Error::bad("user_id", "you cannot kick yourself"));
        }
        let room = self.state.rooms.info(room_id).await?;
        let target_row = self
            .state
            .store
            .user_by_id(target)
            .await?
            .ok_or(Error::NotFound("user"))?;
        let actor = roles::require_kick(
            identity,
            hosts(identity, &room),
            Role::from_stored(&target_row.role),
        )?;
        let details = json!({
            "room_id": room.id,
            "room_kind": room.kind,
            "ban_secs": ban_secs,
            "reason": reason,
            "as": actor.as_str(),
        });
        self.audit(
            identity,
            AUDIT_ROOM_KICK,
            &format!("user:{target}"),
            &details,
        )
        .await?;
        self.state
            .rooms
            .kick(&room.id, target, ban_secs.map(Duration::from_secs))
            .await?;
        tracing::info!(actor_id = identity.user.id, target, room_id = %room.id, "user kicked from room");
        data(&Empty {})
    }

    pub(super) async fn room_close(&self, identity: &Identity, room_id: &str) -> Result<Reply> {
        let room = self.state.rooms.info(room_id).await?;
        let actor =
            roles::require_in_room(identity, Permission::CloseRoom, hosts(identity, &room))?;
        let reason = match actor {
            RoomActor::Host => RoomClosedReason::Host,
            RoomActor::Staff => RoomClosedReason::Moderator,
        };
        let details = json!({
            "name": room.name,
            "kind": room.kind,
            "member_count": room.member_count,
            "host_id": room.host_id,
            "as": actor.as_str(),
        });
        self.audit(
            identity,
            AUDIT_ROOM_CLOSE,
            &format!("room:{}", room.id),
            &details,
        )
        .await?;
        match self.state.rooms.close(&room.id, reason).await {
            // It may have closed on its own since it was looked up (it
            // emptied); it is closed either way, which is what was asked.
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
        data(&Empty {})
    }

    async fn audit(
        &self,
        identity: &Identity,
        action: &str,
        target: &str,
        details: &serde_json::Value,
    ) -> Result<()> {
        self.state
            .store
            .append_audit(NewAudit {
                actor_id: Some(identity.user.id),
                action,
                target,
                data: &details.to_string(),
                now: now_ms(),
            })
            .await?;
        Ok(())
    }
}

/// Whether the caller hosts this room: only drop-in rooms have hosts with
/// powers; an event's host runs it through the event itself.
fn hosts(identity: &Identity, room: &meshi_protocol::Room) -> bool {
    room.kind == RoomKind::DropIn && room.host_id == Some(identity.user.id.to_string())
}
