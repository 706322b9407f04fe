//! Register, login, logout and the caller's own profile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::close;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Body, Caller};
use crate::auth::Issued;
use crate::client_addr::ClientAddr;
use crate::error::{ErrorResponse, Result};
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
