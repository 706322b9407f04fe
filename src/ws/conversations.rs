//! Socket ops of matched pairs: messages, history, read markers, typing
//! and presence.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use meshi_protocol::{
    DmHistoryOk, Empty, Presence as PresenceView, PresenceList, PresenceStatus, Ref, Sent,
    ServerFrame,
};

use super::conn::{Connection, Session};
use super::dispatch::{data, Reply};
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::hub::frame::ok_reply;
use crate::hub::subscribers::Topic;
use crate::store::{DmOutcome, NewDm, Pair};
use crate::{dm, ids, revisions};

/// A typist's partner hears of it at most this often per conversation.
const TYPING_INTERVAL: Duration = Duration::from_secs(1);
const MAX_PRESENCE_QUERY: usize = 100;
const MAX_HISTORY: u32 = 100;
const DEFAULT_HISTORY: u32 = 50;

fn conversation_id(raw: &str) -> Result<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(Error::NotFound("conversation"))
}

fn seq_value(field: &str, seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::bad(field, "is out of range"))
}

impl Connection {
    fn session(&self) -> Result<&Session> {
        self.session
            .as_ref()
            .ok_or(Error::Unauthenticated("say hello first"))
    }

    fn me(&self) -> Result<i64> {
        self.session().map(|s| s.identity.user.id)
    }

    /// The conversation's pair, if the caller is in it. Pairs never change,
    /// so each socket asks the database once per conversation.
    async fn pair(&mut self, raw_id: &str) -> Result<(i64, Pair)> {
        let id = conversation_id(raw_id)?;
        let me = self.me()?;
        if let Some(pair) = self.pairs.get(&id) {
            return Ok((id, *pair));
        }
        let pair = self
            .state
            .store
            .conversation_pair(id)
            .await?
            .ok_or(Error::NotFound("conversation"))?;
        if !pair.includes(me) {
            return Err(Error::Forbidden("you are not in this conversation"));
        }
        self.pairs.insert(id, pair);
        Ok((id, pair))
    }

    pub(super) async fn dm_send(
        &mut self,
        raw_id: &str,
        text: String,
        client_msg_id: Option<String>,
        reference: Option<&Ref>,
    ) -> Result<Reply> {
        let id = conversation_id(raw_id)?;
        crate::rooms::validate::message(&text, client_msg_id.as_deref())?;
        let sender = &self
            .session
            .as_ref()
            .ok_or(Error::Unauthenticated("say hello first"))?
            .user;
        let message = NewDm {
            conversation_id: id,
            sender_id: self.me()?,
            sender_handle: sender.handle.clone(),
            sender_display_name: sender.display_name.clone(),
            text,
            client_msg_id,
            message_id: ids::random("d"),
            sent_at: now_ms(),
        };
        let outbox = self.outbox.clone();
        let reference = reference.cloned();
        let acknowledge: dm::Acknowledge = Box::new(move |stored| {
            let sent = Sent {
                message_id: stored.message_id.clone(),
                seq: stored.seq as u64,
            };
            if let Some(reference) = reference {
                outbox.push(ok_reply(&reference, &sent));
            }
        });
        match self.state.dms.send(message, acknowledge).await? {
            DmOutcome::Stored { .. } | DmOutcome::Duplicate(_) => Ok(Reply::Queued),
            DmOutcome::NotParticipant => Err(Error::Forbidden("you are not in this conversation")),
            DmOutcome::NoConversation => Err(Error::NotFound("conversation")),
            DmOutcome::Closed => Err(crate::pairing::CLOSED),
        }
    }

    /// `dm.edit`: the author rewrites one of their messages.
    pub(super) async fn dm_edit(
        &mut self,
        raw_id: &str,
        message_id: &str,
        text: String,
    ) -> Result<Reply> {
        let id = conversation_id(raw_id)?;
        let identity = &self.session()?.identity;
        revisions::edit_dm(&self.state, identity, id, message_id, text).await?;
        data(&Empty {})
    }

    /// `dm.delete`: the author deletes one of their messages.
    pub(super) async fn dm_delete(&mut self, raw_id: &str, message_id: &str) -> Result<Reply> {
        let id = conversation_id(raw_id)?;
        let identity = &self.session()?.identity;
        revisions::delete_dm(&self.state, identity, id, message_id).await?;
        data(&Empty {})
    }

