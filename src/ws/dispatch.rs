//! One function per op. Each returns the `data` of its `ok` reply, already
//! serialized, or an error; the envelope is the caller's business.

use std::collections::HashSet;
use std::sync::Arc;

use meshi_protocol::{
    close, Empty, Header, HelloOk, PingOk, Ref, Request, RoomCreated, RoomList, Sent,
};
use serde::Serialize;
use tracing::Instrument;

use super::conn::{Connection, Flow, Session};
use crate::auth::revocation::{REVOKED, SUSPENDED};
use crate::clock::{now_ms, rfc3339};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hub::subscribers::{Subscribers, Topic};
use crate::hub::ConnId;
use crate::{revisions, standing};

/// How an op answered.
pub(super) enum Reply {
    /// The `data` of the `ok` reply, serialized.
    Data(Box<serde_json::value::RawValue>),
    /// The op queued its own reply (to order it among pushes).
    Queued,
}

pub(super) fn data<T: Serialize>(value: &T) -> Result<Reply> {
    serde_json::value::to_raw_value(value)
        .map(Reply::Data)
        .map_err(Error::internal)
}

impl Connection {
    pub(super) async fn handle(&mut self, text: &str) -> Flow {
        // Tagged enums would also read `["ping"]`; only objects are frames.
        let is_object = text.trim_start().starts_with('{');
        let Some(header) = is_object
            .then(|| serde_json::from_str::<Header>(text).ok())
            .flatten()
        else {
            count_unreadable();
            self.reply_error(
                None,
                &Error::BadRequest("a frame must be a JSON object with a valid ref".into()),
            );
            return Flow::Continue;
        };
        let reference = header.reference;
        let request = match serde_json::from_str::<Request>(text) {
            Ok(request) => request,
            Err(err) => {
                count_unreadable();
                self.reply_error(reference, &Error::BadRequest(describe(&err)));
                return Flow::Continue;
            }
        };
        let op = request.op();
        let is_hello = matches!(request, Request::Hello { .. });
        let span = tracing::debug_span!("op", op);
        let started = std::time::Instant::now();
        let result = self.run(request, reference.as_ref()).instrument(span).await;
        observe(op, started, &result);
        match result {
            Ok(Reply::Data(data)) => self.reply_ok(reference.as_ref(), &data),
            Ok(Reply::Queued) => {}
            Err(err) => {
                self.reply_error(reference, &err);
                if is_hello && matches!(err, Error::RateLimited { .. }) {
                    return Flow::Close(close::RATE_LIMIT_ABUSE, "too many sockets for this user");
                }
                if matches!(err, Error::Unauthenticated(REVOKED)) {
                    return Flow::Close(close::TOKEN_ENDED, REVOKED);
                }
                // The token is good but its user may not use it yet; like
                // a revoked one, it is not to be retried as it is.
                if is_hello && matches!(err, Error::Suspended { .. }) {
                    return Flow::Close(close::TOKEN_ENDED, SUSPENDED);
                }
                if is_hello && matches!(err, Error::Unauthenticated(_)) {
                    return Flow::Close(close::AUTH_FAILED, "authentication failed");
                }
            }
        }
        Flow::Continue
    }

