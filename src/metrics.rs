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

fn describe() {
    metrics::describe_gauge!("meshi_connections", "Open sockets");
    metrics::describe_gauge!("meshi_rooms_open", "Open rooms on this node");
    metrics::describe_counter!("meshi_frames_in_total", "Frames received from clients");
    metrics::describe_counter!("meshi_frames_out_total", "Frames written to clients");
    metrics::describe_counter!("meshi_deliveries_total", "Frames queued for local sockets");
    metrics::describe_counter!(
        "meshi_rate_limited_total",
        "Frames refused by the rate limit"
    );
    metrics::describe_counter!(
        "meshi_rate_limit_closes_total",
        "Sockets closed for rate-limit abuse"
    );
    metrics::describe_counter!(
        "meshi_slow_consumer_closes_total",
        "Sockets closed for not reading"
    );
    metrics::describe_histogram!(
        "meshi_fanout_seconds",
        "Time to queue one room message for every member"
    );
    metrics::describe_counter!(
        "meshi_bus_published_total",
        "Deliveries published to Redis for other nodes"
    );
    metrics::describe_counter!(
        "meshi_bus_received_total",
        "Deliveries from other nodes handed to local sockets"
    );
    metrics::describe_counter!(
        "meshi_bus_dropped_total",
        "Deliveries that never reached Redis: queue full or publish failed"
    );
    metrics::describe_counter!(
        "meshi_bus_publish_errors_total",
        "Publish round trips to Redis that failed"
    );
    metrics::describe_counter!(
        "meshi_bus_decode_errors_total",
        "Payloads from Redis that could not be read"
    );
    metrics::describe_counter!(
        "meshi_bus_reconnects_total",
        "Attempts to reconnect the bus subscription to Redis"
    );
    metrics::describe_gauge!("meshi_bus_channels", "Redis channels this node listens to");
    metrics::describe_histogram!(
        "meshi_bus_publish_seconds",
        "Round trip of one pipeline of PUBLISH commands to Redis"
    );
    metrics::describe_gauge!(
        "meshi_build_info",
        "Always 1; the labels name the build this node runs"
    );
    metrics::gauge!("meshi_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Touch the series so a fresh node shows them at zero.
    metrics::gauge!("meshi_connections").increment(0.0);
    metrics::gauge!("meshi_rooms_open").increment(0.0);
    for counter in [
        "meshi_frames_in_total",
        "meshi_frames_out_total",
        "meshi_deliveries_total",
        "meshi_rate_limited_total",
        "meshi_rate_limit_closes_total",
        "meshi_slow_consumer_closes_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
}
