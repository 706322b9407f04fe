//! Register, login, logout, the caller's own profile, and deleting it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::close;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Body, Caller};
use crate::auth::Issued;
use crate::client_addr::ClientAddr;
use crate::error::{Error, ErrorResponse, Result};
use crate::hub::subscribers::Topic;
use crate::profile::Profile;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct Register {
    handle: String,
    password: String,
    display_name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct Login {
    handle: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenAndUser {
    token: String,
    user: Profile,
}

impl From<Issued> for TokenAndUser {
    fn from(issued: Issued) -> Self {
        TokenAndUser {
            user: Profile::from(&issued.identity.user),
            token: issued.token,
        }
    }
}

#[utoipa::path(
    post,
    path = "/auth/register",
    operation_id = "register",
    tag = "accounts",
    request_body = Register,
    responses(
        (status = 201, description = "the account and a session token", body = TokenAndUser),
        (status = 400, description = "a field is invalid; the message names it", body = ErrorResponse),
        (status = 409, description = "the handle is taken or reserved for an administrator", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
        (status = 429, description = "too many attempts from this address or at this handle; see `Retry-After`", body = ErrorResponse),
        (status = 503, description = "too many passwords are being hashed; try again shortly", body = ErrorResponse),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Body(body): Body<Register>,
) -> Result<(StatusCode, Json<TokenAndUser>)> {
    let issued = state
        .accounts
        .register(addr, &body.handle, &body.password, &body.display_name)
        .await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

#[utoipa::path(
    post,
    path = "/auth/login",
    operation_id = "login",
    tag = "accounts",
    request_body = Login,
    responses(
        (status = 200, description = "a new session token", body = TokenAndUser),
        (status = 400, description = "the body is malformed", body = ErrorResponse),
        (status = 401, description = "wrong handle or password", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
        (status = 429, description = "too many attempts from this address or at this handle; see `Retry-After`", body = ErrorResponse),
        (status = 503, description = "too many passwords are being hashed; try again shortly", body = ErrorResponse),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Body(body): Body<Login>,
) -> Result<Json<TokenAndUser>> {
    let issued = state
        .accounts
        .login(addr, &body.handle, &body.password)
        .await?;
    Ok(Json(issued.into()))
}

/// Revokes the caller's token and closes every socket opened with it. An
/// identity-provider JWT has no stored session: only its provider can end
/// it, so there is nothing to revoke and the answer is still 204.
#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "logout",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "the token is revoked and its sockets closed"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn logout(State(state): State<AppState>, Caller(me): Caller) -> Result<StatusCode> {
    state.accounts.revoke(&me).await?;
    if let Some(session_id) = me.session_id() {
        state.hub.close_all(
            Topic::Session(session_id),
            close::TOKEN_ENDED,
            crate::auth::revocation::REVOKED,
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/me",
    operation_id = "get_me",
    tag = "profiles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller's full profile", body = Profile),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn me(Caller(me): Caller) -> Json<Profile> {
    Json(Profile::from(&me.user))
}

#[derive(Deserialize, ToSchema)]
pub struct DeleteMe {
    /// Required for an account with a password.
    password: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/me",
    operation_id = "delete_me",
    tag = "accounts",
    security(("bearer" = [])),
    request_body(content = DeleteMe, description = "`{password}` for an account with a password; an identity provider's account may send no body"),
    responses(
        (status = 204, description = "the account is erased: profile, cards, interests, RSVPs (seats go to the waitlist in order), memberships, blocks and notifications; messages stay, deleted, from a deleted user; conversations close; every session ends and its sockets close with 4010. The handle is never given out again."),
        (status = 400, description = "the body is malformed, or `password` is missing for an account with a password", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "`password` is wrong", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
        (status = 429, description = "too many attempts; see `Retry-After`", body = ErrorResponse),
    ),
)]
pub async fn delete_me(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Caller(me): Caller,
    body: Bytes,
) -> Result<StatusCode> {
    let body: DeleteMe = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteMe { password: None }
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| Error::BadRequest(format!("invalid body: {err}")))?
    };
    if state.accounts.has_password(&me).await? {
        let password = body
            .password
            .ok_or_else(|| Error::bad("password", "is required to delete an account with one"))?;
        state
            .accounts
            .check_password(addr, &me, &password, "password")
            .await?;
    }
    crate::erasure::delete_account(&state, &me).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/me/export",
    operation_id = "export_me",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "everything stored about the caller, as one JSON document: `profile`, `sessions` (never their tokens), `cards`, `interests` (pressed), `interests_received` (on the caller's cards), `matches`, `conversations` (each with all its `messages`), `rsvps`, `hosted_events`, `memberships`, `owned_communities`, `blocks`, `notifications` and `reports` (filed by the caller)", body = serde_json::Value),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn export_me(
    State(state): State<AppState>,
    Caller(me): Caller,
) -> Result<Json<crate::store::Export>> {
    let export = state
        .store
        .export_of(me.user.id)
        .await?
        .ok_or(Error::NotFound("user"))?;
    Ok(Json(export))
}
