//! Standing rooms: every event has a room `event:<id>` for its host and
//! going attendees, every community a room `community:<id>` for its
//! members. They are opened on first use with their owner's access rules,
//! and stay open while their event or community does. Such a room's id
//! and name are both `event:<id>` (or `community:<id>`), so clients can
//! address it without looking it up; its topic carries the event's title
//! or the community's name.

use meshi_protocol::{Room, RoomKind, RoomRemovedReason, ServerFrame};

use crate::error::{Error, Result};
use crate::rooms::{Rooms, StandingRoom};
use crate::store::Store;

/// Members a community room holds at once; the largest room size.
const COMMUNITY_ROOM_CAPACITY: u32 = 500;

enum Owner {
    Event(i64),
    Community(i64),
}

/// Which event or community a room id belongs to; `None` for drop-in
/// rooms. A malformed standing id names no room at all.
fn owner(room_id: &str) -> Result<Option<Owner>> {
    let parse = |raw: &str| {
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or(Error::NotFound("room"))
    };
    if let Some(id) = room_id.strip_prefix("event:") {
        return Ok(Some(Owner::Event(parse(id)?)));
    }
    if let Some(id) = room_id.strip_prefix("community:") {
        return Ok(Some(Owner::Community(parse(id)?)));
    }
    Ok(None)
}

/// The room of an event.
pub fn event_room(event_id: i64) -> String {
    format!("event:{event_id}")
}

/// The room of a community.
pub fn community_room(community_id: i64) -> String {
    format!("community:{community_id}")
}

/// Whether `room_id` is an event's or a community's room.
pub fn is_standing(room_id: &str) -> bool {
    room_id.starts_with("event:") || room_id.starts_with("community:")
}

/// Takes `user` out of a standing room whose right they just lost (an RSVP
/// withdrawn, a community left): their sockets in it get `room.removed`
/// with reason `access`, and the others see them leave. Idempotent, so a
/// caller that failed here can simply try again.
pub async fn end_access(rooms: &Rooms, room_id: &str, user: i64) -> Result<()> {
    let removed = ServerFrame::RoomRemoved {
        room_id: room_id.to_owned(),
        reason: RoomRemovedReason::Access,
        until: None,
    };
    rooms.remove(room_id, user, &removed, None).await?;
    Ok(())
}

/// After a join: whether `user` still may be in `room_id`. Their right may
/// have ended between the check before the join and the join itself, in
/// which case the removal found nobody to remove and this catches it.
pub async fn still_admitted(store: &Store, room_id: &str, user: i64) -> Result<bool> {
    let Some(owner) = owner(room_id)? else {
        return Ok(true);
    };
    Ok(match owner {
        Owner::Event(event_id) => store
            .event_room_access(event_id, user)
            .await?
            .is_some_and(|a| !a.cancelled && a.may_enter),
        Owner::Community(community_id) => store
            .community_room_access(community_id, user)
            .await?
            .is_some_and(|a| a.is_member),
    })
}

/// Checks that `user` may enter `room_id` and, for a standing room, opens
/// it on this node. Drop-in rooms are open to anyone; their own rules
/// (capacity) apply at join.
pub async fn admit(store: &Store, rooms: &Rooms, room_id: &str, user: i64) -> Result<()> {
    let Some(owner) = owner(room_id)? else {
        return Ok(());
    };
    let room = standing_room(store, room_id, owner, user).await?;
    rooms.ensure(room).await?;
    Ok(())
}

async fn standing_room(
    store: &Store,
    room_id: &str,
    owner: Owner,
    user: i64,
) -> Result<StandingRoom> {
    match owner {
        Owner::Event(event_id) => {
            let access = store
                .event_room_access(event_id, user)
                .await?
                .filter(|a| !a.cancelled)
                .ok_or(Error::NotFound("room"))?;
            if !access.may_enter {
                return Err(Error::Forbidden(
                    "the event room is for its host and going attendees",
                ));
            }
            Ok(StandingRoom {
                id: room_id.to_owned(),
                kind: RoomKind::Event,
                name: room_id.to_owned(),
                topic: Some(access.title),
                // Every seat plus the host.
                capacity: u32::try_from(access.capacity.saturating_add(1)).unwrap_or(u32::MAX),
                host_id: Some(access.host_id),
            })
        }
        Owner::Community(community_id) => {
            let access = store
                .community_room_access(community_id, user)
                .await?
                .ok_or(Error::NotFound("room"))?;
            if !access.is_member {
                return Err(Error::Forbidden("the community room is for its members"));
            }
            Ok(StandingRoom {
                id: room_id.to_owned(),
                kind: RoomKind::Community,
                name: room_id.to_owned(),
                topic: Some(access.name),
                capacity: COMMUNITY_ROOM_CAPACITY,
                host_id: None,
            })
        }
    }
}

/// The rooms `user` may join, at most `max` of them: the rooms of the
/// events they host or attend and of the communities they belong to come
/// first (they are few and theirs), then the newest open drop-in rooms.
/// The whole directory pages through `GET /api/v1/rooms`.
pub async fn rooms_for(store: &Store, engine: &Rooms, user: i64, max: usize) -> Result<Vec<Room>> {
    let mut rooms = Vec::new();
    for (event_id, _) in store.event_ids_open_to(user).await? {
        if rooms.len() >= max {
            return Ok(rooms);
        }
        let room_id = event_room(event_id);
        // The list came from the same rules, but an RSVP may have changed
        // since; a room the user may no longer enter is left out.
        if let Ok(room) = standing_room(store, &room_id, Owner::Event(event_id), user).await {
            rooms.push(engine.ensure(room).await?);
        }
    }
    for (community_id, _) in store.community_ids_of(user).await? {
        if rooms.len() >= max {
            return Ok(rooms);
        }
        let room_id = community_room(community_id);
        if let Ok(room) = standing_room(store, &room_id, Owner::Community(community_id), user).await
        {
            rooms.push(engine.ensure(room).await?);
        }
    }
    let left = max.saturating_sub(rooms.len());
    if left > 0 {
        rooms.extend(
            engine
                .page(None, left)
                .await?
                .into_iter()
                .map(|(_, room)| room),
        );
    }
    Ok(rooms)
}
