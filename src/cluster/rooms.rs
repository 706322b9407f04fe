//! Rooms shared by every node, kept in Redis: the Redis implementation of
//! [`RoomEngine`] (see the module above for the keys and the order).
//!
//! Each op is one script, so a room changes atomically and its events
//! leave Redis in one order. Redis counts members per node: the node side
//! (`rooms`) joins a user with their first socket here and leaves them with
//! their last, so a message crosses Redis once per interested node,
//! whatever the number of members behind it.
//!
//! Beyond the scripts, this engine keeps what a node must to survive Redis
//! losing its data: the rooms it holds members in, with those members, to
//! put back (`restore_all`), and leaves Redis did not hear, to tell again.
//! It uses the Redis bus's own reports (what a room's channel carried,
//! rooms closing, members evicted) for that: they belong to this engine's
//! half of the seam, not to the node side. It must not know sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dashmap::DashMap;
use meshi_protocol::{
    Room as RoomView, RoomClosedReason, RoomJoined, RoomKind, RoomMessage, ServerFrame, UserSummary,
};

use super::frames::{self, reason_name, SEQ};
use super::{scripts, Cluster, RESEED_GAP};
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::hub::{encode, Frame, UserId};
use crate::rooms::engine::{
    Creating, Joined, Joining, Membership, Replacing, RoomEngine, RoomSettings, Sending,
    StandingRoom, LATEST_ON_JOIN,
};

pub struct RedisEngine {
    cluster: Cluster,
    settings: RoomSettings,
    /// Rooms this node holds members in, with what it needs to put the
    /// room back if Redis loses it.
    held: Arc<DashMap<Arc<str>, Arc<Held>>>,
    /// Leaves Redis did not hear (it was away); upkeep tries them again.
    unheard_leaves: Mutex<Vec<(Arc<str>, UserId)>>,
}

struct Held {
    kind: RoomKind,
    /// The room's frames, as its hash keeps them (see `frames`).
    fields: String,
    capacity: u32,
    created_ms: i64,
    /// Users inside through this node, with their summary JSON.
    users: Mutex<HashMap<UserId, String>>,
    /// Highest seq and position this node handed out or was told of.
    seq: AtomicU64,
    position: AtomicU64,
}

/// How a script answered a room op.
enum Answer {
    Ok(Vec<String>),
    Gone,
    Full,
    Forbidden,
    Banned(i64),
}

impl Answer {
    fn from(mut reply: Vec<String>) -> Answer {
        match reply.first().map(String::as_str) {
            Some("banned") => Answer::Banned(
                reply
                    .get(1)
                    .and_then(|until| until.parse().ok())
                    .unwrap_or(0),
            ),
            Some("ok") => {
                reply.remove(0);
                Answer::Ok(reply)
            }
            Some("full") => Answer::Full,
            Some("forbidden") => Answer::Forbidden,
            _ => Answer::Gone,
        }
    }
}

impl RedisEngine {
    pub fn new(cluster: Cluster, settings: RoomSettings) -> Self {
        // A closed room must not come back with the members this node
        // held in it, so its record goes with the close.
        let held: Arc<DashMap<Arc<str>, Arc<Held>>> = Arc::default();
        let forget = held.clone();
        cluster.bus().on_room_closed(Arc::new(move |room: &str| {
            forget.remove(room);
        }));
        // A member taken out of a room is no longer held here either: the
        // room must not come back with them after a Redis loss, and their
        // next join through this node is their first again.
        let forget = held.clone();
        cluster
            .bus()
            .on_member_evicted(Arc::new(move |room: &str, user: UserId| {
                if let Some(held) = forget.get(room).map(|h| h.clone()) {
                    held.forget(user);
                    forget.remove_if(room, |_, h| h.is_empty());
                }
            }));
        RedisEngine {
            cluster,
            settings,
            held,
            unheard_leaves: Mutex::default(),
        }
    }

