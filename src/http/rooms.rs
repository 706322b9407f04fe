//! The room directory over REST.

use axum::extract::State;
use axum::Json;
use meshi_protocol::Room;
use serde::Serialize;

use super::extract::Caller;
use crate::app::AppState;

#[derive(Serialize)]
pub struct RoomPage {
    items: Vec<Room>,
    next_cursor: Option<String>,
}

/// Every open room; the directory is small enough to answer in one page.
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Json<RoomPage> {
    Json(RoomPage {
        items: state.hub.list_rooms(),
        next_cursor: None,
    })
}
