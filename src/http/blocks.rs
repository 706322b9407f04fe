//! Blocking other users: `POST`/`DELETE /users/{id}/block` and the
//! caller's list. What a block does is `crate::pairing`'s.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::UserSummary;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{path_id, Caller, Params};
use super::page::{self, decode_cursor, Page, PageQuery};
use crate::clock::rfc3339;
use crate::error::{ErrorResponse, Result};
use crate::pairing;
use crate::profile::summary;
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/users/{id}/block",
    operation_id = "block_user",
    tag = "safety",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "the caller blocks the user (idempotent); their conversation, if any, is closed for both"),
        (status = 400, description = "the user is the caller", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
    ),
)]
/// While either blocks the other: no interest, no match, no messages, no
/// presence, and no notification caused by the other.
pub async fn block(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let other = path_id(&id, "user")?;
    pairing::block(&state, me.user.id, other).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/users/{id}/block",
    operation_id = "unblock_user",
    tag = "safety",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "the caller no longer blocks the user (idempotent)"),
        (status = 400, description = "the user is the caller", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "the id cannot be a user's", body = ErrorResponse),
    ),
)]
pub async fn unblock(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let other = path_id(&id, "user")?;
    pairing::unblock(&state, me.user.id, other).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Blocked {
    user: UserSummary,
    created_at: String,
}

#[utoipa::path(
    get,
    path = "/me/blocks",
    operation_id = "list_blocks",
    tag = "safety",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of the users the caller blocks, newest block first", body = Page<Blocked>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<Blocked>>> {
    let limit = page::limit(query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, 2).map(|k| (k[0], k[1])))
        .transpose()?;
    let rows = state.store.blocks_of(me.user.id, before, limit + 1).await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.blocked_at, r.user.id],
        |r| Blocked {
            user: summary(&r.user),
            created_at: rfc3339(r.blocked_at),
        },
    )))
}