    fn close_at_once(&self) -> &'static str {
        if self.settings.empty_grace.is_zero() {
            "1"
        } else {
            "0"
        }
    }

    async fn tell_leave(&self, room_id: &str, user: UserId) -> redis::RedisResult<()> {
        self.cluster
            .run::<i64>(
                &scripts::LEAVE,
                &args![room_id, user, self.close_at_once(), now_ms()],
            )
            .await
            .map(drop)
    }

    /// Tells Redis of leaves it missed, unless the user is back in the
    /// room through this node meanwhile.
    pub(crate) async fn retry_leaves(&self) -> redis::RedisResult<()> {
        let leaves = std::mem::take(
            &mut *self
                .unheard_leaves
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut result = Ok(());
        for (room, user) in leaves {
            let back = self.held.get(&room).is_some_and(|held| held.holds(user));
            if back {
                continue;
            }
            if let Err(error) = self.tell_leave(&room, user).await {
                self.unheard_leaves
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((room, user));
                result = Err(error);
            }
        }
        result
    }

    /// Each room's view as Redis has it now; `None` for one that is gone.
    async fn views(&self, ids: &[String]) -> Result<Vec<Option<RoomView>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET")
                .arg(self.room_key(id, ""))
                .arg("vh")
                .arg("vt")
                .hlen(self.room_key(id, "|m"));
        }
        let replies: Vec<redis::Value> = self.cluster.pipe(&pipe).await?;
        let mut views = Vec::with_capacity(ids.len());
        for pair in replies.chunks(2) {
            let parts: (Option<String>, Option<String>) =
                redis::from_redis_value(pair[0].clone()).unwrap_or((None, None));
            let count: u64 = redis::from_redis_value(pair[1].clone()).unwrap_or(0);
            views.push(match parts {
                (Some(head), Some(tail)) => parse_json(&format!("{head}{count}{tail}")).ok(),
                _ => None,
            });
        }
        Ok(views)
    }

    /// Closes drop-in rooms that have been empty for the grace period.
    pub(crate) async fn close_emptied(&self) -> redis::RedisResult<()> {
        let cutoff = now_ms() - self.settings.empty_grace.as_millis() as i64;
        for room in self.cluster.due("empty", cutoff).await? {
            self.cluster
                .run::<i64>(&scripts::CLOSE, &args![room, "empty", cutoff])
                .await?;
        }
        Ok(())
    }

    /// Takes a dead node's users out of the rooms it held them in.
    pub(crate) async fn reap(&self, dead: &str) -> redis::RedisResult<()> {
        let key = self.cluster.key(&format!("node:{dead}:rooms"));
        let rooms: Vec<String> = self.cluster.query(redis::cmd("SMEMBERS").arg(&key)).await?;
        for room in rooms {
            self.cluster
                .run::<i64>(
                    &scripts::REAP_ROOM,
                    &args![room, dead, self.close_at_once(), now_ms()],
                )
                .await?;
        }
        self.cluster.query::<()>(redis::cmd("DEL").arg(&key)).await
    }

    /// Puts every room this node holds members in back into Redis.
    pub(crate) async fn restore_all(&self) -> Result<()> {
        let rooms: Vec<Arc<str>> = self.held.iter().map(|e| e.key().clone()).collect();
        for room in rooms {
            self.restore(&room).await?;
        }
        Ok(())
    }

    /// A room op found the room gone from Redis: either it closed, or
    /// Redis lost it and upkeep has not put it back yet. Puts it back in the
    /// second case only; returns whether it did.
    async fn restore_if_lost(&self, room_id: &str) -> Result<bool> {
        if !self.held.contains_key(room_id) {
            return Ok(false);
        }
        if self.cluster.is_known().await? {
            // Redis has its data, so the room really closed.
            self.held.remove(room_id);
            return Ok(false);
        }
        self.restore(room_id).await
    }

    /// Puts one room back, with this node's members, if this node holds
    /// it; returns whether it did.
    async fn restore(&self, room_id: &str) -> Result<bool> {
        let Some(held) = self.held.get(room_id).map(|h| h.clone()) else {
            return Ok(false);
        };
        let (position, seq) = self.floors(room_id);
        let position = position.max(held.position.load(Ordering::Relaxed) + RESEED_GAP);
        let seq = seq.max(held.seq.load(Ordering::Relaxed) + RESEED_GAP);
        let users: Vec<(UserId, String)> = held
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(user, summary)| (*user, summary.clone()))
            .collect();
        let mut args = args![
            room_id,
            kind_name(held.kind),
            held.fields,
            held.capacity,
            held.created_ms,
            seq,
            position,
        ];
        for (user, summary) in &users {
            args.extend(args![*user, summary]);
        }
        self.cluster.run::<i64>(&scripts::RESTORE, &args).await?;
        held.seen(seq, position);
        tracing::info!(
            room = room_id,
            members = users.len(),
            seq,
            "room put back into Redis"
        );
        Ok(true)
    }

    /// Where a room reopened after a loss starts counting: past anything
    /// this node heard, by a margin. Zero when it heard nothing.
    fn floors(&self, room_id: &str) -> (u64, u64) {
        let (position, seq) = self.cluster.bus().room_heard(room_id);
        let raise = |n: u64| if n == 0 { 0 } else { n + RESEED_GAP };
        (raise(position), raise(seq))
    }

    fn hold(&self, room: &Arc<str>, view: &RoomView, created_ms: i64) -> Arc<Held> {
        self.held
            .entry(room.clone())
            .or_insert_with(|| {
                Arc::new(Held {
                    kind: view.kind,
                    fields: frames::room_fields(view),
                    capacity: view.capacity,
                    created_ms,
                    users: Mutex::default(),
                    seq: AtomicU64::new(0),
                    position: AtomicU64::new(0),
                })
            })
            .clone()
    }

    fn room_key(&self, room_id: &str, suffix: &str) -> String {
        format!("{}:r:{room_id}{suffix}", self.cluster.prefix())
    }
}

