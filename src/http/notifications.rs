//! Listing notifications and moving the read marker.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::Notification;
use serde::Deserialize;

use super::extract::{Body, Caller, Params};
use super::page::{self, decode_cursor, Page};
use crate::app::AppState;
use crate::error::Result;
use crate::notify::view;
use crate::validate;

#[derive(Deserialize)]
pub struct NotificationQuery {
    #[serde(default)]
    unread: bool,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<NotificationQuery>,
) -> Result<Json<Page<Notification>>> {
    let limit = page::limit(query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, 1).map(|k| k[0]))
        .transpose()?;
    let rows = state
        .store
        .notifications(me.user.id, query.unread, before, limit + 1)
        .await?;
    Ok(Json(page::page(rows, limit, |r| vec![r.id], |r| view(&r))))
}

#[derive(Deserialize)]
pub struct MarkRead {
    up_to_id: String,
}

pub async fn mark_read(
    State(state): State<AppState>,
    Caller(me): Caller,
    Body(body): Body<MarkRead>,
) -> Result<StatusCode> {
    let up_to = validate::id("up_to_id", &body.up_to_id)?;
    state
        .store
        .mark_notifications_read(me.user.id, up_to)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
