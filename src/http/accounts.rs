//! Register, login, logout and the caller's own profile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::close;
use serde::{Deserialize, Serialize};

use super::extract::{Body, Caller};
use crate::app::AppState;
use crate::auth::Issued;
use crate::error::Result;
use crate::hub::subscribers::Topic;
use crate::profile::Profile;

#[derive(Deserialize)]
pub struct Register {
    handle: String,
    password: String,
    display_name: String,
}

#[derive(Deserialize)]
pub struct Login {
    handle: String,
    password: String,
}

#[derive(Serialize)]
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

pub async fn register(
    State(state): State<AppState>,
    Body(body): Body<Register>,
) -> Result<(StatusCode, Json<TokenAndUser>)> {
    let issued = state
        .accounts
        .register(&body.handle, &body.password, &body.display_name)
        .await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

pub async fn login(
    State(state): State<AppState>,
    Body(body): Body<Login>,
) -> Result<Json<TokenAndUser>> {
    let issued = state.accounts.login(&body.handle, &body.password).await?;
    Ok(Json(issued.into()))
}

/// Revokes the caller's token and closes every socket opened with it. An
/// identity-provider JWT has no stored session: only its provider can end
/// it, so there is nothing to revoke and the answer is still 204.
pub async fn logout(State(state): State<AppState>, Caller(me): Caller) -> Result<StatusCode> {
    state.accounts.revoke(&me).await?;
    if let Some(session_id) = me.session_id() {
        state.hub.close_all(
            Topic::Session(session_id),
            close::TOKEN_ENDED,
            "token revoked",
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(Caller(me): Caller) -> Json<Profile> {
    Json(Profile::from(&me.user))
}