#[async_trait]
impl RoomEngine for RedisEngine {
    async fn create(
        &self,
        room: &RoomView,
        created_ms: i64,
        host: UserId,
        host_summary: &UserSummary,
    ) -> Result<Creating> {
        let id: Arc<str> = Arc::from(room.id.as_str());
        let held = self.hold(&id, room, created_ms);
        let summary = summary_json(host_summary);
        held.add(host, &summary);
        let quota = self.settings.quota;
        let answer: Result<Vec<String>> = self
            .cluster
            .run(
                &scripts::CREATE,
                &args![
                    &*id,
                    "drop_in",
                    held.fields,
                    room.capacity,
                    created_ms,
                    0u64,
                    0u64,
                    host,
                    summary,
                    quota.max_hosted,
                    quota.create_per_min,
                    created_ms,
                ],
            )
            .await
            .map_err(Error::from);
        let creating = answer.and_then(|answer| match answer.first().map(String::as_str) {
            Some("ok") => Ok(Creating::Created),
            Some("hosted") => Ok(Creating::HostsTooMany),
            Some("rate") => {
                let wait: i64 = parse_number(answer.get(1))?;
                Ok(Creating::TooSoon {
                    wait_ms: wait.max(1) as u64,
                })
            }
            _ => Err(Error::internal(format!("room create answered {answer:?}"))),
        });
        if !matches!(creating, Ok(Creating::Created)) {
            self.held.remove(&id);
        }
        creating
    }

    async fn ensure(&self, spec: &StandingRoom, created_ms: i64) -> Result<RoomView> {
        let template = RoomView {
            id: spec.id.clone(),
            kind: spec.kind,
            name: spec.name.clone(),
            topic: spec.topic.clone(),
            capacity: spec.capacity,
            member_count: 0,
            host_id: spec.host_id.map(|id| id.to_string()),
            created_at: rfc3339(created_ms),
        };
        let fields = frames::room_fields(&template);
        let (position, seq) = self.floors(&spec.id);
        let view: String = self
            .cluster
            .run(
                &scripts::OPEN,
                &args![
                    spec.id,
                    kind_name(spec.kind),
                    fields,
                    spec.capacity,
                    created_ms,
                    seq,
                    position,
                ],
            )
            .await?;
        parse_json(&view)
    }

    async fn join(
        &self,
        room_id: &str,
        user: UserId,
        summary: &UserSummary,
        since_seq: Option<u64>,
    ) -> Result<Joining> {
        let summary_json = summary_json(summary);
        let joined_frame = encode(&ServerFrame::RoomMemberJoined {
            room_id: room_id.to_owned(),
            user: summary.clone(),
        });
        let since = since_seq.map(|s| s.to_string()).unwrap_or_default();
        let args = args![
            room_id,
            user,
            summary_json,
            joined_frame.as_str(),
            since,
            LATEST_ON_JOIN,
            now_ms(),
        ];
        let mut answer = Answer::from(self.cluster.run(&scripts::JOIN, &args).await?);
        if matches!(answer, Answer::Gone) && self.restore_if_lost(room_id).await? {
            answer = Answer::from(self.cluster.run(&scripts::JOIN, &args).await?);
        }
        let fields = match answer {
            Answer::Ok(fields) => fields,
            Answer::Full => return Ok(Joining::Full),
            Answer::Banned(until_ms) => return Ok(Joining::Banned { until_ms }),
            Answer::Gone | Answer::Forbidden => return Ok(Joining::NoRoom),
        };
        let reply = parse_joined(&fields)?;
        let position: u64 = parse_number(fields.get(1))?;
        let created_ms = parse_number::<i64>(fields.get(4)).unwrap_or_else(|_| now_ms());
        let held = self.hold(&Arc::from(room_id), &reply.room, created_ms);
        held.seen(reply.last_seq, position);
        held.add(user, &summary_json);
        Ok(Joining::Joined(Box::new(Joined { reply, position })))
    }

