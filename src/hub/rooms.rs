//! Drop-in rooms: membership, capacity, ordered messages with a history
//! window for recovery, `client_msg_id` dedupe, and closing when empty.
//!
//! Lock order: a room's `state` lock, then (inside the bus) a topic shard.
//! Nothing here takes a room lock while delivering, so the order holds.
//! Messages are published while the room lock is held, which is what keeps
//! `seq` order identical for every recipient.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use meshi_protocol::server::RoomsChanged;
use meshi_protocol::{
    Room as RoomView, RoomClosedReason, RoomJoined, RoomKind, RoomMessage, Sent, ServerFrame,
    UserSummary,
};

use super::quota::RoomQuota;
use super::subscribers::{Delivery, Subscriber, Topic};
use super::{encode, Hub, UserId};
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::ids;

/// Room rules a node is configured with.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub empty_grace: Duration,
    /// Messages kept per room for `since_seq` recovery.
    pub history: usize,
    /// What one user may open; see `quota`.
    pub quota: RoomQuota,
}

/// An event's or a community's room, as the store describes it.
pub struct StandingRoom {
    pub id: String,
    pub kind: RoomKind,
    pub name: String,
    pub topic: Option<String>,
    pub capacity: u32,
    pub host_id: Option<UserId>,
}

/// Messages a join returns when it cannot, or was not asked to, recover.
pub const LATEST_ON_JOIN: usize = 50;
const DEFAULT_CAPACITY: u32 = 50;
const MAX_TEXT_CHARS: usize = 4000;
const MAX_CLIENT_MSG_ID: usize = 64;

pub(super) struct Room {
    id: Arc<str>,
    kind: RoomKind,
    name: String,
    topic: Option<String>,
    capacity: u32,
    host_id: Option<UserId>,
    created_at: i64,
    state: Mutex<RoomState>,
}

#[derive(Default)]
struct RoomState {
    /// Users inside, with how many of their sockets joined.
    members: HashMap<UserId, Member>,
    last_seq: u64,
    history: VecDeque<Arc<RoomMessage>>,
    sent_by_client_id: HashMap<(UserId, String), Sent>,
    client_ids_in_order: VecDeque<(UserId, String)>,
    closed: bool,
    /// Bumped whenever the room empties, so a stale close timer can tell.
    emptied: u64,
}

struct Member {
    user: UserSummary,
    sockets: u32,
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding a room lock leaves the room as it was at the
        // panic; carrying on serves the others better than poisoning it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn view(&self, state: &RoomState) -> RoomView {
        RoomView {
            id: self.id.to_string(),
            kind: self.kind,
            name: self.name.clone(),
            topic: self.topic.clone(),
            capacity: self.capacity,
            member_count: state.members.len() as u32,
            host_id: self.host_id.map(|id| id.to_string()),
            created_at: rfc3339(self.created_at),
        }
    }
}

impl Hub {
    fn room(&self, room_id: &str) -> Result<Arc<Room>> {
        self.inner
            .rooms
            .get(room_id)
            .map(|r| r.value().clone())
            .ok_or(Error::NotFound("room"))
    }

    /// An open room as the directory shows it.
    pub fn room_info(&self, room_id: &str) -> Result<RoomView> {
        let room = self.room(room_id)?;
        let state = room.lock();
        if state.closed {
            return Err(Error::NotFound("room"));
        }
        Ok(room.view(&state))
    }

    pub fn room_exists(&self, room_id: &str) -> bool {
        self.inner.rooms.contains_key(room_id)
    }

    pub fn room_has_member(&self, room_id: &str, user: UserId) -> bool {
        self.room(room_id)
            .is_ok_and(|room| room.lock().members.contains_key(&user))
    }

    /// Opens the standing room of an event or a community unless it is
    /// open already. Such rooms stay open when empty: they belong to their
    /// event or community, not to whoever is inside.
    pub fn ensure_room(&self, spec: StandingRoom) -> RoomView {
        let room = self
            .inner
            .rooms
            .entry(Arc::from(spec.id.as_str()))
            .or_insert_with(|| {
                metrics::gauge!("meshi_rooms_open").increment(1.0);
                Arc::new(Room {
                    id: Arc::from(spec.id.as_str()),
                    kind: spec.kind,
                    name: spec.name.clone(),
                    topic: spec.topic.clone(),
                    capacity: spec.capacity,
                    host_id: spec.host_id,
                    created_at: now_ms(),
                    state: Mutex::new(RoomState::default()),
                })
            })
            .value()
            .clone();
        let state = room.lock();
        room.view(&state)
    }

