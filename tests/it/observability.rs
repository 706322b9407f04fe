//! What an operator sees of a node: the series of every part, bounded
//! however much users do, and log lines tied together by request and
//! connection ids. Each test runs the binary as its own process, since
//! the metrics recorder is one per process and the other tests share it.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::binary::{self, Running};
use crate::common::chat::{create_room, join, say};
use crate::common::postgres::fresh_database;
use crate::common::prom::{self, find, parse, value, Sample};
use crate::common::services::ThrowawayPostgres;

/// A node of its own on `database_url` (SQLite in `dir` when `None`),
/// with the per-user limits lifted so one user can open many rooms.
async fn node(dir: &Path, database_url: Option<String>, extra: &[(&str, &str)]) -> Running {
    let mut command = binary::command(dir, &[]);
    let database_url =
        database_url.unwrap_or_else(|| format!("sqlite://{}", dir.join("meshi.db").display()));
    command
        .env("MESHI_DATABASE_URL", database_url)
        .env("MESHI_MAX_HOSTED_ROOMS", "0")
        .env("MESHI_ROOM_CREATE_PER_MIN", "0")
        .env("MESHI_MAX_ROOMS_PER_SOCKET", "0")
        .env("MESHI_RATE_PER_SEC", "100000")
        .env("MESHI_RATE_BURST", "100000")
        .env("MESHI_AUTH_RATE_PER_MIN", "0");
    for (name, value) in extra {
        command.env(name, value);
    }
    Running::start(command, dir).await
}

/// A series as Prometheus keys it: the name and every label.
fn series_key(sample: &Sample) -> String {
    format!("{}{:?}", sample.name, sample.labels)
}

#[tokio::test]
async fn series_stay_bounded_however_many_rooms_there_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node(dir.path(), None, &[]).await;
    let (mut host, token, _) = node.user("host").await;
    let (mut guest, _, _) = node.user("guest").await;
    let mut rooms: Vec<String> = Vec::new();
    let mut series = Vec::new();
    // The first scrape adds the series of `/metrics` itself.
    prom::scrape(&node).await;
    for total in [10, 1_000] {
        while rooms.len() < total {
            let n = rooms.len();
            let room = create_room(&mut host, &format!("room {n}")).await;
            join(&mut guest, &room).await;
            say(&mut host, &room, "hello").await;
            // Paths with ids in them, found and not: the route template
            // is the label, never the path.
            node.get(&format!("/api/v1/users/{}", 10_000 + n), Some(&token))
                .await;
            node.get(&format!("/api/v1/cards/{}", 10_000 + n), Some(&token))
                .await;
            node.get(&format!("/no/such/path/{n}"), None).await;
            rooms.push(room);
        }
        // Pushes the guest has not read would grow its queue; drain them.
        guest.ok(json!({"type": "ping"})).await;
        series.push(parse(&prom::scrape(&node).await));
    }
    let keys = |samples: &[Sample]| {
        let mut keys: Vec<String> = samples.iter().map(series_key).collect();
        keys.sort();
        keys
    };
    let (after_10, after_1000) = (keys(&series[0]), keys(&series[1]));
    let grown: Vec<&String> = after_1000
        .iter()
        .filter(|key| !after_10.contains(key))
        .collect();
    assert!(
        grown.is_empty(),
        "{} series after 10 rooms, {} after 1,000; new ones: {grown:#?}",
        after_10.len(),
        after_1000.len()
    );
    for sample in &series[1] {
        for value in sample.labels.values() {
            assert!(
                !rooms.iter().any(|room| value.contains(room.as_str())),
                "a room id in a label: {sample:?}"
            );
        }
    }
    assert!(
        after_1000.len() < 3_000,
        "{} series on one node",
        after_1000.len()
    );
}

