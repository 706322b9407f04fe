//! Profiles: editing one's own, reading anyone's.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::extract::{path_id, Body, Caller};
use crate::auth::validate_display_name;
use crate::error::{Error, ErrorResponse, Result};
use crate::profile::Profile;
use crate::state::AppState;
use crate::store::ProfileChanges;
use crate::validate;

/// A partial edit: absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProfilePatch {
    display_name: Option<String>,
    bio: Option<String>,
    tags: Option<Vec<String>>,
}

#[utoipa::path(
    patch,
    path = "/me",
    operation_id = "update_me",
    tag = "profiles",
    security(("bearer" = [])),
    request_body = ProfilePatch,
    responses(
        (status = 200, description = "the caller's full profile after the change", body = Profile),
        (status = 400, description = "a field is invalid; the message names it", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "the caller's account is gone", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
pub async fn update_me(
    State(state): State<AppState>,
    Caller(me): Caller,
    Body(patch): Body<ProfilePatch>,
) -> Result<Json<Profile>> {
    if let Some(name) = &patch.display_name {
        validate_display_name(name)?;
    }
    let display_name = patch.display_name.as_deref().map(str::trim);
    let bio = patch
        .bio
        .as_deref()
        .map(|b| validate::prose("bio", b, 0, 500))
        .transpose()?;
    let tags = patch
        .tags
        .as_deref()
        .map(|t| validate::tags("tags", t, 10))
        .transpose()?;
    let user = state
        .store
        .update_profile(
            me.user.id,
            ProfileChanges {
                display_name,
                bio: bio.as_deref(),
                tags: tags.as_deref(),
            },
        )
        .await?
        .ok_or(Error::NotFound("user"))?;
    Ok(Json(Profile::from(&user)))
}

#[utoipa::path(
    get,
    path = "/users/{id}",
    operation_id = "get_user",
    tag = "profiles",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 200, description = "the user's public profile", body = Profile),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
    ),
)]
pub async fn user(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Profile>> {
    let id = path_id(&id, "user")?;
    let user = state
        .store
        .user_by_id(id)
        .await?
        .ok_or(Error::NotFound("user"))?;
    Ok(Json(Profile::from(&user)))
}
