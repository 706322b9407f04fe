//! Rooms kept in this node's memory, for a node that runs alone: the
//! memory implementation of [`RoomEngine`].
//!
//! Rooms sit in a sharded map, each behind its own short-lived lock, so
//! rooms never contend with one another. A change to a room and the events
//! it publishes happen under that lock, which is what keeps a room's order,
//! and so its `seq`, the same for every recipient. It must not know
//! sockets: who is inside is a set of users.
//!
//! Lock order: a room's `state` lock, then (inside the bus) a topic shard.
//! Nothing takes a room lock while holding a shard of the room map or
//! delivering, so the order holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use dashmap::DashMap;
use meshi_protocol::server::RoomsChanged;
use meshi_protocol::{
    Room as RoomView, RoomClosedReason, RoomJoined, RoomKind, RoomMessage, Sent, ServerFrame,
    UserSummary,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::engine::{
    Creating, Joined, Joining, Membership, Replacing, RoomEngine, RoomSettings, Sending,
    StandingRoom, LATEST_ON_JOIN,
};
use super::quota::LocalQuota;
use crate::clock::{now_ms, rfc3339};
use crate::error::Result;
use crate::hub::subscribers::Topic;
use crate::hub::{encode, Frame, Hub, UserId};

pub struct MemoryEngine {
    shared: Arc<Shared>,
}

struct Shared {
    hub: Hub,
    rooms: DashMap<Arc<str>, Arc<Room>>,
    settings: RoomSettings,
    /// Rooms each user hosts and has created lately.
    quota: LocalQuota,
    /// Timers (empty-room grace) are tracked and cancelled with the node.
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

struct Room {
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
    members: HashMap<UserId, UserSummary>,
    /// The position of the room's latest event (see `hub::gate`).
    position: u64,
    last_seq: u64,
    history: VecDeque<Arc<RoomMessage>>,
    sent_by_client_id: HashMap<(UserId, String), Sent>,
    client_ids_in_order: VecDeque<(UserId, String)>,
    /// Users kicked with a ban, and when it ends (ms).
    bans: HashMap<UserId, i64>,
    closed: bool,
    /// Bumped whenever the room empties, so a stale close timer can tell.
    emptied: u64,
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding a room lock leaves the room as it was at the
        // panic; carrying on serves the others better than poisoning it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn topic(&self) -> Topic {
        Topic::Room(self.id.clone())
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

impl MemoryEngine {
    pub fn new(
        hub: Hub,
        settings: RoomSettings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        MemoryEngine {
            shared: Arc::new(Shared {
                hub,
                rooms: DashMap::new(),
                settings,
                quota: LocalQuota::default(),
                tasks,
                shutdown,
            }),
        }
    }
}

#[async_trait]
impl RoomEngine for MemoryEngine {
    async fn create(
        &self,
        room: &RoomView,
        created_ms: i64,
        host: UserId,
        host_summary: &UserSummary,
    ) -> Result<Creating> {
        Ok(self.shared.create(room, created_ms, host, host_summary))
    }

    async fn ensure(&self, spec: &StandingRoom, created_ms: i64) -> Result<RoomView> {
        Ok(self.shared.ensure(spec, created_ms))
    }

    async fn join(
        &self,
        room_id: &str,
        user: UserId,
        summary: &UserSummary,
        since_seq: Option<u64>,
    ) -> Result<Joining> {
        Ok(self.shared.join(room_id, user, summary, since_seq))
    }

    async fn leave(
        &self,
        room_id: &str,
        user: UserId,
        back: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<()> {
        self.shared.leave(room_id, user, back);
        Ok(())
    }

    async fn remove(
        &self,
        room_id: &str,
        user: UserId,
        removed: Frame,
        ban_until_ms: Option<i64>,
    ) -> Result<bool> {
        Ok(self.shared.remove(room_id, user, removed, ban_until_ms))
    }

    async fn send(&self, room_id: &str, sender: UserId, message: RoomMessage) -> Result<Sending> {
        Ok(self.shared.send(room_id, sender, message))
    }

    async fn message(&self, room_id: &str, message_id: &str) -> Result<Option<RoomMessage>> {
        let Some(room) = self.shared.room(room_id) else {
            return Ok(None);
        };
        let state = room.lock();
        if state.closed {
            return Ok(None);
        }
        Ok(state
            .history
            .iter()
            .find(|m| m.message_id == message_id)
            .map(|m| RoomMessage::clone(m)))
    }

    async fn replace(
        &self,
        room_id: &str,
        kept: &RoomMessage,
        revised: &RoomMessage,
        event: Frame,
    ) -> Result<Replacing> {
        Ok(self.shared.replace(room_id, kept, revised, event))
    }

    async fn history(&self, room_id: &str) -> Result<Vec<RoomMessage>> {
        let Some(room) = self.shared.room(room_id) else {
            return Ok(Vec::new());
        };
        let state = room.lock();
        if state.closed {
            return Ok(Vec::new());
        }
        Ok(state
            .history
            .iter()
            .map(|m| RoomMessage::clone(m))
            .collect())
    }

    async fn rooms_with_history(&self) -> Result<Vec<String>> {
        // Gathered before any room is locked, as `page` does.
        let rooms: Vec<Arc<Room>> = self
            .shared
            .rooms
            .iter()
            .map(|entry| entry.value().clone())
            .collect();
        Ok(rooms
            .into_iter()
            .filter(|room| {
                let state = room.lock();
                !state.closed && !state.history.is_empty()
            })
            .map(|room| room.id.to_string())
            .collect())
    }

    async fn membership(&self, room_id: &str, user: UserId) -> Result<Membership> {
        let Some(room) = self.shared.room(room_id) else {
            return Ok(Membership::NoRoom);
        };
        let state = room.lock();
        Ok(if state.closed {
            Membership::NoRoom
        } else if state.members.contains_key(&user) {
            Membership::Member
        } else {
            Membership::Outsider
        })
    }

    async fn close(&self, room_id: &str, reason: RoomClosedReason) -> Result<bool> {
        let Some(room) = self.shared.room(room_id) else {
            return Ok(false);
        };
        let mut state = room.lock();
        if state.closed {
            return Ok(false);
        }
        self.shared.close_locked(&room, &mut state, reason);
        Ok(true)
    }

    async fn info(&self, room_id: &str) -> Result<Option<RoomView>> {
        Ok(self.shared.room(room_id).and_then(|room| {
            let state = room.lock();
            (!state.closed).then(|| room.view(&state))
        }))
    }

    async fn exists(&self, room_id: &str) -> Result<bool> {
        Ok(self.shared.rooms.contains_key(room_id))
    }

    async fn page(&self, after: Option<(i64, &str)>, limit: usize) -> Result<Vec<(i64, RoomView)>> {
        Ok(self.shared.page(after, limit))
    }
}

impl Shared {
    fn room(&self, room_id: &str) -> Option<Arc<Room>> {
        self.rooms.get(room_id).map(|r| r.value().clone())
    }

    /// Publishes a room event at the room's next position.
    fn publish(&self, room: &Room, state: &mut RoomState, frame: &ServerFrame) {
        self.publish_frame(room, state, encode(frame));
    }

    fn publish_frame(&self, room: &Room, state: &mut RoomState, frame: Frame) {
        state.position += 1;
        self.hub
            .publish_in_order(room.topic(), frame, state.position);
    }

    fn replace(
        &self,
        room_id: &str,
        kept: &RoomMessage,
        revised: &RoomMessage,
        event: Frame,
    ) -> Replacing {
        let Some(room) = self.room(room_id) else {
            return Replacing::NoRoom;
        };
        let mut state = room.lock();
        if state.closed {
            return Replacing::NoRoom;
        }
        let Some(at) = state
            .history
            .iter()
            .position(|m| m.message_id == kept.message_id)
        else {
            return Replacing::Stale;
        };
        if *state.history[at] != *kept {
            return Replacing::Stale;
        }
        state.history[at] = Arc::new(revised.clone());
        self.publish_frame(&room, &mut state, event);
        Replacing::Replaced
    }

    fn create(
        &self,
        view: &RoomView,
        created_ms: i64,
        host: UserId,
        host_summary: &UserSummary,
    ) -> Creating {
        let claimed = self.quota.claim(&self.settings.quota, host);
        if !matches!(claimed, Creating::Created) {
            return claimed;
        }
        let room = Arc::new(Room {
            id: Arc::from(view.id.as_str()),
            kind: RoomKind::DropIn,
            name: view.name.clone(),
            topic: view.topic.clone(),
            capacity: view.capacity,
            host_id: Some(host),
            created_at: created_ms,
            state: Mutex::new(RoomState::default()),
        });
        let mut state = room.lock();
        state.members.insert(host, host_summary.clone());
        self.rooms.insert(room.id.clone(), room.clone());
        self.announce(&room, RoomsChanged::open(room.view(&state)));
        metrics::gauge!("meshi_rooms_open").increment(1.0);
        Creating::Created
    }

    /// Standing rooms stay open when empty: they belong to their event or
    /// community, not to whoever is inside.
    fn ensure(&self, spec: &StandingRoom, created_ms: i64) -> RoomView {
        let room = self
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
                    created_at: created_ms,
                    state: Mutex::new(RoomState::default()),
                })
            })
            .value()
            .clone();
        let state = room.lock();
        room.view(&state)
    }

    fn page(&self, after: Option<(i64, &str)>, limit: usize) -> Vec<(i64, RoomView)> {
        // Rooms are gathered before any is locked: a room closing holds its
        // lock while it leaves the map.
        let candidates: Vec<Arc<Room>> = self
            .rooms
            .iter()
            .map(|entry| entry.value().clone())
            .filter(|room| room.kind == RoomKind::DropIn)
            .filter(|room| match after {
                None => true,
                Some((at, id)) => room.created_at < at || (room.created_at == at && &*room.id > id),
            })
            .collect();
        let mut rooms: Vec<(i64, RoomView)> = candidates
            .iter()
            .filter_map(|room| {
                let state = room.lock();
                (!state.closed).then(|| (room.created_at, room.view(&state)))
            })
            .collect();
        rooms.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        rooms.truncate(limit);
        rooms
    }

    fn join(
        &self,
        room_id: &str,
        user: UserId,
        summary: &UserSummary,
        since_seq: Option<u64>,
    ) -> Joining {
        let Some(room) = self.room(room_id) else {
            return Joining::NoRoom;
        };
        let mut state = room.lock();
        if state.closed {
            return Joining::NoRoom;
        }
        if let Some(&until_ms) = state.bans.get(&user) {
            if until_ms > now_ms() {
                return Joining::Banned { until_ms };
            }
            state.bans.remove(&user);
        }
        let new_member = !state.members.contains_key(&user);
        if new_member {
            if state.members.len() >= room.capacity as usize {
                return Joining::Full;
            }
            self.publish(
                &room,
                &mut state,
                &ServerFrame::RoomMemberJoined {
                    room_id: room.id.to_string(),
                    user: summary.clone(),
                },
            );
            state.members.insert(user, summary.clone());
        }
        let (messages, recovered) = recover(&state, since_seq);
        let reply = RoomJoined {
            room: room.view(&state),
            members: state.members.values().cloned().collect(),
            messages,
            last_seq: state.last_seq,
            recovered,
        };
        if new_member {
            self.announce(&room, RoomsChanged::open(reply.room.clone()));
        }
        Joining::Joined(Box::new(Joined {
            reply,
            position: state.position,
        }))
    }

    fn leave(
        self: &Arc<Self>,
        room_id: &str,
        user: UserId,
        back: &(dyn Fn() -> bool + Send + Sync),
    ) {
        let Some(room) = self.room(room_id) else {
            return;
        };
        let mut state = room.lock();
        // `back` is asked under the lock a join of theirs also takes, so a
        // socket of theirs joining meanwhile either finds them still inside
        // or comes after this leave.
        if state.closed || !state.members.contains_key(&user) || back() {
            return;
        }
        state.members.remove(&user);
        self.member_left(&room, state, user);
    }

    fn remove(
        self: &Arc<Self>,
        room_id: &str,
        user: UserId,
        removed: Frame,
        ban_until_ms: Option<i64>,
    ) -> bool {
        let Some(room) = self.room(room_id) else {
            return false;
        };
        let mut state = room.lock();
        if state.closed {
            return false;
        }
        if let Some(until) = ban_until_ms {
            state.bans.insert(user, until);
        }
        if state.members.remove(&user).is_none() {
            return false;
        }
        self.hub.evict(room.topic(), user, removed);
        self.member_left(&room, state, user);
        true
    }

    /// Tells the room and the directory that `user` is gone, and starts an
    /// emptied drop-in room's grace period.
    fn member_left(
        self: &Arc<Self>,
        room: &Arc<Room>,
        mut state: MutexGuard<'_, RoomState>,
        user: UserId,
    ) {
        self.publish(
            room,
            &mut state,
            &ServerFrame::RoomMemberLeft {
                room_id: room.id.to_string(),
                user_id: user.to_string(),
            },
        );
        self.announce(room, RoomsChanged::open(room.view(&state)));
        if state.members.is_empty() && room.kind == RoomKind::DropIn {
            state.emptied += 1;
            let emptied = state.emptied;
            drop(state);
            self.close_when_still_empty(room.clone(), emptied);
        }
    }

    fn send(&self, room_id: &str, sender: UserId, mut message: RoomMessage) -> Sending {
        let Some(room) = self.room(room_id) else {
            return Sending::NoRoom;
        };
        let mut state = room.lock();
        if state.closed {
            return Sending::NoRoom;
        }
        if !state.members.contains_key(&sender) {
            return Sending::NotMember;
        }
        if let Some(id) = &message.client_msg_id {
            if let Some(first) = state.sent_by_client_id.get(&(sender, id.clone())) {
                return Sending::Sent(first.clone());
            }
        }
        state.last_seq += 1;
        message.seq = state.last_seq;
        self.publish(
            &room,
            &mut state,
            &ServerFrame::RoomMessage(message.clone()),
        );
        let sent = Sent {
            message_id: message.message_id.clone(),
            seq: message.seq,
        };
        if let Some(id) = &message.client_msg_id {
            remember_client_id(
                &mut state,
                sender,
                id.clone(),
                sent.clone(),
                self.settings.history,
            );
        }
        state.history.push_back(Arc::new(message));
        while state.history.len() > self.settings.history {
            state.history.pop_front();
        }
        Sending::Sent(sent)
    }

    fn close_locked(&self, room: &Room, state: &mut RoomState, reason: RoomClosedReason) {
        state.closed = true;
        state.members.clear();
        self.publish(
            room,
            state,
            &ServerFrame::RoomClosed {
                room_id: room.id.to_string(),
                reason,
            },
        );
        // Its members heard the close; a room opened later under the same
        // id (an event's or a community's) is not theirs until they join.
        self.hub.end_here(&room.topic());
        self.announce(room, RoomsChanged::closed(room.id.to_string()));
        self.rooms.remove(&room.id);
        if let (RoomKind::DropIn, Some(host)) = (room.kind, room.host_id) {
            self.quota.release(host);
        }
        metrics::gauge!("meshi_rooms_open").decrement(1.0);
    }

    /// Tells directory watchers about a drop-in room. Event and community
    /// rooms are private to their attendees and members, so they are not
    /// announced to everyone.
    fn announce(&self, room: &Room, change: RoomsChanged) {
        if room.kind == RoomKind::DropIn {
            self.hub
                .publish(Topic::Directory, &ServerFrame::RoomsChanged(change));
        }
    }

    fn close_when_still_empty(self: &Arc<Self>, room: Arc<Room>, emptied: u64) {
        let close_if_still_empty = {
            let shared = self.clone();
            move || {
                let mut state = room.lock();
                if !state.closed && state.members.is_empty() && state.emptied == emptied {
                    shared.close_locked(&room, &mut state, RoomClosedReason::Empty);
                }
            }
        };
        let grace = self.settings.empty_grace;
        if grace.is_zero() {
            close_if_still_empty();
            return;
        }
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
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
