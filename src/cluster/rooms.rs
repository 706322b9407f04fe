//! Rooms shared by every node, kept in Redis (see the module above).
//!
//! A node still counts its own sockets per room and user, so Redis hears
//! only of a user's first socket on this node entering a room and their
//! last one leaving it. The joined socket's subscription is local, and the
//! node listens to the room's channel while it has such a socket, so a
//! message crosses Redis once per interested node, whatever the number of
//! members behind it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use meshi_protocol::{
    Room as RoomView, RoomClosedReason, RoomJoined, RoomKind, RoomMessage, Sent, ServerFrame,
    UserSummary,
};

use super::frames::{self, reason_name, SEQ};
use super::{scripts, Cluster, RESEED_GAP};
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::hub::gate::Gate;
use crate::hub::subscribers::{Subscriber, Topic};
use crate::hub::{
    encode, validate_message, validate_new_room, Hub, StandingRoom, UserId, LATEST_ON_JOIN,
};
use crate::ids;

/// How long a join waits for this node to hear the room's channel.
const LISTEN_WITHIN: Duration = Duration::from_secs(3);
const MAX_ROOM_ID_BYTES: usize = 64;

pub struct ClusterRooms {
    cluster: Cluster,
    hub: Hub,
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
    /// Users inside through this node: sockets, and their summary JSON.
    users: Mutex<HashMap<UserId, (u32, String)>>,
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
}

