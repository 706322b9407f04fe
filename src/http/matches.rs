//! The caller's matches and conversations.

use axum::extract::State;
use axum::Json;
use meshi_protocol::UserSummary;
use serde::{Deserialize, Serialize};

use super::extract::{Caller, Params};
use super::page::{self, decode_cursor, Page};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::error::Result;
use crate::profile::summary;

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

impl PageQuery {
    fn resolve(&self) -> Result<(u32, Option<i64>)> {
        let limit = page::limit(self.limit)?;
        let before = self
            .cursor
            .as_deref()
            .map(|c| decode_cursor(c, 1).map(|k| k[0]))
            .transpose()?;
        Ok((limit, before))
    }
}

#[derive(Serialize)]
pub struct MatchItem {
    id: String,
    user: UserSummary,
    card_id: String,
    conversation_id: String,
    created_at: String,
}

pub async fn matches(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<MatchItem>>> {
    let (limit, before) = query.resolve()?;
    let rows = state
        .store
        .matches_of(me.user.id, before, limit + 1)
        .await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.match_id],
        |r| MatchItem {
            id: r.match_id.to_string(),
            user: summary(&r.other),
            card_id: r.card_id.to_string(),
            conversation_id: r.conversation_id.to_string(),
            created_at: rfc3339(r.matched_at),
        },
    )))
}

#[derive(Serialize)]
pub struct ConversationItem {
    id: String,
    other_user: UserSummary,
    /// `null` until the pair has exchanged a message.
    last_message: Option<serde_json::Value>,
    unread_count: i64,
}

pub async fn conversations(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<ConversationItem>>> {
    let (limit, before) = query.resolve()?;
    let rows = state
        .store
        .conversations_of(me.user.id, before, limit + 1)
        .await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.conversation_id],
        |r| ConversationItem {
            id: r.conversation_id.to_string(),
            other_user: summary(&r.other),
            last_message: None,
            unread_count: (r.last_seq - r.read_seq).max(0),
        },
    )))
}
