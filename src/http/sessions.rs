//! The caller's sessions: changing the password (which ends every other
//! session), listing sessions and ending them. Each ended session's
//! sockets close with 4010 on every node; the revocation sweep closes any
//! a node did not hear of.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::close;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{path_id, Body, Caller, Params};
use super::page::{self, Page, PageQuery};
use crate::auth::revocation::REVOKED;
use crate::client_addr::ClientAddr;
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, ErrorResponse, Result};
use crate::hub::subscribers::Topic;
use crate::state::AppState;

/// Closes the sockets of sessions that just ended, on every node.
fn close_sockets(state: &AppState, sessions: &[i64]) {
    for &session in sessions {
        state
            .hub
            .close_all(Topic::Session(session), close::TOKEN_ENDED, REVOKED);
    }
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    current_password: String,
    /// 8-128 characters.
    new_password: String,
}

#[utoipa::path(
    post,
    path = "/auth/password",
    operation_id = "change_password",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "the password is changed; every other session of the caller ended and its sockets closed with 4010"),
        (status = 400, description = "`new_password` is not 8-128 characters, or the account has no password (it signs in through an identity provider)", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "`current_password` is wrong", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
        (status = 429, description = "too many attempts; see `Retry-After`", body = ErrorResponse),
        (status = 503, description = "too many passwords are being hashed; try again shortly", body = ErrorResponse),
    ),
)]
pub async fn change_password(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Caller(me): Caller,
    Body(body): Body<PasswordChange>,
) -> Result<StatusCode> {
    let ended = state
        .accounts
        .change_password(addr, &me, &body.current_password, &body.new_password)
        .await?;
    close_sockets(&state, &ended);
    tracing::info!(
        user_id = me.user.id,
        ended = ended.len(),
        "password changed"
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SessionItem {
    id: String,
    created_at: String,
    expires_at: String,
    /// The session this request came with.
    current: bool,
}

#[utoipa::path(
    get,
    path = "/me/sessions",
    operation_id = "list_sessions",
    tag = "accounts",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of the caller's live sessions, newest first", body = Page<SessionItem>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<SessionItem>>> {
    let (limit, before) = query.by_id()?;
    let rows = state
        .store
        .live_sessions_of(me.user.id, now_ms(), before, limit + 1)
        .await?;
    let current = me.session_id();
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.id],
        |r| SessionItem {
            id: r.id.to_string(),
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            current: Some(r.id) == current,
        },
    )))
}

#[utoipa::path(
    delete,
    path = "/me/sessions/{id}",
    operation_id = "end_session",
    tag = "accounts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "session id")),
    responses(
        (status = 204, description = "the session ended and its sockets closed with 4010"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no live session of the caller's has this id", body = ErrorResponse),
    ),
)]
pub async fn end(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let session = path_id(&id, "session")?;
    if !state
        .store
        .revoke_session_of(me.user.id, session, now_ms())
        .await?
    {
        return Err(Error::NotFound("session"));
    }
    close_sockets(&state, &[session]);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/me/sessions",
    operation_id = "end_other_sessions",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "every session of the caller but this one ended, their sockets closed with 4010"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn end_others(State(state): State<AppState>, Caller(me): Caller) -> Result<StatusCode> {
    let ended = state
        .store
        .revoke_sessions_of(me.user.id, me.session_id(), now_ms())
        .await?;
    close_sockets(&state, &ended);
    Ok(StatusCode::NO_CONTENT)
}
