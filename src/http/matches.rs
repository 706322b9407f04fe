//! The caller's matches and conversations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::{DmMessage, UserSummary};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{path_id, Caller, Params};
use super::page::{self, Page, PageQuery};
use crate::clock::rfc3339;
use crate::dm;
use crate::error::{Error, ErrorResponse, Result};
use crate::profile::summary;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct MatchItem {
    id: String,
    user: UserSummary,
    card_id: String,
    conversation_id: String,
    created_at: String,
}

#[utoipa::path(
    get,
    path = "/matches",
    operation_id = "list_matches",
    tag = "matches",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of the caller's matches, newest first", body = Page<MatchItem>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn matches(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<MatchItem>>> {
    let (limit, before) = query.by_id()?;
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

#[utoipa::path(
    delete,
    path = "/matches/{id}",
    operation_id = "unmatch",
    tag = "matches",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "match id")),
    responses(
        (status = 204, description = "the pair is unmatched: every match between them goes, and their conversation closes for both until they match again"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such match of the caller's", body = ErrorResponse),
    ),
)]
/// Either participant unmatches; both hear `conversation.closed`.
pub async fn unmatch(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = path_id(&id, "match")?;
    crate::pairing::unmatch(&state, me.user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ConversationItem {
    id: String,
    other_user: UserSummary,
    /// `null` until the pair has exchanged a message.
    last_message: Option<DmMessage>,
    unread_count: i64,
    /// When the latest message was sent, else when the pair matched: what
    /// the list is ordered by.
    last_activity_at: String,
}

#[utoipa::path(
    get,
    path = "/conversations",
    operation_id = "list_conversations",
    tag = "matches",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of the caller's open conversations, most recently active first (latest message, else the match). Paging is stable while messages arrive: a conversation is never served twice in one pass, and none whose activity did not change is skipped; one that gets a message meanwhile moves to the top of the next first page", body = Page<ConversationItem>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
/// The cursor holds the activity counter of the last conversation served
/// (see `Store::conversations_of` for why that keeps pages exact).
pub async fn conversations(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<ConversationItem>>> {
    let (limit, before) = query.by_id()?;
    let rows = state
        .store
        .conversations_of(me.user.id, before, limit + 1)
        .await?;
    let mut last_messages = Vec::with_capacity(rows.len());
    for row in rows.iter().take(limit as usize) {
        last_messages.push(state.store.last_dm(row.conversation_id).await?);
    }
    let mut last_messages = last_messages.into_iter();
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.activity_seq],
        |r| ConversationItem {
            id: r.conversation_id.to_string(),
            other_user: summary(&r.other),
            last_message: last_messages.next().flatten().as_ref().map(dm::view),
            unread_count: (r.last_seq - r.read_seq).max(0),
            last_activity_at: rfc3339(r.last_activity),
        },
    )))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only messages after this `seq`.
    after_seq: Option<i64>,
    /// Only messages before this `seq`.
    before_seq: Option<i64>,
    /// 1-100, default 50.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    items: Vec<DmMessage>,
}

#[utoipa::path(
    get,
    path = "/conversations/{id}/messages",
    operation_id = "list_messages",
    tag = "matches",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id"), HistoryQuery),
    responses(
        (status = 200, description = "the messages in ascending `seq`", body = History),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is not in this conversation, or it is closed (the pair unmatched)", body = ErrorResponse),
        (status = 404, description = "no such conversation", body = ErrorResponse),
    ),
)]
/// A conversation's messages in ascending `seq`, for its participants.
pub async fn messages(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Params(query): Params<HistoryQuery>,
) -> Result<Json<History>> {
    let id = path_id(&id, "conversation")?;
    let limit = page::limit(query.limit)?;
    if query.after_seq.is_some_and(|s| s < 0) {
        return Err(Error::bad("after_seq", "must not be negative"));
    }
    if query.before_seq.is_some_and(|s| s < 0) {
        return Err(Error::bad("before_seq", "must not be negative"));
    }
    crate::pairing::require_readable(&state, id, me.user.id).await?;
    let rows = state
        .store
        .dm_history(id, query.after_seq, query.before_seq, limit)
        .await?;
    Ok(Json(History {
        items: rows.iter().map(dm::view).collect(),
    }))
}
