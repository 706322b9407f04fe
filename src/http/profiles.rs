//! Profiles: editing one's own, reading anyone's.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::extract::{path_id, Body, Caller};
use crate::app::AppState;
use crate::auth::validate_display_name;
use crate::error::{Error, Result};
use crate::profile::Profile;
use crate::store::ProfileChanges;
use crate::validate;

#[derive(Deserialize)]
pub struct ProfilePatch {
    display_name: Option<String>,
    bio: Option<String>,
    tags: Option<Vec<String>>,
}

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
        .map(|b| validate::text("bio", b, 0, 500))
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