    async fn leave(
        &self,
        room_id: &str,
        user: UserId,
        back: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<()> {
        if back() {
            return Ok(());
        }
        if let Some(held) = self.held.get(room_id).map(|h| h.clone()) {
            held.forget(user);
            if held.is_empty() {
                self.held.remove_if(room_id, |_, h| h.is_empty());
            }
        }
        if let Err(error) = self.tell_leave(room_id, user).await {
            self.unheard_leaves
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Arc::from(room_id), user));
            return Err(error.into());
        }
        Ok(())
    }

    /// See [`scripts::REMOVE`].
    async fn remove(
        &self,
        room_id: &str,
        user: UserId,
        removed: Frame,
        ban_until_ms: Option<i64>,
    ) -> Result<bool> {
        let ban = ban_until_ms.map(|ms| ms.to_string()).unwrap_or_default();
        let inside: i64 = self
            .cluster
            .run(
                &scripts::REMOVE,
                &args![
                    room_id,
                    user,
                    removed.as_str(),
                    self.close_at_once(),
                    now_ms(),
                    ban,
                ],
            )
            .await?;
        Ok(inside == 1)
    }

    async fn send(&self, room_id: &str, sender: UserId, message: RoomMessage) -> Result<Sending> {
        let message_id = message.message_id.clone();
        let cid = message.client_msg_id.clone().unwrap_or_default();
        // The script numbers the message: the frame goes as two halves
        // around its seq.
        let frame = encode(&ServerFrame::RoomMessage(RoomMessage {
            seq: u64::MAX,
            ..message
        }));
        let (head, tail) = SEQ.split(frame.as_str());
        let history = self.settings.history;
        let args = args![room_id, sender, head, tail, message_id, cid, history];
        let mut answer = Answer::from(self.cluster.run(&scripts::SEND, &args).await?);
        if matches!(answer, Answer::Gone) && self.restore_if_lost(room_id).await? {
            answer = Answer::from(self.cluster.run(&scripts::SEND, &args).await?);
        }
        Ok(match answer {
            Answer::Ok(fields) => {
                let seq = parse_number(fields.first())?;
                if let Some(held) = self.held.get(room_id) {
                    held.seen(seq, 0);
                }
                Sending::Sent(meshi_protocol::Sent {
                    seq,
                    message_id: fields.get(1).cloned().unwrap_or(message_id),
                })
            }
            Answer::Forbidden => Sending::NotMember,
            Answer::Gone | Answer::Full | Answer::Banned(_) => Sending::NoRoom,
        })
    }

    async fn message(&self, room_id: &str, message_id: &str) -> Result<Option<RoomMessage>> {
        // Newest last; a revision is most often of a recent message.
        Ok(self
            .history(room_id)
            .await?
            .into_iter()
            .rev()
            .find(|message| message.message_id == message_id))
    }

    async fn history(&self, room_id: &str) -> Result<Vec<RoomMessage>> {
        let kept: Vec<String> = self
            .cluster
            .query(
                redis::cmd("LRANGE")
                    .arg(self.room_key(room_id, "|h"))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        let mut messages = Vec::with_capacity(kept.len());
        for frame in &kept {
            if let ServerFrame::RoomMessage(message) = parse_json(frame)? {
                messages.push(message);
            }
        }
        Ok(messages)
    }

    /// Walks the key space with SCAN (never KEYS, which would stall Redis
    /// for everyone): this runs once per deleted account, not per message.
    async fn rooms_with_history(&self) -> Result<Vec<String>> {
        let prefix = self.room_key("", "");
        let pattern = format!("{prefix}*|h");
        let mut cursor: u64 = 0;
        let mut rooms = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .cluster
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            rooms.extend(keys.iter().filter_map(|key| {
                key.strip_prefix(&prefix)?
                    .strip_suffix("|h")
                    .map(str::to_owned)
            }));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        rooms.sort();
        rooms.dedup();
        Ok(rooms)
    }

    /// See [`scripts::REPLACE`]. The kept frame is the message encoded
    /// again: encoding is deterministic, so it is the history's entry
    /// byte for byte while nobody changed it.
    async fn replace(
        &self,
        room_id: &str,
        kept: &RoomMessage,
        revised: &RoomMessage,
        event: Frame,
    ) -> Result<Replacing> {
        let kept = encode(&ServerFrame::RoomMessage(kept.clone()));
        let revised = encode(&ServerFrame::RoomMessage(revised.clone()));
        let answer: Vec<String> = self
            .cluster
            .run(
                &scripts::REPLACE,
                &args![room_id, kept.as_str(), revised.as_str(), event.as_str()],
            )
            .await?;
        Ok(match answer.first().map(String::as_str) {
            Some("ok") => Replacing::Replaced,
            Some("stale") => Replacing::Stale,
            _ => Replacing::NoRoom,
        })
    }

    async fn membership(&self, room_id: &str, user: UserId) -> Result<Membership> {
        let (exists, member): (bool, bool) = self
            .cluster
            .pipe(
                redis::pipe()
                    .exists(self.room_key(room_id, ""))
                    .hexists(self.room_key(room_id, "|m"), user),
            )
            .await?;
        Ok(match (exists, member) {
            (false, _) => Membership::NoRoom,
            (true, true) => Membership::Member,
            (true, false) => Membership::Outsider,
        })
    }

    async fn close(&self, room_id: &str, reason: RoomClosedReason) -> Result<bool> {
        let closed: i64 = self
            .cluster
            .run(&scripts::CLOSE, &args![room_id, reason_name(reason), ""])
            .await?;
        Ok(closed != 0)
    }

    async fn info(&self, room_id: &str) -> Result<Option<RoomView>> {
        let mut views = self.views(&[room_id.to_owned()]).await?;
        Ok(views.pop().flatten())
    }

    async fn exists(&self, room_id: &str) -> Result<bool> {
        Ok(self
            .cluster
            .query(redis::cmd("EXISTS").arg(self.room_key(room_id, "")))
            .await?)
    }

    /// Open drop-in rooms across the cluster, newest first.
    async fn page(&self, after: Option<(i64, &str)>, limit: usize) -> Result<Vec<(i64, RoomView)>> {
        let mut listed: Vec<(String, f64)> = self
            .cluster
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.cluster.key("rooms"))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            )
            .await?;
        listed.retain(|(id, at)| match after {
            None => true,
            Some((after_at, after_id)) => {
                let at = *at as i64;
                at < after_at || (at == after_at && id.as_str() > after_id)
            }
        });
        listed.sort_by(|a, b| (b.1 as i64).cmp(&(a.1 as i64)).then_with(|| a.0.cmp(&b.0)));
        listed.truncate(limit);
        let ids: Vec<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        let views = self.views(&ids).await?;
        Ok(listed
            .into_iter()
            .zip(views)
            .filter_map(|((_, at), view)| view.map(|view| (at as i64, view)))
            .collect())
    }
}

