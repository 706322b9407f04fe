//! Rooms as handlers see them, whichever engine keeps their state.
//!
//! This is the node side of every room op, written once: it validates
//! input, turns an engine's outcome into the protocol's answer, and keeps
//! per-socket membership, which is the hub's subscriber table itself: a
//! user joins a room's engine with their first socket on this node and
//! leaves it with their last. A join listens to the room before it asks
//! the engine, and gates the socket's room events until its reply is
//! queued, so nothing is missed and nothing comes twice. What the room
//! state is and how it changes is the engine's (`engine`), in memory on a
//! node alone (`memory`) or in Redis for a cluster (`cluster::rooms`).
//!
//! It must not keep room state of its own, or choose an engine: the app
//! does that once, when it builds the node.

pub mod engine;
pub mod memory;
pub mod quota;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use meshi_protocol::{
    Room as RoomView, RoomClosedReason, RoomJoined, RoomKind, RoomMessage, RoomRemovedReason, Sent,
    ServerFrame, UserSummary,
};

pub use engine::{RoomEngine, RoomSettings, StandingRoom, LATEST_ON_JOIN};

use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::hub::gate::Gate;
use crate::hub::subscribers::{Subscriber, Topic, Unsubscribed};
use crate::hub::{encode, Hub, UserId};
use crate::ids;
use engine::{Creating, Joining, Membership, Replacing, Sending};

/// How long a join waits for this node to hear the room's channel.
const LISTEN_WITHIN: Duration = Duration::from_secs(3);
/// Times a revision reads the message again after losing a race with
/// another revision of it.
const REVISE_TRIES: usize = 3;

/// A change to a message after it was sent.
pub enum Revision {
    /// New text from its author.
    Edit(String),
    /// Deleted by this user: its author, a moderator or the room's host.
    Delete(UserId),
    /// Its author deleted their account: deleted, and shown from
    /// `shown_as` from now on.
    Erase {
        author: UserId,
        shown_as: UserSummary,
    },
}

fn deleted(kept: &RoomMessage, by: UserId) -> ServerFrame {
    ServerFrame::RoomMessageDeleted {
        room_id: kept.room_id.clone(),
        message_id: kept.message_id.clone(),
        seq: kept.seq,
        deleted_by: by.to_string(),
    }
}

impl Revision {
    /// The message as revised, and the event telling the room.
    fn apply(&self, kept: &RoomMessage, now_ms: i64) -> (RoomMessage, ServerFrame) {
        let mut revised = kept.clone();
        let event = match self {
            Revision::Edit(text) => {
                let edited_at = rfc3339(now_ms);
                revised.text = text.clone();
                revised.edited_at = Some(edited_at.clone());
                ServerFrame::RoomMessageEdited {
                    room_id: kept.room_id.clone(),
                    message_id: kept.message_id.clone(),
                    seq: kept.seq,
                    text: text.clone(),
                    edited_at,
                }
            }
            Revision::Delete(by) => {
                revised.text = String::new();
                revised.deleted = true;
                deleted(kept, *by)
            }
            Revision::Erase { author, shown_as } => {
                revised.text = String::new();
                revised.deleted = true;
                revised.from = shown_as.clone();
                deleted(kept, *author)
            }
        };
        (revised, event)
    }
}

#[derive(Clone)]
pub struct Rooms {
    hub: Hub,
    engine: Arc<dyn RoomEngine>,
    settings: RoomSettings,
}

impl Rooms {
    pub fn new(hub: Hub, engine: Arc<dyn RoomEngine>, settings: RoomSettings) -> Self {
        Rooms {
            hub,
            engine,
            settings,
        }
    }

    /// Opens a drop-in room with the creator inside as host.
    pub async fn create(
        &self,
        creator: &Subscriber,
        creator_user: &UserSummary,
        name: &str,
        topic: Option<&str>,
        capacity: Option<u32>,
    ) -> Result<RoomView> {
        let (name, topic, capacity) = validate::new_room(name, topic, capacity)?;
        let created_ms = now_ms();
        let room = RoomView {
            id: ids::random("r"),
            kind: RoomKind::DropIn,
            name,
            topic,
            capacity,
            member_count: 1,
            host_id: Some(creator.user.to_string()),
            created_at: rfc3339(created_ms),
        };
        let topic = Topic::Room(Arc::from(room.id.as_str()));
        self.hub.subscribe(topic.clone(), creator.clone());
        let opened = async {
            self.listen(&topic).await?;
            let quota = &self.settings.quota;
            match self
                .engine
                .create(&room, created_ms, creator.user, creator_user)
                .await?
            {
                Creating::Created => Ok(()),
                Creating::HostsTooMany => Err(quota.too_many_hosted()),
                Creating::TooSoon { wait_ms } => Err(quota.too_many_created(wait_ms)),
            }
        };
        if let Err(err) = opened.await {
            self.hub.unsubscribe(&topic, creator.conn);
            return Err(err);
        }
        Ok(room)
    }

