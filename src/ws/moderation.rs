//! The socket's room moderation ops, `room.kick` and `room.close`: their
//! input, and who may act (asked of `auth::roles`); the action itself is
//! `crate::moderation`'s, shared with REST.

use meshi_protocol::{Empty, RoomClosedReason};

use super::conn::Connection;
use super::dispatch::{data, Reply};
use crate::auth::roles::{self, hosts, Permission, Role, RoomActor};
use crate::auth::Identity;
use crate::error::{Error, Result};
use crate::moderation;

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
        let acting_as = roles::require_kick(
            identity,
            hosts(identity, &room),
            Role::from_stored(&target_row.role),
        )?;
        moderation::kick(
            &self.state,
            identity,
            acting_as,
            &room,
            target,
            ban_secs,
            reason.as_deref(),
        )
        .await?;
        data(&Empty {})
    }

    pub(super) async fn room_close(&self, identity: &Identity, room_id: &str) -> Result<Reply> {
        let room = self.state.rooms.info(room_id).await?;
        let acting_as =
            roles::require_in_room(identity, Permission::CloseRoom, hosts(identity, &room))?;
        let reason = match acting_as {
            RoomActor::Host => RoomClosedReason::Host,
            RoomActor::Staff => RoomClosedReason::Moderator,
        };
        moderation::close_room(&self.state, identity, acting_as, &room, reason).await?;
        data(&Empty {})
    }
}