impl Held {
    fn add(&self, user: UserId, summary: &str) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user)
            .or_insert_with(|| summary.to_owned());
    }

    /// This node no longer holds `user` in the room.
    fn forget(&self, user: UserId) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&user);
    }

    fn holds(&self, user: UserId) -> bool {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&user)
    }

    fn is_empty(&self) -> bool {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn seen(&self, seq: u64, position: u64) {
        self.seq.fetch_max(seq, Ordering::Relaxed);
        self.position.fetch_max(position, Ordering::Relaxed);
    }
}

fn summary_json(user: &UserSummary) -> String {
    serde_json::to_string(user).expect("a user summary always serializes")
}

fn kind_name(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::DropIn => "drop_in",
        RoomKind::Event => "event",
        RoomKind::Community => "community",
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|err| Error::internal(format!("room state in Redis: {err}")))
}

fn parse_number<T: std::str::FromStr>(field: Option<&String>) -> Result<T> {
    field
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| Error::internal("room state in Redis: a number is malformed"))
}

/// `last_seq, position, view, recovered, created, n, n members...,
/// messages...` as the join script returns them.
fn parse_joined(fields: &[String]) -> Result<RoomJoined> {
    let last_seq = parse_number(fields.first())?;
    let room: RoomView = parse_json(fields.get(2).map_or("", String::as_str))?;
    let recovered = fields.get(3).is_some_and(|r| r == "1");
    let count: usize = parse_number(fields.get(5))?;
    let rest = fields.get(6..).unwrap_or_default();
    let (members, messages) = rest.split_at(count.min(rest.len()));
    let members = members
        .iter()
        .map(|m| parse_json::<UserSummary>(m))
        .collect::<Result<Vec<_>>>()?;
    let messages = messages
        .iter()
        .filter_map(|frame| match parse_json::<ServerFrame>(frame) {
            Ok(ServerFrame::RoomMessage(message)) => Some(message),
            _ => None,
        })
        .collect();
    Ok(RoomJoined {
        room,
        members,
        messages,
        last_seq,
        recovered,
    })
}
