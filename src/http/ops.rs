//! Liveness, readiness and metrics for operators.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when every backend answers; otherwise 503 naming what failed.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match state.store.ping().await {
        Ok(()) => "ok",
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            "unreachable"
        }
    };
    let redis = match &state.cluster {
        None => None,
        Some(cluster) if cluster.ping().await => Some("ok"),
        Some(_) => Some("unreachable"),
    };
    let failing: Vec<&str> = [("database", Some(database)), ("redis", redis)]
        .into_iter()
        .filter(|(_, status)| *status == Some("unreachable"))
        .map(|(part, _)| part)
        .collect();
    let mut body = json!({ "status": "ready", "database": database });
    if let Some(redis) = redis {
        body["redis"] = json!(redis);
    }
    if failing.is_empty() {
        return (StatusCode::OK, Json(body));
    }
    body["status"] = json!("unavailable");
    body["error"] = json!({
        "code": "unavailable",
        "message": format!("{} unreachable", failing.join(" and ")),
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::metrics::record_process();
    sample(&state);
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The gauges read at each scrape rather than kept up to date on the hot
/// path: queue depths, who is online here, the database pool.
fn sample(state: &AppState) {
    let outboxes = state.hub.outbox_depths().sample();
    metrics::gauge!("meshi_outbox_queued_frames").set(outboxes.queued as f64);
    metrics::gauge!("meshi_outbox_deepest_frames").set(outboxes.deepest as f64);
    metrics::gauge!("meshi_outbox_capacity_frames").set(state.config.outbox_frames as f64);
    metrics::gauge!("meshi_presence_users").set(state.presence.users_here() as f64);
    let (open, idle) = state.store.pool_connections();
    metrics::gauge!("meshi_db_pool_connections", "state" => "idle").set(idle as f64);
    let busy = usize::try_from(open).unwrap_or(usize::MAX).saturating_sub(idle);
    metrics::gauge!("meshi_db_pool_connections", "state" => "busy").set(busy as f64);
}