    /// Opens the room of an event or a community unless it is open.
    pub async fn ensure(&self, spec: StandingRoom) -> Result<RoomView> {
        validate::room_id(&spec.id)?;
        self.engine.ensure(&spec, now_ms()).await
    }

    /// Joins a socket to a room. `already_joined` says this socket is in
    /// the room already, which makes the join a plain re-read. `on_joined`
    /// queues the reply before any room event that follows it.
    pub async fn join(
        &self,
        room_id: &str,
        joiner: &Subscriber,
        joiner_user: &UserSummary,
        since_seq: Option<u64>,
        already_joined: bool,
        on_joined: impl FnOnce(&RoomJoined),
    ) -> Result<()> {
        validate::room_id(room_id)?;
        let topic = Topic::Room(Arc::from(room_id));
        let gate = Arc::new(Gate::default());
        self.hub
            .subscribers()
            .resubscribe(topic.clone(), joiner.gated(gate.clone()));
        let joining = async {
            self.listen(&topic).await?;
            self.engine
                .join(room_id, joiner.user, joiner_user, since_seq)
                .await
        };
        let refusal = match joining.await {
            Ok(Joining::Joined(joined)) => {
                gate.open(joined.position, &joiner.outbox, || on_joined(&joined.reply));
                return Ok(());
            }
            Ok(Joining::Full) => Error::RoomFull,
            Ok(Joining::Banned { .. }) => Error::Forbidden("you are banned from this room for now"),
            Ok(Joining::NoRoom) => Error::NotFound("room"),
            Err(err) => err,
        };
        if already_joined {
            // The socket stays in the room as it was: what its gate held
            // meanwhile it gets now, and later events pass.
            gate.open(0, &joiner.outbox, || {});
        } else {
            self.hub.unsubscribe(&topic, joiner.conn);
        }
        Err(refusal)
    }

    /// Takes a socket out of a room; its user leaves the room with their
    /// last socket on this node.
    pub async fn leave(&self, room_id: &str, conn: &Subscriber) -> Result<()> {
        let topic = Topic::Room(Arc::from(room_id));
        let subscribers = self.hub.subscribers();
        // A socket taken out of the room already (its user's access ended)
        // left it then.
        if subscribers.unsubscribe_counting(&topic, conn.conn) != Unsubscribed::LastOfUser {
            return Ok(());
        }
        let back = || subscribers.has_user(&topic, conn.user);
        self.engine.leave(room_id, conn.user, &back).await
    }

    /// Takes `user` out of a room that goes on without them; each of their
    /// sockets in it gets `removed`, and with `ban_until_ms` they may not
    /// join again before then. Returns whether they were inside; a room
    /// that is not open has nobody to take out.
    pub async fn remove(
        &self,
        room_id: &str,
        user: UserId,
        removed: &ServerFrame,
        ban_until_ms: Option<i64>,
    ) -> Result<bool> {
        if validate::room_id(room_id).is_err() {
            return Ok(false);
        }
        self.engine
            .remove(room_id, user, encode(removed), ban_until_ms)
            .await
    }

    /// Kicks `user` out of a room, banned from it for `ban` if given; who
    /// may do so is the caller's to check.
    pub async fn kick(&self, room_id: &str, user: UserId, ban: Option<Duration>) -> Result<()> {
        let until = ban.map(|ban| now_ms() + ban.as_millis() as i64);
        let removed = ServerFrame::RoomRemoved {
            room_id: room_id.to_owned(),
            reason: RoomRemovedReason::Kicked,
            until: until.map(rfc3339),
        };
        self.remove(room_id, user, &removed, until).await?;
        Ok(())
    }

    /// Sends a message to everyone in the room, the sender included.
    pub async fn send(
        &self,
        room_id: &str,
        sender: &Subscriber,
        sender_user: &UserSummary,
        text: String,
        client_msg_id: Option<String>,
    ) -> Result<Sent> {
        validate::message(&text, client_msg_id.as_deref())?;
        validate::room_id(room_id)?;
        let message = RoomMessage {
            room_id: room_id.to_owned(),
            seq: 0,
            message_id: ids::random("m"),
            from: sender_user.clone(),
            text,
            sent_at: rfc3339(now_ms()),
            client_msg_id,
            edited_at: None,
            deleted: false,
        };
        match self.engine.send(room_id, sender.user, message).await? {
            Sending::Sent(sent) => Ok(sent),
            Sending::NotMember => Err(Error::Forbidden("join the room first")),
            Sending::NoRoom => Err(Error::NotFound("room")),
        }
    }

