//! The socket endpoint: upgrade at `/ws`, then one [`conn`] task per socket
//! that reads frames, runs ops ([`dispatch`]) and feeds a writer task.

mod conn;
mod conversations;
mod dispatch;
mod moderation;
mod rate;

use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use meshi_protocol::SUBPROTOCOL;

use crate::client_addr::ClientAddr;
use crate::error::Error;
use crate::state::AppState;

/// How far past the protocol limit the transport still reads a frame, so an
/// oversized frame is read whole and answered with a clean 1009 close.
const TRANSPORT_SLACK: usize = 4;
const IDLE_READ_BUFFER: usize = 512;

/// How long a client refused for too many sockets is told to wait.
const RETRY_AFTER_MS: u64 = 5_000;

pub async fn upgrade(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    let Some(counted) = state
        .sockets_by_addr
        .admit(client, state.config.max_sockets_per_addr)
    else {
        metrics::counter!("meshi_sockets_refused_total", "limit" => "per_addr").increment(1);
        return Error::RateLimited {
            limit: "too many sockets from this address (MESHI_MAX_SOCKETS_PER_ADDR)".into(),
            retry_after_ms: RETRY_AFTER_MS,
        }
        .into_response();
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let origin_allowed = state.config.origin_allowed(origin);
    let transport_limit = state.config.max_frame_bytes.saturating_mul(TRANSPORT_SLACK);
    let tasks = state.tasks.clone();
    ws.protocols([SUBPROTOCOL])
        // Most sockets sit idle; a small read buffer that grows for large
        // frames keeps them cheap (the library default is 128 KiB each).
        .read_buffer_size(IDLE_READ_BUFFER)
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .on_upgrade(move |socket| {
            // Split before the task starts, so the task's future holds two
            // handles rather than a whole socket, in every idle socket.
            let (sink, stream) = socket.split();
            let serve = conn::run(sink, stream, state, origin_allowed);
            tasks.track_future(async move {
                serve.await;
                drop(counted);
            })
        })
}
