//! Talk-topic cards, interest in them, and matching from them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::UserSummary;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::extract::{path_id, Body, Caller, Params};
use super::page::{self, decode_cursor, Page, PageQuery};
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, ErrorResponse, Result};
use crate::notify::kind;
use crate::profile::summary;
use crate::state::AppState;
use crate::store::{CardChanges, CardFilter, CardRow, MatchError, MatchRow};
use crate::validate;

#[derive(Serialize, ToSchema)]
pub struct Card {
    id: String,
    owner_id: String,
    owner: UserSummary,
    title: String,
    body: String,
    tags: Vec<String>,
    /// `open` or `closed`.
    status: &'static str,
    created_at: String,
    updated_at: String,
}

impl From<CardRow> for Card {
    fn from(row: CardRow) -> Self {
        Card {
            id: row.id.to_string(),
            owner_id: row.owner_id.to_string(),
            owner: UserSummary {
                id: row.owner_id.to_string(),
                handle: row.owner_handle,
                display_name: row.owner_display_name,
            },
            title: row.title,
            body: row.body,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            status: if row.is_open { "open" } else { "closed" },
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewCard {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// A partial edit: absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
pub struct CardPatch {
    title: Option<String>,
    body: Option<String>,
    tags: Option<Vec<String>>,
    /// `open` or `closed`.
    status: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CardQuery {
    /// Only cards with this tag.
    tag: Option<String>,
    /// Text searched in titles and bodies (at most 100 characters).
    q: Option<String>,
    /// Only cards of this user, closed ones included; without it, open
    /// cards only.
    owner_id: Option<String>,
    /// 1-100, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    post,
    path = "/cards",
    operation_id = "create_card",
    tag = "cards",
    security(("bearer" = [])),
    request_body = NewCard,
    responses(
        (status = 201, description = "the new card", body = Card),
        (status = 400, description = "a field is invalid; the message names it", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(me): Caller,
    Body(new): Body<NewCard>,
) -> Result<(StatusCode, Json<Card>)> {
    let title = validate::line("title", &new.title, 1, 80)?;
    let body = validate::prose("body", &new.body, 0, 1000)?;
    let tags = validate::tags("tags", &new.tags, 5)?;
    let card = state
        .store
        .create_card(me.user.id, &title, &body, &tags, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(card.into())))
}

#[utoipa::path(
    get,
    path = "/cards",
    operation_id = "list_cards",
    tag = "cards",
    security(("bearer" = [])),
    params(CardQuery),
    responses(
        (status = 200, description = "a page of cards, newest first", body = Page<Card>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Params(query): Params<CardQuery>,
) -> Result<Json<Page<Card>>> {
    let limit = page::limit(query.limit)?;
    let before_id = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, 1).map(|k| k[0]))
        .transpose()?;
    let owner_id = query
        .owner_id
        .as_deref()
        .map(|id| validate::id("owner_id", id))
        .transpose()?;
    let text = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if text.is_some_and(|q| q.chars().count() > 100) {
        return Err(Error::bad("q", "must be at most 100 characters"));
    }
    let rows = state
        .store
        .cards(CardFilter {
            tag: query.tag.as_deref().map(str::trim),
            text,
            owner_id,
            before_id,
            limit: limit + 1,
        })
        .await?;
    Ok(Json(page::page(rows, limit, |r| vec![r.id], Card::from)))
}

async fn load(state: &AppState, raw_id: &str) -> Result<CardRow> {
    let id = path_id(raw_id, "card")?;
    state.store.card(id).await?.ok_or(Error::NotFound("card"))
}

async fn load_own(state: &AppState, raw_id: &str, me: i64) -> Result<CardRow> {
    let card = load(state, raw_id).await?;
    if card.owner_id != me {
        return Err(Error::Forbidden("only the card's owner may do this"));
    }
    Ok(card)
}

#[utoipa::path(
    get,
    path = "/cards/{id}",
    operation_id = "get_card",
    tag = "cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "card id")),
    responses(
        (status = 200, description = "the card", body = Card),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such card", body = ErrorResponse),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Card>> {
    Ok(Json(load(&state, &id).await?.into()))
}

#[utoipa::path(
    patch,
    path = "/cards/{id}",
    operation_id = "update_card",
    tag = "cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "card id")),
    request_body = CardPatch,
    responses(
        (status = 200, description = "the card after the change", body = Card),
        (status = 400, description = "a field is invalid; the message names it", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller does not own the card", body = ErrorResponse),
        (status = 404, description = "no such card", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(patch): Body<CardPatch>,
) -> Result<Json<Card>> {
    let title = patch
        .title
        .as_deref()
        .map(|t| validate::line("title", t, 1, 80))
        .transpose()?;
    let body = patch
        .body
        .as_deref()
        .map(|b| validate::prose("body", b, 0, 1000))
        .transpose()?;
    let tags = patch
        .tags
        .as_deref()
        .map(|t| validate::tags("tags", t, 5))
        .transpose()?;
    let is_open = match patch.status.as_deref() {
        None => None,
        Some("open") => Some(true),
        Some("closed") => Some(false),
        Some(_) => return Err(Error::bad("status", "must be `open` or `closed`")),
    };
    let card = load_own(&state, &id, me.user.id).await?;
    state
        .store
        .update_card(
            card.id,
            CardChanges {
                title: title.as_deref(),
                body: body.as_deref(),
                tags: tags.as_deref(),
                is_open,
            },
            now_ms(),
        )
        .await?;
    Ok(Json(load(&state, &id).await?.into()))
}

#[utoipa::path(
    delete,
    path = "/cards/{id}",
    operation_id = "delete_card",
    tag = "cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "card id")),
    responses(
        (status = 204, description = "the card is deleted"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller does not own the card", body = ErrorResponse),
        (status = 404, description = "no such card", body = ErrorResponse),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let card = load_own(&state, &id, me.user.id).await?;
    state.store.delete_card(card.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/cards/{id}/interest",
    operation_id = "press_interest",
    tag = "cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "card id")),
    responses(
        (status = 204, description = "the caller is interested (idempotent)"),
        (status = 400, description = "the card is the caller's own", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the card's owner and the caller: one blocks the other", body = ErrorResponse),
        (status = 404, description = "no such card", body = ErrorResponse),
        (status = 409, description = "the card is closed", body = ErrorResponse),
    ),
)]
pub async fn press_interest(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let card = load(&state, &id).await?;
    if card.owner_id == me.user.id {
        return Err(Error::bad(
            "card",
            "you cannot be interested in your own card",
        ));
    }
    if !card.is_open {
        return Err(Error::Conflict("the card is closed".into()));
    }
    crate::pairing::require_not_blocked(&state, card.owner_id, me.user.id).await?;
    if state
        .store
        .press_interest(card.id, me.user.id, now_ms())
        .await?
    {
        let data = json!({ "card_id": card.id.to_string(), "user": summary(&me.user) });
        state
            .notifier
            .notify(card.owner_id, kind::INTEREST_RECEIVED, data)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/cards/{id}/interest",
    operation_id = "withdraw_interest",
    tag = "cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "card id")),
    responses(
        (status = 204, description = "the caller is not interested (idempotent)"),
        (status = 400, description = "the card is the caller's own", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such card", body = ErrorResponse),
    ),
)]
pub async fn withdraw_interest(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let card = load(&state, &id).await?;
    if card.owner_id == me.user.id {
        return Err(Error::bad(
            "card",
            "you cannot be interested in your own card",
        ));
    }
    state.store.withdraw_interest(card.id, me.user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Interest {
    user: UserSummary,
    created_at: String,
}

#[utoipa::path(
    get,
    path = "/cards/{id}/interests",
    operation_id = "list_interests",
    tag = "cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "card id"), PageQuery),
    responses(
        (status = 200, description = "a page of interested users, newest first", body = Page<Interest>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller does not own the card", body = ErrorResponse),
        (status = 404, description = "no such card", body = ErrorResponse),
    ),
)]
pub async fn interests(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<Interest>>> {
    let card = load_own(&state, &id, me.user.id).await?;
    let limit = page::limit(query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, 2).map(|k| (k[0], k[1])))
        .transpose()?;
    let rows = state.store.interests(card.id, before, limit + 1).await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.pressed_at, r.user.id],
        |r| Interest {
            user: summary(&r.user),
            created_at: rfc3339(r.pressed_at),
        },
    )))
}

#[derive(Deserialize, ToSchema)]
pub struct NewMatch {
    user_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct MatchCreated {
    #[serde(rename = "match")]
    record: MatchOut,
}

#[derive(Serialize, ToSchema)]
pub struct MatchOut {
    id: String,
    card_id: String,
    user: UserSummary,
    conversation_id: String,
    created_at: String,
}

#[utoipa::path(
    post,
    path = "/cards/{id}/matches",
    operation_id = "create_match",
    tag = "cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "card id")),
    request_body = NewMatch,
    responses(
        (status = 201, description = "a new match and its new conversation", body = MatchCreated),
        (status = 200, description = "the pair already has a conversation; the existing one", body = MatchCreated),
        (status = 400, description = "`user_id` is invalid, the caller, or has not pressed interested", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller does not own the card, or one of the pair blocks the other", body = ErrorResponse),
        (status = 404, description = "no such card", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
pub async fn create_match(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(new): Body<NewMatch>,
) -> Result<(StatusCode, Json<MatchCreated>)> {
    let user_id = validate::id("user_id", &new.user_id)?;
    let card = load_own(&state, &id, me.user.id).await?;
    if user_id == me.user.id {
        return Err(Error::bad("user_id", "you cannot match yourself"));
    }
    let other = state
        .store
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| Error::bad("user_id", "no such user"))?;
    let matched = state
        .store
        .create_match(card.id, me.user.id, user_id, now_ms())
        .await
        .map_err(|err| match err {
            MatchError::NotInterested => {
                Error::bad("user_id", "has not pressed interested on this card")
            }
            MatchError::Blocked => Error::Forbidden("one of you blocks the other"),
            MatchError::Store(err) => err.into(),
        })?;
    let record: &MatchRow = &matched.record;
    if matched.match_created {
        let notice = |user: UserSummary| {
            json!({
                "match_id": record.id.to_string(),
                "card_id": record.card_id.to_string(),
                "conversation_id": record.conversation_id.to_string(),
                "user": user,
            })
        };
        state
            .notifier
            .notify(me.user.id, kind::MATCHED, notice(summary(&other)))
            .await?;
        state
            .notifier
            .notify(other.id, kind::MATCHED, notice(summary(&me.user)))
            .await?;
    }
    let status = if matched.conversation_created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(MatchCreated {
            record: MatchOut {
                id: record.id.to_string(),
                card_id: record.card_id.to_string(),
                user: summary(&other),
                conversation_id: record.conversation_id.to_string(),
                created_at: rfc3339(record.created_at),
            },
        }),
    ))
}
