//! The room directory over REST.

use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use meshi_protocol::Room;
use serde::Deserialize;

use super::extract::{Caller, Params};
use super::page::{self, Page};
use crate::error::{Error, ErrorResponse, Result};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomQuery {
    /// 1-100, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/rooms",
    operation_id = "list_rooms",
    tag = "rooms",
    security(("bearer" = [])),
    params(RoomQuery),
    responses(
        (status = 200, description = "a page of open rooms, newest first", body = Page<Room>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
/// Open rooms, newest first. Room ids are not numbers, so the cursor is
/// the last room's `created_at` milliseconds and id.
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Params(query): Params<RoomQuery>,
) -> Result<Json<Page<Room>>> {
    let limit = page::limit(query.limit)? as usize;
    let after = query.cursor.as_deref().map(decode).transpose()?;
    let mut rooms = state
        .rooms
        .page(after.as_ref().map(|(at, id)| (*at, id.as_str())), limit + 1)
        .await?;
    let more = rooms.len() > limit;
    rooms.truncate(limit);
    let next_cursor = more
        .then(|| rooms.last().map(|(at, room)| encode(*at, &room.id)))
        .flatten();
    Ok(Json(Page {
        items: rooms.into_iter().map(|(_, room)| room).collect(),
        next_cursor,
    }))
}

fn encode(created_at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}.{id}"))
}

fn decode(cursor: &str) -> Result<(i64, String)> {
    let invalid = || Error::bad("cursor", "is not a cursor this server made");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, id) = text.split_once('.').ok_or_else(invalid)?;
    Ok((at.parse().map_err(|_| invalid())?, id.to_owned()))
}