impl Answer {
    fn from(mut reply: Vec<String>) -> Answer {
        match reply.first().map(String::as_str) {
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

impl ClusterRooms {
    pub fn new(cluster: Cluster, hub: Hub) -> Self {
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
        ClusterRooms {
            cluster,
            hub,
            held,
            unheard_leaves: Mutex::default(),
        }
    }

    fn close_at_once(&self) -> &'static str {
        if self.hub.settings().empty_grace.is_zero() {
            "1"
        } else {
            "0"
        }
    }

    pub async fn create(
        &self,
        creator: &Subscriber,
        creator_user: &UserSummary,
        name: &str,
        topic: Option<&str>,
        capacity: Option<u32>,
    ) -> Result<RoomView> {
        let (name, topic, capacity) = validate_new_room(name, topic, capacity)?;
        let created_ms = now_ms();
        let view = RoomView {
            id: ids::random("r"),
            kind: RoomKind::DropIn,
            name,
            topic,
            capacity,
            member_count: 1,
            host_id: Some(creator.user.to_string()),
            created_at: rfc3339(created_ms),
        };
        let room: Arc<str> = Arc::from(view.id.as_str());
        let topic = Topic::Room(room.clone());
        self.hub.subscribe(topic.clone(), creator.clone());
        let held = self.hold(&room, &view, created_ms);
        let summary = summary_json(creator_user);
        held.add_socket(creator.user, &summary);
        let opened = async {
            self.listen(&topic).await?;
            let quota = self.hub.settings().quota;
            let answer: Vec<String> = self
                .cluster
                .run(
                    &scripts::CREATE,
                    &args![
                        &*room,
                        "drop_in",
                        held.fields,
                        capacity,
                        created_ms,
                        0u64,
                        0u64,
                        creator.user,
                        summary,
                        quota.max_hosted,
                        quota.create_per_min,
                        created_ms,
                    ],
                )
                .await?;
            match answer.first().map(String::as_str) {
                Some("ok") => Ok(()),
                Some("hosted") => Err(quota.too_many_hosted()),
                Some("rate") => {
                    let wait: i64 = parse_number(answer.get(1))?;
                    Err(quota.too_many_created(wait.max(1) as u64))
                }
                _ => Err(Error::internal(format!("room create answered {answer:?}"))),
            }
        };
        if let Err(err) = opened.await {
            self.hub.unsubscribe(&topic, creator.conn);
            self.held.remove(&room);
            return Err(err);
        }
        Ok(view)
    }

    /// Opens an event's or a community's room unless it is open already.
    pub async fn ensure(&self, spec: StandingRoom) -> Result<RoomView> {
        check_room_id(&spec.id)?;
        let created_ms = now_ms();
        let template = RoomView {
            id: spec.id.clone(),
            kind: spec.kind,
            name: spec.name,
            topic: spec.topic,
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

    pub async fn join(
        &self,
        room_id: &str,
        joiner: &Subscriber,
        joiner_user: &UserSummary,
        since_seq: Option<u64>,
        already_joined: bool,
        on_joined: impl FnOnce(&RoomJoined),
    ) -> Result<()> {
        check_room_id(room_id)?;
        let room: Arc<str> = Arc::from(room_id);
        let topic = Topic::Room(room.clone());
        let gate = Arc::new(Gate::default());
        self.hub
            .subscribers()
            .resubscribe(topic.clone(), joiner.gated(gate.clone()));
        let undo = || {
            if !already_joined {
                self.hub.unsubscribe(&topic, joiner.conn);
            }
        };
        let answer = async {
            self.listen(&topic).await?;
            let summary = summary_json(joiner_user);
            let joined_frame = encode(&ServerFrame::RoomMemberJoined {
                room_id: room_id.to_owned(),
                user: joiner_user.clone(),
            });
            let since = since_seq.map(|s| s.to_string()).unwrap_or_default();
            let args = args![
                room_id,
                joiner.user,
                summary,
                joined_frame.as_str(),
                since,
                LATEST_ON_JOIN,
            ];
            let mut answer = Answer::from(self.cluster.run(&scripts::JOIN, &args).await?);
            if matches!(answer, Answer::Gone) && self.restore_if_lost(room_id).await? {
                answer = Answer::from(self.cluster.run(&scripts::JOIN, &args).await?);
            }
            Ok::<_, Error>((answer, summary))
        };
        let (fields, summary) = match answer.await {
            Ok((Answer::Ok(fields), summary)) => (fields, summary),
            Ok((Answer::Full, _)) => {
                undo();
                return Err(Error::RoomFull);
            }
            Ok(_) => {
                undo();
                return Err(Error::NotFound("room"));
            }
            Err(err) => {
                undo();
                return Err(err);
            }
        };
        let joined = parse_joined(&fields)?;
        let position: u64 = parse_number(fields.get(1))?;
        let created_ms = parse_number::<i64>(fields.get(4)).unwrap_or_else(|_| now_ms());
        let held = self.hold(&room, &joined.room, created_ms);
        held.seen(joined.last_seq, position);
        if !already_joined {
            held.add_socket(joiner.user, &summary);
        }
        gate.open(position, &joiner.outbox, || on_joined(&joined));
        Ok(())
    }

    pub async fn leave(&self, room_id: &str, conn: &Subscriber) -> Result<()> {
        let room: Arc<str> = Arc::from(room_id);
        // A socket taken out of the room (its user's access ended) left it
        // then; Redis has heard of it already.
        if !self.hub.unsubscribe(&Topic::Room(room.clone()), conn.conn) {
            return Ok(());
        }
        let Some(held) = self.held.get(room_id).map(|h| h.clone()) else {
            return Ok(());
        };
        let (last_socket, room_now_unheld) = held.remove_socket(conn.user);
        if room_now_unheld {
            self.held.remove_if(room_id, |_, h| h.is_empty());
        }
        if last_socket {
            if let Err(error) = self.tell_leave(room_id, conn.user).await {
                self.unheard_leaves
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((room, conn.user));
                return Err(error.into());
            }
        }
        Ok(())
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

    /// Takes `user` out of the room on every node; see [`scripts::REMOVE`].
    pub async fn remove(&self, room_id: &str, user: UserId, removed: &ServerFrame) -> Result<bool> {
        if check_room_id(room_id).is_err() {
            return Ok(false);
        }
        let frame = encode(removed);
        let inside: i64 = self
            .cluster
            .run(
                &scripts::REMOVE,
                &args![
                    room_id,
                    user,
                    frame.as_str(),
                    self.close_at_once(),
                    now_ms()
                ],
            )
            .await?;
        Ok(inside == 1)
    }

    pub async fn send(
        &self,
        room_id: &str,
        sender: &Subscriber,
        sender_user: &UserSummary,
        text: String,
        client_msg_id: Option<String>,
    ) -> Result<Sent> {
        validate_message(&text, client_msg_id.as_deref())?;
        check_room_id(room_id)?;
        let message_id = ids::random("m");
        let frame = encode(&ServerFrame::RoomMessage(RoomMessage {
            room_id: room_id.to_owned(),
            seq: u64::MAX,
            message_id: message_id.clone(),
            from: sender_user.clone(),
            text,
            sent_at: rfc3339(now_ms()),
            client_msg_id: client_msg_id.clone(),
        }));
        let (head, tail) = SEQ.split(frame.as_str());
        let history = self.hub.settings().history;
        let cid = client_msg_id.unwrap_or_default();
        let args = args![room_id, sender.user, head, tail, message_id, cid, history];
        let mut answer = Answer::from(self.cluster.run(&scripts::SEND, &args).await?);
        if matches!(answer, Answer::Gone) && self.restore_if_lost(room_id).await? {
            answer = Answer::from(self.cluster.run(&scripts::SEND, &args).await?);
        }
        match answer {
            Answer::Ok(fields) => {
                let seq = parse_number(fields.first())?;
                if let Some(held) = self.held.get(room_id) {
                    held.seen(seq, 0);
                }
                Ok(Sent {
                    seq,
                    message_id: fields.get(1).cloned().unwrap_or(message_id),
                })
            }
            Answer::Forbidden => Err(Error::Forbidden("join the room first")),
            Answer::Gone | Answer::Full => Err(Error::NotFound("room")),
        }
    }

    pub async fn typing(&self, room_id: &str, typist: &Subscriber) -> Result<()> {
        check_room_id(room_id)?;
        let (exists, member): (bool, bool) = self
            .cluster
            .pipe(
                redis::pipe()
                    .exists(self.room_key(room_id, ""))
                    .hexists(self.room_key(room_id, "|m"), typist.user),
            )
            .await?;
        if !exists {
            return Err(Error::NotFound("room"));
        }
        if !member {
            return Err(Error::Forbidden("join the room first"));
        }
        self.hub.publish_except(
            Topic::Room(Arc::from(room_id)),
            &ServerFrame::RoomTyping {
                room_id: room_id.to_owned(),
                user_id: typist.user.to_string(),
            },
            typist.user,
        );
        Ok(())
    }

    pub async fn close(&self, room_id: &str, reason: RoomClosedReason) -> Result<()> {
        check_room_id(room_id)?;
        let closed: i64 = self
            .cluster
            .run(&scripts::CLOSE, &args![room_id, reason_name(reason), ""])
            .await?;
        if closed == 0 {
            return Err(Error::NotFound("room"));
        }
        Ok(())
    }

    pub async fn info(&self, room_id: &str) -> Result<RoomView> {
        check_room_id(room_id)?;
        let mut views = self.views(&[room_id.to_owned()]).await?;
        views.pop().flatten().ok_or(Error::NotFound("room"))
    }

    pub async fn exists(&self, room_id: &str) -> Result<bool> {
        if check_room_id(room_id).is_err() {
            return Ok(false);
        }
        Ok(self
            .cluster
            .query(redis::cmd("EXISTS").arg(self.room_key(room_id, "")))
            .await?)
    }

    pub async fn has_member(&self, room_id: &str, user: UserId) -> Result<bool> {
        if check_room_id(room_id).is_err() {
            return Ok(false);
        }
        Ok(self
            .cluster
            .query(
                redis::cmd("HEXISTS")
                    .arg(self.room_key(room_id, "|m"))
                    .arg(user),
            )
            .await?)
    }

    /// Open drop-in rooms across the cluster, newest first, after the
    /// `(created_at, id)` key of the last room a previous page served.
    pub async fn page(
        &self,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<(i64, RoomView)>> {
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
        let cutoff = now_ms() - self.hub.settings().empty_grace.as_millis() as i64;
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
            .map(|(user, (_, summary))| (*user, summary.clone()))
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

    async fn listen(&self, topic: &Topic) -> Result<()> {
        self.cluster
            .bus()
            .listening(topic, LISTEN_WITHIN)
            .await
            .map_err(|_| Error::Unavailable("redis"))
    }

    fn room_key(&self, room_id: &str, suffix: &str) -> String {
        format!("{}:r:{room_id}{suffix}", self.cluster.prefix())
    }
}

impl Held {
    fn add_socket(&self, user: UserId, summary: &str) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .entry(user)
            .or_insert_with(|| (0, summary.to_owned()))
            .0 += 1;
    }

    /// Returns whether that was the user's last socket here, and whether
    /// this node now holds nobody in the room.
    fn remove_socket(&self, user: UserId) -> (bool, bool) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let last = match users.get_mut(&user) {
            Some((sockets, _)) if *sockets > 1 => {
                *sockets -= 1;
                false
            }
            Some(_) => {
                users.remove(&user);
                true
            }
            None => false,
        };
        (last, users.is_empty())
    }

    /// Drops every socket of `user`: they were taken out of the room.
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

/// Room ids go into Redis keys, which use `|` and the prefix's `:` as
/// separators; anything else is no room of ours.
fn check_room_id(room_id: &str) -> Result<()> {
    let fits = (1..=MAX_ROOM_ID_BYTES).contains(&room_id.len())
        && room_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
    if fits {
        Ok(())
    } else {
        Err(Error::NotFound("room"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_that_could_meet_other_keys_are_refused() {
        assert!(check_room_id("event:12").is_ok());
        assert!(check_room_id("r_AbC123").is_ok());
        for bad in ["", "a|m", "a b", "x".repeat(65).as_str(), "é"] {
            assert!(check_room_id(bad).is_err(), "{bad}");
        }
    }
}