    async fn run(&mut self, request: Request, reference: Option<&Ref>) -> Result<Reply> {
        if let Request::Hello { token } = &request {
            return self.hello(token).await;
        }
        let Some(session) = self.session.as_ref() else {
            return Err(Error::Unauthenticated("say hello first"));
        };
        let rooms = self.state.rooms.clone();
        match request {
            Request::Hello { .. } => unreachable!("answered above"),
            Request::Ping => data(&PingOk {
                server_time: rfc3339(now_ms()),
            }),
            Request::AuthRefresh { token } => {
                let identity = self.state.accounts.authenticate(&token).await?;
                if identity.user.id != session.identity.user.id {
                    return Err(Error::Forbidden("the token belongs to another user"));
                }
                self.replace_identity(identity);
                self.hear_own_topics().await;
                self.check_not_revoked_meanwhile().await?;
                data(&Empty {})
            }
            Request::RoomCreate {
                name,
                topic,
                capacity,
            } => {
                check_room_cap(
                    &mut self.joined,
                    self.state.hub.subscribers(),
                    self.id,
                    &self.state.config,
                )?;
                let room = rooms
                    .create(
                        &session.subscriber,
                        &session.user,
                        &name,
                        topic.as_deref(),
                        capacity,
                    )
                    .await?;
                self.joined.insert(Arc::from(room.id.as_str()));
                data(&RoomCreated { room })
            }
            Request::RoomList => data(&RoomList {
                rooms: standing::rooms_for(
                    &self.state.store,
                    &rooms,
                    session.identity.user.id,
                    self.state.config.room_list_max as usize,
                )
                .await?,
            }),
            Request::RoomJoin { room_id, since_seq } => {
                let subscribers = self.state.hub.subscribers();
                let already_joined = still_joined(&mut self.joined, subscribers, self.id, &room_id);
                if !already_joined {
                    check_room_cap(&mut self.joined, subscribers, self.id, &self.state.config)?;
                }
                let user = session.identity.user.id;
                standing::admit(&self.state.store, &rooms, &room_id, user).await?;
                let outbox = self.outbox.clone();
                rooms
                    .join(
                        &room_id,
                        &session.subscriber,
                        &session.user,
                        since_seq,
                        already_joined,
                        |joined| {
                            if let Some(reference) = reference {
                                outbox.push(crate::hub::frame::ok_reply(reference, joined));
                            }
                        },
                    )
                    .await?;
                self.joined.insert(Arc::from(room_id.as_str()));
                if standing::is_standing(&room_id)
                    && !standing::still_admitted(&self.state.store, &room_id, user).await?
                {
                    standing::end_access(&rooms, &room_id, user).await?;
                }
                Ok(Reply::Queued)
            }
            Request::RoomLeave { room_id } => {
                if self.joined.remove(room_id.as_str()) {
                    rooms.leave(&room_id, &session.subscriber).await?;
                } else if !rooms.exists(&room_id).await? {
                    return Err(Error::NotFound("room"));
                }
                data(&Empty {})
            }
            Request::RoomSend {
                room_id,
                text,
                client_msg_id,
            } => {
                let sent: Sent = rooms
                    .send(
                        &room_id,
                        &session.subscriber,
                        &session.user,
                        text,
                        client_msg_id,
                    )
                    .await?;
                data(&sent)
            }
            Request::RoomTyping { room_id } => {
                rooms.typing(&room_id, &session.subscriber).await?;
                data(&Empty {})
            }
            Request::RoomEdit {
                room_id,
                message_id,
                text,
            } => {
                revisions::edit_room_message(
                    &self.state,
                    &session.identity,
                    &room_id,
                    &message_id,
                    text,
                )
                .await?;
                data(&Empty {})
            }
            Request::RoomDelete {
                room_id,
                message_id,
            } => {
                revisions::delete_room_message(
                    &self.state,
                    &session.identity,
                    &room_id,
                    &message_id,
                )
                .await?;
                data(&Empty {})
            }
            Request::RoomKick {
                room_id,
                user_id,
                ban_secs,
                reason,
            } => {
                self.room_kick(&session.identity, &room_id, &user_id, ban_secs, reason)
                    .await
            }
            Request::RoomClose { room_id } => self.room_close(&session.identity, &room_id).await,
            Request::RoomsWatch => {
                // Subscribe before listing, so no change falls between.
                self.state
                    .hub
                    .subscribe(Topic::Directory, session.subscriber.clone());
                self.watching = true;
                data(&RoomList {
                    rooms: standing::rooms_for(
                        &self.state.store,
                        &rooms,
                        session.identity.user.id,
                        self.state.config.room_list_max as usize,
                    )
                    .await?,
                })
            }
            Request::DmSend {
                conversation_id,
                text,
                client_msg_id,
            } => {
                self.dm_send(&conversation_id, text, client_msg_id, reference)
                    .await
            }
            Request::DmHistory {
                conversation_id,
                after_seq,
                before_seq,
                limit,
            } => {
                self.dm_history(&conversation_id, after_seq, before_seq, limit)
                    .await
            }
            Request::DmEdit {
                conversation_id,
                message_id,
                text,
            } => self.dm_edit(&conversation_id, &message_id, text).await,
            Request::DmDelete {
                conversation_id,
                message_id,
            } => self.dm_delete(&conversation_id, &message_id).await,
            Request::DmRead {
                conversation_id,
                seq,
            } => self.dm_read(&conversation_id, seq).await,
            Request::DmTyping { conversation_id } => self.dm_typing(&conversation_id).await,
            Request::PresenceQuery { user_ids } => self.presence_query(user_ids).await,
        }
    }

