//! Listing notifications and moving the read marker.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::Notification;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Body, Caller, Params};
use super::page::{self, decode_cursor, Page};
use crate::error::{ErrorResponse, Result};
use crate::notify::view;
use crate::state::AppState;
use crate::validate;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// `true` for unread notifications only.
    #[serde(default)]
    unread: bool,
    /// 1-100, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/notifications",
    operation_id = "list_notifications",
    tag = "notifications",
    security(("bearer" = [])),
    params(NotificationQuery),
    responses(
        (status = 200, description = "a page of notifications, newest first", body = Page<Notification>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
pub struct MarkRead {
    up_to_id: String,
}

#[utoipa::path(
    post,
    path = "/notifications/read",
    operation_id = "mark_notifications_read",
    tag = "notifications",
    security(("bearer" = [])),
    request_body = MarkRead,
    responses(
        (status = 204, description = "notifications up to `up_to_id` are read"),
        (status = 400, description = "a field is invalid; the message names it", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
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