    /// Opens a drop-in room with the creator inside as host.
    pub fn create_room(
        &self,
        creator: &Subscriber,
        creator_user: &UserSummary,
        name: &str,
        topic: Option<&str>,
        capacity: Option<u32>,
    ) -> Result<RoomView> {
        let (name, topic, capacity) = validate_new_room(name, topic, capacity)?;
        self.inner
            .quota
            .claim(&self.inner.settings.quota, creator.user)?;
        let room = Arc::new(Room {
            id: ids::random("r").into(),
            kind: RoomKind::DropIn,
            name,
            topic,
            capacity,
            host_id: Some(creator.user),
            created_at: now_ms(),
            state: Mutex::new(RoomState::default()),
        });
        let mut state = room.lock();
        state.members.insert(
            creator.user,
            Member {
                user: creator_user.clone(),
                sockets: 1,
            },
        );
        self.subscribe(Topic::Room(room.id.clone()), creator.clone());
        self.inner.rooms.insert(room.id.clone(), room.clone());
        let view = room.view(&state);
        self.announce(&room, RoomsChanged::open(view.clone()));
        metrics::gauge!("meshi_rooms_open").increment(1.0);
        Ok(view)
    }

    /// Open drop-in rooms, newest first, after the `(created_at, id)` key
    /// of the last room a previous page served; each with its key.
    pub fn rooms_page(&self, after: Option<(i64, &str)>, limit: usize) -> Vec<(i64, RoomView)> {
        let mut rooms: Vec<(i64, RoomView)> = self
            .inner
            .rooms
            .iter()
            .filter(|entry| entry.value().kind == RoomKind::DropIn)
            .filter(|entry| match after {
                None => true,
                Some((at, id)) => {
                    let room = entry.value();
                    room.created_at < at || (room.created_at == at && &*room.id > id)
                }
            })
            .filter_map(|entry| {
                let room = entry.value();
                let state = room.lock();
                (!state.closed).then(|| (room.created_at, room.view(&state)))
            })
            .collect();
        rooms.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        rooms.truncate(limit);
        rooms
    }

    /// Joins a socket to a room. `already_joined` says this socket is in
    /// the room already, which makes the join a plain re-read. `on_joined`
    /// runs under the room lock so the caller can queue its reply before
    /// any message that follows the returned `last_seq`.
    pub fn join_room(
        &self,
        room_id: &str,
        joiner: &Subscriber,
        joiner_user: &UserSummary,
        since_seq: Option<u64>,
        already_joined: bool,
        on_joined: impl FnOnce(&RoomJoined),
    ) -> Result<()> {
        let room = self.room(room_id)?;
        let mut state = room.lock();
        if state.closed {
            return Err(Error::NotFound("room"));
        }
        let mut directory_changed = false;
        if !already_joined {
            match state.members.get_mut(&joiner.user) {
                Some(member) => member.sockets += 1,
                None => {
                    if state.members.len() >= room.capacity as usize {
                        return Err(Error::RoomFull);
                    }
                    self.publish(
                        Topic::Room(room.id.clone()),
                        &ServerFrame::RoomMemberJoined {
                            room_id: room.id.to_string(),
                            user: joiner_user.clone(),
                        },
                    );
                    state.members.insert(
                        joiner.user,
                        Member {
                            user: joiner_user.clone(),
                            sockets: 1,
                        },
                    );
                    directory_changed = true;
                }
            }
            self.subscribe(Topic::Room(room.id.clone()), joiner.clone());
        }
        let (messages, recovered) = recover(&state, since_seq);
        let joined = RoomJoined {
            room: room.view(&state),
            members: state.members.values().map(|m| m.user.clone()).collect(),
            messages,
            last_seq: state.last_seq,
            recovered,
        };
        on_joined(&joined);
        if directory_changed {
            self.announce(&room, RoomsChanged::open(joined.room));
        }
        Ok(())
    }

    /// Takes a socket out of a room; the user leaves once their last socket
    /// does, and an empty room starts its grace period.
    pub fn leave_room(&self, room_id: &str, conn: &Subscriber) -> Result<()> {
        let room = self.room(room_id)?;
        let mut state = room.lock();
        // A socket taken out of the room (its user's access ended) is no
        // longer counted among the user's sockets there.
        if !self.unsubscribe(&Topic::Room(room.id.clone()), conn.conn) {
            return Ok(());
        }
        let Some(member) = state.members.get_mut(&conn.user) else {
            return Ok(());
        };
        member.sockets = member.sockets.saturating_sub(1);
        if member.sockets > 0 || state.closed {
            return Ok(());
        }
        state.members.remove(&conn.user);
        self.publish(
            Topic::Room(room.id.clone()),
            &ServerFrame::RoomMemberLeft {
                room_id: room.id.to_string(),
                user_id: conn.user.to_string(),
            },
        );
        self.announce(&room, RoomsChanged::open(room.view(&state)));
        if state.members.is_empty() && room.kind == RoomKind::DropIn {
            state.emptied += 1;
            let emptied = state.emptied;
            drop(state);
            self.close_when_still_empty(room, emptied);
        }
        Ok(())
    }

