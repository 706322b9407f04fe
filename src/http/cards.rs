//! Talk-topic cards, interest in them, and matching from them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::UserSummary;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{path_id, Body, Caller, Params};
use super::page::{self, decode_cursor, Page};
use crate::app::AppState;
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::notify::kind;
use crate::profile::summary;
use crate::store::{CardChanges, CardFilter, CardRow, MatchError, MatchRow};
use crate::validate;

#[derive(Serialize)]
pub struct Card {
    id: String,
    owner_id: String,
    owner: UserSummary,
    title: String,
    body: String,
    tags: Vec<String>,
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

#[derive(Deserialize)]
pub struct NewCard {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
pub struct CardPatch {
    title: Option<String>,
    body: Option<String>,
    tags: Option<Vec<String>>,
    /// `open` or `closed`.
    status: Option<String>,
}

#[derive(Deserialize)]
pub struct CardQuery {
    tag: Option<String>,
    q: Option<String>,
    owner_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    Caller(me): Caller,
    Body(new): Body<NewCard>,
) -> Result<(StatusCode, Json<Card>)> {
    let title = validate::text("title", &new.title, 1, 80)?;
    let body = validate::text("body", &new.body, 0, 1000)?;
    let tags = validate::tags("tags", &new.tags, 5)?;
    let card = state
        .store
        .create_card(me.user.id, &title, &body, &tags, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(card.into())))
}

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

pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Card>> {
    Ok(Json(load(&state, &id).await?.into()))
}

pub async fn update(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(patch): Body<CardPatch>,
) -> Result<Json<Card>> {
    let title = patch
        .title
        .as_deref()
        .map(|t| validate::text("title", t, 1, 80))
        .transpose()?;
    let body = patch
        .body
        .as_deref()
        .map(|b| validate::text("body", b, 0, 1000))
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

pub async fn delete(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let card = load_own(&state, &id, me.user.id).await?;
    state.store.delete_card(card.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

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

#[derive(Serialize)]
pub struct Interest {
    user: UserSummary,
    created_at: String,
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

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

#[derive(Deserialize)]
pub struct NewMatch {
    user_id: String,
}

#[derive(Serialize)]
pub struct MatchCreated {
    #[serde(rename = "match")]
    record: MatchOut,
}

#[derive(Serialize)]
pub struct MatchOut {
    id: String,
    card_id: String,
    user: UserSummary,
    conversation_id: String,
    created_at: String,
}

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
