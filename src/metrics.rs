//! The Prometheus recorder behind `/metrics`.
//!
//! The recorder is process-global (the `metrics` macros write to one
//! place), so it is installed once and shared by every server in the
//! process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every `*_seconds` histogram, from a tenth of a millisecond
/// (a fan-out to a small room) to ten seconds (a commit stuck behind a
/// failing database). Histograms rather than summaries: buckets add up
/// across nodes, so a cluster's p99 can be computed; quantiles cannot.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Messages per direct-message commit, up to the writer's largest batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("meshi_dm_batch_size".into()),
                        BATCH_BUCKETS,
                    )
                })
                .expect("the bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            handle
        })
        .clone()
}

/// Times `work` into the histogram `seconds` and counts whether it
/// `failed` into the counter `failures`, both labelled `labels`. The
/// failure is counted at zero too, so a rate over it exists before the
/// first one.
pub async fn timed<T, E>(
    seconds: &'static str,
    failures: &'static str,
    labels: &[(&'static str, &'static str)],
    failed: impl FnOnce(&E) -> bool,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = work.await;
    metrics::histogram!(seconds, labels).record(started.elapsed().as_secs_f64());
    let failed = result.as_ref().err().is_some_and(failed);
    metrics::counter!(failures, labels).increment(u64::from(failed));
    result
}

/// Sets the process metrics (CPU, memory, open file descriptors and their
/// limit, start time, threads), so that a load tool without access to the
/// server's process reads them from `/metrics`; called on each scrape.
pub fn record_process() {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR
        .get_or_init(|| {
            let collector = metrics_process::Collector::default();
            collector.describe();
            collector
        })
        .collect();
}

/// Why sessions end early: the `reason` of `meshi_sessions_revoked_total`.
pub const SESSION_END_REASONS: &[&str] = &[
    "signed_out",
    "revoked",
    "password_changed",
    "suspended",
    "account_deleted",
];

enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every series meshi exports besides the process's, with its help text.
/// Labels are fixed by the code (an op, a route template, a query's name),
/// never by a user, a room or a path, so the count of series is bounded.
pub const SERIES: &[(&str, &[&str], &str)] = &[
    (
        "meshi_build_info",
        &["version", "commit"],
        "Always 1; the labels name the release and the commit this node runs",
    ),
    (
        "meshi_ready",
        &[],
        "1 while every backend answers (what /readyz says), else 0",
    ),
    (
        "meshi_backend_up",
        &["backend"],
        "1 while the backend (database, redis) answers, else 0",
    ),
    ("meshi_connections", &[], "Open sockets"),
    (
        "meshi_tcp_connections",
        &[],
        "Open TCP connections, sockets and HTTP alike",
    ),
    (
        "meshi_tcp_connections_refused_total",
        &["limit"],
        "TCP connections refused by a limit (total, per_addr)",
    ),
    (
        "meshi_sockets_refused_total",
        &["limit"],
        "Socket upgrades refused by a limit (per_addr, per_user)",
    ),
    (
        "meshi_http_deadline_closed_total",
        &["deadline"],
        "HTTP connections closed at a deadline (header, body, idle, upgrade)",
    ),
    (
        "meshi_http_requests_total",
        &["method", "route", "status"],
        "HTTP requests by method, route template and status",
    ),
    (
        "meshi_http_request_seconds",
        &["method", "route"],
        "HTTP request latency by method and route template",
    ),
    (
        "meshi_ops_total",
        &["op", "result"],
        "Socket ops by op and result (ok or the error code)",
    ),
    (
        "meshi_op_seconds",
        &["op"],
        "Socket op latency, frame read to reply queued, by op",
    ),
    ("meshi_frames_in_total", &[], "Frames received from clients"),
    ("meshi_frames_out_total", &[], "Frames written to clients"),
    (
        "meshi_deliveries_total",
        &[],
        "Frames queued for local sockets",
    ),
    (
        "meshi_fanout_seconds",
        &[],
        "Time to queue one room event for every member on this node",
    ),
    (
        "meshi_outbox_queued_frames",
        &[],
        "Frames waiting in all sockets' outboxes, at the scrape",
    ),
    (
        "meshi_outbox_deepest_frames",
        &[],
        "Frames waiting in the fullest outbox, at the scrape",
    ),
    (
        "meshi_outbox_capacity_frames",
        &[],
        "Frames an outbox holds before its socket is closed (4009)",
    ),
    (
        "meshi_slow_consumer_closes_total",
        &[],
        "Sockets closed for not reading (4009)",
    ),
    (
        "meshi_rate_limited_total",
        &[],
        "Frames refused by the rate limit",
    ),
    (
        "meshi_rate_limit_closes_total",
        &[],
        "Sockets closed for rate-limit abuse (4008)",
    ),
    ("meshi_rooms_open", &[], "Open rooms on this node"),
    (
        "meshi_presence_users",
        &[],
        "Users with at least one socket open on this node",
    ),
    (
        "meshi_sessions_revoked_total",
        &["reason"],
        "Sessions ended early, by reason",
    ),
    (
        "meshi_revocations_swept_total",
        &[],
        "Revoked sessions whose sockets the sweep closed",
    ),
    (
        "meshi_suspensions_swept_total",
        &[],
        "Suspended users whose sockets the sweep closed",
    ),
    ("meshi_db_seconds", &["query"], "Database latency by query"),
    (
        "meshi_db_errors_total",
        &["query"],
        "Database failures by query",
    ),
    (
        "meshi_db_pool_connections",
        &["state"],
        "Database pool connections by state (idle, busy)",
    ),
    (
        "meshi_dm_commit_seconds",
        &[],
        "Time to commit one batch of direct messages",
    ),
    ("meshi_dm_batch_size", &[], "Direct messages per commit"),
    (
        "meshi_redis_seconds",
        &["kind", "name"],
        "Redis round trips by kind (script, command, pipeline) and script name",
    ),
    (
        "meshi_redis_errors_total",
        &["kind", "name"],
        "Redis round trips that failed, by kind and script name",
    ),
    (
        "meshi_bus_published_total",
        &[],
        "Deliveries published to Redis for other nodes",
    ),
    (
        "meshi_bus_received_total",
        &[],
        "Deliveries from other nodes handed to local sockets",
    ),
    (
        "meshi_bus_dropped_total",
        &[],
        "Deliveries that never reached Redis: queue full or publish failed",
    ),
    (
        "meshi_bus_publish_errors_total",
        &[],
        "Publish round trips to Redis that failed",
    ),
    (
        "meshi_bus_decode_errors_total",
        &[],
        "Payloads from Redis that could not be read",
    ),
    (
        "meshi_bus_reconnects_total",
        &[],
        "Attempts to reconnect the bus subscription to Redis",
    ),
    (
        "meshi_bus_channels",
        &[],
        "Redis channels of topics this node listens to (the lag probes' besides)",
    ),
    (
        "meshi_bus_publish_seconds",
        &[],
        "Round trip of one pipeline of PUBLISH commands to Redis",
    ),
    (
        "meshi_bus_lag_seconds",
        &[],
        "From another node's publish to here, by the nodes' clocks",
    ),
];

fn kind(name: &str) -> Kind {
    if name.ends_with("_seconds") || name == "meshi_dm_batch_size" {
        Kind::Histogram
    } else if name.ends_with("_total") {
        Kind::Counter
    } else {
        Kind::Gauge
    }
}

fn describe() {
    for (name, _, help) in SERIES {
        match kind(name) {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
    metrics::gauge!(
        "meshi_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => env!("MESHI_COMMIT")
    )
    .set(1.0);
    for reason in SESSION_END_REASONS {
        metrics::counter!("meshi_sessions_revoked_total", "reason" => *reason).increment(0);
    }
    // Touch the unlabelled series so a fresh node shows them at zero, and a
    // rate over them exists before the first event.
    for (name, _, _) in SERIES.iter().filter(|(_, labels, _)| labels.is_empty()) {
        match kind(name) {
            Kind::Counter => metrics::counter!(*name).increment(0),
            Kind::Gauge => metrics::gauge!(*name).increment(0.0),
            Kind::Histogram => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_documents_every_series_with_its_labels() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        for (name, labels, _) in SERIES {
            let row = readme
                .lines()
                .find(|line| line.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("README's metrics table has no row for {name}"));
            for label in *labels {
                assert!(
                    row.contains(&format!("`{label}`")),
                    "README's row for {name} does not name its label {label}: {row}"
                );
            }
        }
    }
}