    /// Takes `user` out of a room that goes on without them: each of
    /// their sockets in it gets `removed` and is off the room before the
    /// next event, and the others see them leave. Returns whether they were
    /// inside.
    pub fn remove_from_room(&self, room_id: &str, user: UserId, removed: &ServerFrame) -> bool {
        let Ok(room) = self.room(room_id) else {
            return false;
        };
        let mut state = room.lock();
        if state.closed || state.members.remove(&user).is_none() {
            return false;
        }
        let topic = Topic::Room(room.id.clone());
        self.inner.bus.publish(Delivery::Evict {
            topic: topic.clone(),
            user,
            frame: encode(removed),
        });
        self.publish(
            topic,
            &ServerFrame::RoomMemberLeft {
                room_id: room.id.to_string(),
                user_id: user.to_string(),
            },
        );
        self.announce(&room, RoomsChanged::open(room.view(&state)));
        if state.members.is_empty() && room.kind == RoomKind::DropIn {
            state.emptied += 1;
            let emptied = state.emptied;
            drop(state);
            self.close_when_still_empty(room, emptied);
        }
        true
    }

    /// Sends a message to everyone in the room, the sender included.
    pub fn send_to_room(
        &self,
        room_id: &str,
        sender: &Subscriber,
        sender_user: &UserSummary,
        text: String,
        client_msg_id: Option<String>,
    ) -> Result<Sent> {
        validate_message(&text, client_msg_id.as_deref())?;
        let room = self.room(room_id)?;
        let mut state = room.lock();
        if state.closed {
            return Err(Error::NotFound("room"));
        }
        if !state.members.contains_key(&sender.user) {
            return Err(Error::Forbidden("join the room first"));
        }
        if let Some(id) = &client_msg_id {
            if let Some(first) = state.sent_by_client_id.get(&(sender.user, id.clone())) {
                return Ok(first.clone());
            }
        }
        state.last_seq += 1;
        let message = Arc::new(RoomMessage {
            room_id: room.id.to_string(),
            seq: state.last_seq,
            message_id: ids::random("m"),
            from: sender_user.clone(),
            text,
            sent_at: rfc3339(now_ms()),
            client_msg_id,
        });
        let started = Instant::now();
        self.inner.bus.publish(Delivery::Frame {
            topic: Topic::Room(room.id.clone()),
            frame: encode(&ServerFrame::RoomMessage(RoomMessage::clone(&message))),
            skip_user: None,
            position: None,
        });
        metrics::histogram!("meshi_fanout_seconds").record(started.elapsed().as_secs_f64());
        let sent = Sent {
            message_id: message.message_id.clone(),
            seq: message.seq,
        };
        if let Some(id) = &message.client_msg_id {
            remember_client_id(
                &mut state,
                sender.user,
                id.clone(),
                sent.clone(),
                self.inner.settings.history,
            );
        }
        state.history.push_back(message);
        while state.history.len() > self.inner.settings.history {
            state.history.pop_front();
        }
        Ok(sent)
    }

    /// Tells the room's other members that this user is typing.
    pub fn room_typing(&self, room_id: &str, typist: &Subscriber) -> Result<()> {
        let room = self.room(room_id)?;
        let state = room.lock();
        if !state.members.contains_key(&typist.user) {
            return Err(Error::Forbidden("join the room first"));
        }
        self.inner.bus.publish(Delivery::Frame {
            topic: Topic::Room(room.id.clone()),
            frame: encode(&ServerFrame::RoomTyping {
                room_id: room.id.to_string(),
                user_id: typist.user.to_string(),
            }),
            skip_user: Some(typist.user),
            position: None,
        });
        Ok(())
    }

    /// Closes a room for everyone inside, telling them why.
    pub fn close_room(&self, room_id: &str, reason: RoomClosedReason) -> Result<()> {
        let room = self.room(room_id)?;
        let mut state = room.lock();
        if state.closed {
            return Err(Error::NotFound("room"));
        }
        self.close_locked(&room, &mut state, reason);
        Ok(())
    }

