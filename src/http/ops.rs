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
    let backends = Backends::check(&state).await;
    let word = |up: bool| if up { "ok" } else { "unreachable" };
    let mut failing = Vec::new();
    if !backends.database {
        failing.push("database");
    }
    if backends.redis == Some(false) {
        failing.push("redis");
    }
    let mut body = json!({ "status": "ready", "database": word(backends.database) });
    if let Some(redis) = backends.redis {
        body["redis"] = json!(word(redis));
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

/// How long the database has to answer a readiness ping.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether each backend answers now; Redis is `None` on a lone node.
struct Backends {
    database: bool,
    redis: Option<bool>,
}

impl Backends {
    async fn check(state: &AppState) -> Self {
        let database = async {
            // A stalled database holds a ping past the pool's own timeout;
            // readiness, and the scrape that samples it, answer sooner.
            match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
                Ok(Ok(())) => true,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "readiness check: database unreachable");
                    false
                }
                Err(_) => {
                    tracing::warn!("readiness check: the database did not answer in time");
                    false
                }
            }
        };
        let redis = async {
            match &state.cluster {
                None => None,
                Some(cluster) => Some(cluster.ping().await),
            }
        };
        let (database, redis) = tokio::join!(database, redis);
        Backends { database, redis }
    }

    fn ready(&self) -> bool {
        self.database && self.redis != Some(false)
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::metrics::record_process();
    sample(&state).await;
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The gauges read at each scrape rather than kept up to date on the hot
/// path: readiness, queue depths, who is online here, the database pool.
async fn sample(state: &AppState) {
    let backends = Backends::check(state).await;
    let up = |up: bool| f64::from(u8::from(up));
    metrics::gauge!("meshi_ready").set(up(backends.ready()));
    metrics::gauge!("meshi_backend_up", "backend" => "database").set(up(backends.database));
    if let Some(redis) = backends.redis {
        metrics::gauge!("meshi_backend_up", "backend" => "redis").set(up(redis));
    }
    let outboxes = state.hub.outbox_depths().sample();
    metrics::gauge!("meshi_outbox_queued_frames").set(outboxes.queued as f64);
    metrics::gauge!("meshi_outbox_deepest_frames").set(outboxes.deepest as f64);
    metrics::gauge!("meshi_outbox_capacity_frames").set(state.config.outbox_frames as f64);
    metrics::gauge!("meshi_presence_users").set(state.presence.users_here() as f64);
    let (open, idle) = state.store.pool_connections();
    metrics::gauge!("meshi_db_pool_connections", "state" => "idle").set(idle as f64);
    let busy = usize::try_from(open)
        .unwrap_or(usize::MAX)
        .saturating_sub(idle);
    metrics::gauge!("meshi_db_pool_connections", "state" => "busy").set(busy as f64);
}