    /// A message still in the room's history window and not deleted.
    pub async fn find_message(&self, room_id: &str, message_id: &str) -> Result<RoomMessage> {
        validate::room_id(room_id)?;
        self.engine
            .message(room_id, message_id)
            .await?
            .filter(|message| !message.deleted)
            .ok_or(Error::NotFound("message"))
    }

    /// Revises a message in the room's history window and tells everyone
    /// inside. `may` says from the message whether the caller may; it is
    /// asked again whenever the message is read again.
    pub async fn revise(
        &self,
        room_id: &str,
        message_id: &str,
        revision: Revision,
        may: impl Fn(&RoomMessage) -> Result<()>,
    ) -> Result<()> {
        if let Revision::Edit(text) = &revision {
            validate::text(text)?;
        }
        for _ in 0..REVISE_TRIES {
            let kept = self.find_message(room_id, message_id).await?;
            may(&kept)?;
            let (revised, event) = revision.apply(&kept, now_ms());
            match self
                .engine
                .replace(room_id, &kept, &revised, encode(&event))
                .await?
            {
                Replacing::Replaced => return Ok(()),
                Replacing::Stale => continue,
                Replacing::NoRoom => return Err(Error::NotFound("room")),
            }
        }
        Err(Error::Conflict(
            "the message changed while it was being revised; try again".into(),
        ))
    }

    /// Deletes every message `author` has in any room's history window,
    /// showing them from `shown_as`: their account is gone. Returns how
    /// many messages that was. A room closing meanwhile is skipped.
    pub async fn erase_author(&self, author: UserId, shown_as: &UserSummary) -> Result<usize> {
        let author_id = author.to_string();
        let erase = Revision::Erase {
            author,
            shown_as: shown_as.clone(),
        };
        let mut erased = 0;
        for room_id in self.engine.rooms_with_history().await? {
            for kept in self.engine.history(&room_id).await? {
                if kept.from.id != author_id || kept.deleted {
                    continue;
                }
                let (revised, event) = erase.apply(&kept, now_ms());
                // Nobody else edits an author's message, and the author is
                // gone: the message stays as read, short of a moderator
                // deleting it meanwhile, which is as good.
                if let Replacing::Replaced = self
                    .engine
                    .replace(&room_id, &kept, &revised, encode(&event))
                    .await?
                {
                    erased += 1;
                }
            }
        }
        Ok(erased)
    }

    /// Tells the room's other members that this user is typing.
    pub async fn typing(&self, room_id: &str, typist: &Subscriber) -> Result<()> {
        validate::room_id(room_id)?;
        match self.engine.membership(room_id, typist.user).await? {
            Membership::Member => {}
            Membership::Outsider => return Err(Error::Forbidden("join the room first")),
            Membership::NoRoom => return Err(Error::NotFound("room")),
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

    /// Closes a room for everyone inside, telling them why.
    pub async fn close(&self, room_id: &str, reason: RoomClosedReason) -> Result<()> {
        validate::room_id(room_id)?;
        if self.engine.close(room_id, reason).await? {
            Ok(())
        } else {
            Err(Error::NotFound("room"))
        }
    }

    /// An open room as the directory shows it.
    pub async fn info(&self, room_id: &str) -> Result<RoomView> {
        validate::room_id(room_id)?;
        self.engine
            .info(room_id)
            .await?
            .ok_or(Error::NotFound("room"))
    }

    pub async fn exists(&self, room_id: &str) -> Result<bool> {
        if validate::room_id(room_id).is_err() {
            return Ok(false);
        }
        self.engine.exists(room_id).await
    }

    pub async fn has_member(&self, room_id: &str, user: UserId) -> Result<bool> {
        if validate::room_id(room_id).is_err() {
            return Ok(false);
        }
        Ok(self.engine.membership(room_id, user).await? == Membership::Member)
    }

    /// Open drop-in rooms, newest first, after the `(created_at, id)` key
    /// of the last room a previous page served; each with its key.
    pub async fn page(
        &self,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<(i64, RoomView)>> {
        self.engine.page(after, limit).await
    }

    async fn listen(&self, topic: &Topic) -> Result<()> {
        if self.hub.listening(topic, LISTEN_WITHIN).await {
            Ok(())
        } else {
            Err(Error::Unavailable("redis"))
        }
    }
}