    pub(super) async fn dm_history(
        &mut self,
        raw_id: &str,
        after_seq: Option<u64>,
        before_seq: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Reply> {
        let limit = limit.unwrap_or(DEFAULT_HISTORY);
        if !(1..=MAX_HISTORY).contains(&limit) {
            return Err(Error::bad("limit", "must be 1-100"));
        }
        let after = after_seq.map(|s| seq_value("after_seq", s)).transpose()?;
        let before = before_seq.map(|s| seq_value("before_seq", s)).transpose()?;
        let (id, _) = self.pair(raw_id).await?;
        crate::pairing::require_readable(&self.state, id, self.me()?).await?;
        let rows = self
            .state
            .store
            .dm_history(id, after, before, limit)
            .await?;
        data(&DmHistoryOk {
            messages: rows.iter().map(dm::view).collect(),
        })
    }

    pub(super) async fn dm_read(&mut self, raw_id: &str, seq: u64) -> Result<Reply> {
        let seq = seq_value("seq", seq)?;
        let (id, pair) = self.pair(raw_id).await?;
        let me = self.me()?;
        crate::pairing::require_writable(&self.state, id, me).await?;
        let marker = self
            .state
            .store
            .mark_dm_read(id, me, seq)
            .await?
            .ok_or(Error::Forbidden("you are not in this conversation"))?;
        self.state.hub.publish(
            Topic::User(pair.other(me)),
            &ServerFrame::DmRead {
                conversation_id: id.to_string(),
                user_id: me.to_string(),
                seq: marker as u64,
            },
        );
        data(&Empty {})
    }

    pub(super) async fn dm_typing(&mut self, raw_id: &str) -> Result<Reply> {
        let (id, pair) = self.pair(raw_id).await?;
        let me = self.me()?;
        let now = Instant::now();
        let recently = self
            .typing_forwarded
            .get(&id)
            .is_some_and(|at| now.duration_since(*at) < TYPING_INTERVAL);
        if !recently {
            crate::pairing::require_writable(&self.state, id, me).await?;
            self.typing_forwarded.insert(id, now);
            self.state.hub.publish(
                Topic::User(pair.other(me)),
                &ServerFrame::DmTyping {
                    conversation_id: id.to_string(),
                    user_id: me.to_string(),
                },
            );
        }
        data(&Empty {})
    }

    /// Presence of the asked users the caller shares a match or a room
    /// with; anyone else, and anyone either blocks, is left out of the
    /// answer.
    pub(super) async fn presence_query(&mut self, user_ids: Vec<String>) -> Result<Reply> {
        if user_ids.len() > MAX_PRESENCE_QUERY {
            return Err(Error::bad("user_ids", "at most 100 users"));
        }
        let me = self.me()?;
        let partners: HashSet<i64> = self
            .state
            .store
            .partner_ids(me)
            .await?
            .into_iter()
            .collect();
        let blocked = self.state.store.blocked_either_way(me).await?;
        let rooms = &self.state.rooms;
        let mut asked: Vec<i64> = Vec::with_capacity(user_ids.len());
        for id in user_ids.iter().filter_map(|id| id.parse::<i64>().ok()) {
            if asked.contains(&id) || blocked.contains(&id) {
                continue;
            }
            let mut may_ask = id == me || partners.contains(&id);
            for room in &self.joined {
                if may_ask {
                    break;
                }
                may_ask = rooms.has_member(room, id).await?;
            }
            if may_ask {
                asked.push(id);
            }
        }
        let online = self.state.presence.online(&asked).await?;
        let offline: Vec<i64> = asked
            .iter()
            .zip(&online)
            .filter(|(_, online)| !**online)
            .map(|(id, _)| *id)
            .collect();
        let last_seen = self.state.store.last_seen(&offline).await?;
        let presence = asked
            .iter()
            .zip(&online)
            .filter_map(|(&id, &online)| {
                if online {
                    return Some(PresenceView {
                        user_id: id.to_string(),
                        status: PresenceStatus::Online,
                        last_seen_at: None,
                    });
                }
                // Users that do not exist have no row and are left out.
                let (_, seen) = last_seen.iter().find(|(user, _)| *user == id)?;
                Some(PresenceView {
                    user_id: id.to_string(),
                    status: PresenceStatus::Offline,
                    last_seen_at: seen.map(rfc3339),
                })
            })
            .collect();
        data(&PresenceList { presence })
    }
}