    /// The token was checked before this socket listened for its
    /// revocation; a logout in between was announced to nobody here. Now
    /// that it listens, one look at the record closes that gap.
    async fn check_not_revoked_meanwhile(&self) -> Result<()> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        if self.state.accounts.has_ended(&session.identity).await? {
            return Err(Error::Unauthenticated(REVOKED));
        }
        Ok(())
    }

    async fn hello(&mut self, token: &str) -> Result<Reply> {
        if self.session.is_some() {
            return Err(Error::BadRequest(
                "hello was already said on this socket".into(),
            ));
        }
        let identity = self.state.accounts.authenticate(token).await?;
        let cap = self.state.config.max_sockets_per_user;
        let open = self
            .state
            .hub
            .subscribers()
            .count(&Topic::User(identity.user.id));
        if cap != 0 && open >= cap {
            metrics::counter!("meshi_sockets_refused_total", "limit" => "per_user").increment(1);
            return Err(Error::RateLimited {
                limit: format!(
                    "this user already has {cap} sockets open (MESHI_MAX_SOCKETS_PER_USER)"
                )
                .into(),
                retry_after_ms: 5_000,
            });
        }
        let session_id = identity.session_label();
        let Session { user, .. } = self.open_session(identity);
        let user = user.clone();
        self.hear_own_topics().await;
        self.check_not_revoked_meanwhile().await?;
        data(&HelloOk {
            user,
            session_id,
            heartbeat_ms: self.state.config.heartbeat_ms,
        })
    }
}

/// A frame that names no op the server knows, or not readably.
fn count_unreadable() {
    metrics::counter!("meshi_ops_total", "op" => "unknown", "result" => "bad_request").increment(1);
}

/// `meshi_op_seconds{op}` and `meshi_ops_total{op, result}`, the result
/// being `ok` or the error's code: both label sets are fixed by the
/// protocol, whatever the clients send.
fn observe(op: &'static str, started: std::time::Instant, result: &Result<Reply>) {
    metrics::histogram!("meshi_op_seconds", "op" => op).record(started.elapsed().as_secs_f64());
    let outcome = match result {
        Ok(_) => "ok",
        Err(err) => err.code().as_str(),
    };
    metrics::counter!("meshi_ops_total", "op" => op, "result" => outcome).increment(1);
}

/// Whether a socket is still in a room it joined: it is not once its user
/// was taken out (their access ended), and the room is forgotten then.
fn still_joined(
    joined: &mut HashSet<Arc<str>>,
    subscribers: &Subscribers,
    conn: ConnId,
    room_id: &str,
) -> bool {
    if !joined.contains(room_id) {
        return false;
    }
    if subscribers.has(&Topic::Room(Arc::from(room_id)), conn) {
        return true;
    }
    joined.remove(room_id);
    false
}

/// Refuses one more room for a socket in `MESHI_MAX_ROOMS_PER_SOCKET`
/// rooms, counting only rooms it is still in.
fn check_room_cap(
    joined: &mut HashSet<Arc<str>>,
    subscribers: &Subscribers,
    conn: ConnId,
    config: &Config,
) -> Result<()> {
    let cap = config.max_rooms_per_socket;
    if cap == 0 || joined.len() < cap {
        return Ok(());
    }
    joined.retain(|room| subscribers.has(&Topic::Room(room.clone()), conn));
    if joined.len() < cap {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "this socket is in {cap} rooms, the most one socket may join \
         (MESHI_MAX_ROOMS_PER_SOCKET); leave one first"
    )))
}

/// A serde error in words a client can act on, without the line/column
/// noise of a one-line frame.
fn describe(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    if err.is_syntax() || err.is_eof() {
        format!("invalid JSON: {text}")
    } else {
        text.to_owned()
    }
}