    fn close_locked(&self, room: &Room, state: &mut RoomState, reason: RoomClosedReason) {
        state.closed = true;
        state.members.clear();
        self.publish(
            Topic::Room(room.id.clone()),
            &ServerFrame::RoomClosed {
                room_id: room.id.to_string(),
                reason,
            },
        );
        self.announce(room, RoomsChanged::closed(room.id.to_string()));
        self.inner.rooms.remove(&room.id);
        if let (RoomKind::DropIn, Some(host)) = (room.kind, room.host_id) {
            self.inner.quota.release(host);
        }
        metrics::gauge!("meshi_rooms_open").decrement(1.0);
    }

    /// Tells directory watchers about a drop-in room. Event and community
    /// rooms are private to their attendees and members, so they are not
    /// announced to everyone.
    fn announce(&self, room: &Room, change: RoomsChanged) {
        if room.kind == RoomKind::DropIn {
            self.publish(Topic::Directory, &ServerFrame::RoomsChanged(change));
        }
    }

    fn close_when_still_empty(&self, room: Arc<Room>, emptied: u64) {
        let close_if_still_empty = {
            let hub = self.clone();
            move || {
                let mut state = room.lock();
                if !state.closed && state.members.is_empty() && state.emptied == emptied {
                    hub.close_locked(&room, &mut state, RoomClosedReason::Empty);
                }
            }
        };
        let grace = self.inner.settings.empty_grace;
        if grace.is_zero() {
            close_if_still_empty();
            return;
        }
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => close_if_still_empty(),
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// The messages a join returns and whether they are all after `since_seq`.
fn recover(state: &RoomState, since_seq: Option<u64>) -> (Vec<RoomMessage>, bool) {
    let latest = |n: usize| -> Vec<RoomMessage> {
        let skip = state.history.len().saturating_sub(n);
        state
            .history
            .iter()
            .skip(skip)
            .map(|m| RoomMessage::clone(m))
            .collect()
    };
    let Some(since) = since_seq else {
        return (latest(LATEST_ON_JOIN), false);
    };
    if since > state.last_seq {
        // The client saw a seq this room never reached: it knew an earlier
        // room under the same id, so nothing it has can be trusted.
        return (latest(LATEST_ON_JOIN), false);
    }
    let oldest_kept = state.history.front().map_or(state.last_seq + 1, |m| m.seq);
    if since + 1 >= oldest_kept {
        let missed = state
            .history
            .iter()
            .filter(|m| m.seq > since)
            .map(|m| RoomMessage::clone(m))
            .collect();
        (missed, true)
    } else {
        (latest(LATEST_ON_JOIN), false)
    }
}

fn remember_client_id(state: &mut RoomState, user: UserId, id: String, sent: Sent, keep: usize) {
    state.sent_by_client_id.insert((user, id.clone()), sent);
    state.client_ids_in_order.push_back((user, id));
    while state.client_ids_in_order.len() > keep {
        if let Some(old) = state.client_ids_in_order.pop_front() {
            state.sent_by_client_id.remove(&old);
        }
    }
}

/// A new drop-in room's name, topic and capacity, trimmed and checked.
pub fn validate_new_room(
    name: &str,
    topic: Option<&str>,
    capacity: Option<u32>,
) -> Result<(String, Option<String>, u32)> {
    let name = crate::validate::line("name", name, 1, 60)?;
    let topic = topic
        .map(|t| crate::validate::line("topic", t, 0, 200))
        .transpose()?
        .filter(|t| !t.is_empty());
    let capacity = capacity.unwrap_or(DEFAULT_CAPACITY);
    if !(2..=500).contains(&capacity) {
        return Err(Error::bad("capacity", "must be 2-500"));
    }
    Ok((name, topic, capacity))
}

/// A room message's text and `client_msg_id`.
pub fn validate_message(text: &str, client_msg_id: Option<&str>) -> Result<()> {
    validate_text(text)?;
    if client_msg_id.is_some_and(|id| id.is_empty() || id.chars().count() > MAX_CLIENT_MSG_ID) {
        return Err(Error::bad("client_msg_id", "must be 1-64 characters"));
    }
    Ok(())
}

pub fn validate_text(text: &str) -> Result<()> {
    let chars = text.chars().count();
    if chars == 0 || text.trim().is_empty() {
        return Err(Error::bad("text", "must not be empty"));
    }
    if chars > MAX_TEXT_CHARS {
        return Err(Error::TooLarge(
            "text: must be at most 4000 characters".into(),
        ));
    }
    crate::validate::check_prose_chars("text", text)
}