/// The traffic every part should show, then checks of the parts.
async fn exercise_and_check(node: &Running, node_dir: &Path, backend: &str) {
    let (mut alice, alice_token, _) = node.user("alice").await;
    let (mut bob, bob_token, _) = node.user("bob").await;
    let room = create_room(&mut alice, "watched").await;
    join(&mut bob, &room).await;
    say(&mut alice, &room, "hi").await;
    alice
        .err(
            json!({"type": "room.join", "room_id": "no-such-room"}),
            "not_found",
        )
        .await;
    let (status, _) = node
        .post(
            "/api/v1/cards",
            Some(&alice_token),
            json!({"title": "Rust", "body": "talk", "tags": ["rust"]}),
        )
        .await;
    assert_eq!(status, 201);
    node.logout(&bob_token).await;

    let samples = parse(&prom::scrape(node).await);
    let has = |name: &str, labels: &[(&str, &str)]| -> f64 {
        value(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} on {backend}; got:\n{samples:#?}"))
    };
    assert!(has("meshi_op_seconds_count", &[("op", "room.send")]) >= 1.0);
    assert!(has("meshi_ops_total", &[("op", "room.send"), ("result", "ok")]) >= 1.0);
    assert!(
        has(
            "meshi_ops_total",
            &[("op", "room.join"), ("result", "not_found")]
        ) >= 1.0
    );
    assert!(
        has(
            "meshi_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/cards"),
                ("status", "201")
            ]
        ) >= 1.0
    );
    assert!(
        has(
            "meshi_http_request_seconds_count",
            &[("method", "POST"), ("route", "/api/v1/cards")]
        ) >= 1.0
    );
    assert!(has("meshi_db_seconds_count", &[("query", "create_card")]) >= 1.0);
    assert_eq!(
        has("meshi_db_errors_total", &[("query", "create_card")]),
        0.0
    );
    assert!(has("meshi_sessions_revoked_total", &[("reason", "signed_out")]) >= 1.0);
    assert!(has("meshi_presence_users", &[]) >= 1.0);
    assert!(has("meshi_fanout_seconds_count", &[]) >= 1.0);
    assert_eq!(has("meshi_ready", &[]), 1.0);
    assert_eq!(has("meshi_backend_up", &[("backend", "database")]), 1.0);
    assert!(has("meshi_db_pool_connections", &[("state", "idle")]) >= 0.0);
    for gauge in [
        "meshi_outbox_queued_frames",
        "meshi_outbox_deepest_frames",
        "meshi_outbox_capacity_frames",
    ] {
        has(gauge, &[]);
    }
    let build = find(&samples, "meshi_build_info", &[]);
    assert_eq!(
        build.first().and_then(|s| s.label("version")),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let commit = build.first().and_then(|s| s.label("commit")).unwrap_or("");
    assert!(
        !commit.is_empty(),
        "meshi_build_info names no commit: {build:?}"
    );
    let version = binary::command(node_dir, &["--version"]);
    let printed = tokio::task::spawn_blocking(move || binary::run_with_timeout(version))
        .await
        .expect("--version ran");
    assert_eq!(
        printed.stdout.trim(),
        format!("meshi {} (commit {commit})", env!("CARGO_PKG_VERSION")),
        "--version names the same build as the metrics"
    );
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(has(process, &[]) > 0.0, "{process}");
    }
    alice.close().await;
}

#[tokio::test]
async fn every_part_is_measured_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node(dir.path(), None, &[]).await;
    exercise_and_check(&node, dir.path(), "sqlite").await;
}

#[tokio::test]
async fn every_part_is_measured_on_postgres() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node(dir.path(), Some(fresh_database().await), &[]).await;
    exercise_and_check(&node, dir.path(), "postgres").await;
}

#[tokio::test]
async fn json_logs_tie_a_request_and_a_socket_together_with_flat_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node(
        dir.path(),
        None,
        &[
            ("MESHI_LOG_FORMAT", "json"),
            // Request and socket lines are debug-level.
            ("MESHI_LOG", "info,meshi=debug"),
        ],
    )
    .await;
    let response = reqwest::get(node.url("/healthz")).await.expect("healthz");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("an x-request-id header")
        .to_owned();
    assert!(
        request_id.len() == 16 && request_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{request_id}"
    );
    let (client, _, user_id) = node.user("logged").await;
    client.close().await;

    let lines = || -> Vec<Value> {
        node.output()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let lines = lines();
        let of_request = lines
            .iter()
            .filter(|l| l["request_id"] == request_id.as_str())
            .count();
        let of_socket: Vec<&Value> = lines
            .iter()
            .filter(|l| {
                l["conn_id"].is_number()
                    && l["user_id"].as_i64().map(|id| id.to_string()) == Some(user_id.clone())
            })
            .collect();
        if of_request >= 1 && !of_socket.is_empty() {
            // Flat: the span fields beside the event's, no nesting.
            assert!(of_socket.iter().all(|l| l.get("span").is_none()
                && l.get("spans").is_none()
                && l["message"].is_string()));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{of_request} lines of request {request_id}, {} of the socket of user \
             {user_id}:\n{}",
            of_socket.len(),
            node.output()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_database_that_goes_away_shows_as_errors_and_not_ready() {
    let Some(mut pg) = ThrowawayPostgres::start().await else {
        panic!(
            "this test runs its own Postgres and needs initdb and postgres under \
             /usr/lib/postgresql/<version>/bin; install them with `apt-get install postgresql`"
        );
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node(dir.path(), Some(pg.create_database("meshi").await), &[]).await;
    let (token, _) = node.register("failing").await;
    let before = parse(&prom::scrape(&node).await);
    assert_eq!(value(&before, "meshi_ready", &[]), Some(1.0));
    let errors_before = value(&before, "meshi_db_errors_total", &[]).unwrap_or(0.0);

    pg.stop().await;
    let (status, _) = node
        .post(
            "/api/v1/cards",
            Some(&token),
            json!({"title": "t", "body": "b", "tags": []}),
        )
        .await;
    assert_eq!(status, 503, "a write with the database gone");
    let after = parse(&prom::scrape(&node).await);
    let errors_after = value(&after, "meshi_db_errors_total", &[]).unwrap_or(0.0);
    assert!(
        errors_after > errors_before,
        "database errors {errors_before} then {errors_after}: {:#?}",
        find(&after, "meshi_db_errors_total", &[])
    );
    assert_eq!(value(&after, "meshi_ready", &[]), Some(0.0));
    assert_eq!(
        value(&after, "meshi_backend_up", &[("backend", "database")]),
        Some(0.0)
    );
}
