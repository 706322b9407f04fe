//! The dashboard and the alert rules in `ops/`, checked by a real
//! Prometheus scraping two real nodes: every expression returns data, names
//! only series the nodes export, and a slow consumer fires its alert.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

use crate::common::binary::{spawn_logging_to, KillOnDrop};
use crate::common::chat::{create_room, join, say};
use crate::common::cluster::{Cluster, NodeKind, Settings};
use crate::common::free_port;
use crate::common::services::shared_redis;
use crate::common::WsClient;

/// How long every expression has to return data, and the alert to fire.
const SETTLE: Duration = Duration::from_secs(90);

fn ops_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops").join(path)
}

/// A Prometheus of this test alone, scraping `targets` every second and
/// evaluating the repository's alert rules every second.
struct Prometheus {
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _child: KillOnDrop,
    log: PathBuf,
}

impl Prometheus {
    async fn start(targets: &[String]) -> Self {
        if let Err(e) = Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            panic!(
                "this test runs a real Prometheus and needs `prometheus` on PATH ({e}); \
                 install it with `apt-get install prometheus`"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir for Prometheus");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - '{}'\n\
             scrape_configs:\n  - job_name: meshi\n    static_configs:\n      - targets: [{}]\n",
            ops_file("prometheus/alerts.yml").display(),
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the Prometheus config");
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let child = KillOnDrop(spawn_logging_to(command, &log));
        let prometheus = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _dir: dir,
            _child: child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never became ready:\n{}",
                prometheus.log_text()
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Prometheus /api/v1/{path}: {e}"));
        let body: Value = response.json().await.expect("a JSON answer");
        assert_eq!(
            body["status"], "success",
            "/api/v1/{path} {query:?}: {body}"
        );
        body["data"].clone()
    }

    /// The instant vector or scalar `expr` evaluates to now.
    async fn query(&self, expr: &str) -> Value {
        self.api("query", &[("query", expr)]).await
    }
}

/// Every `expr` of the dashboard's panels, with the dashboard's variables
/// filled in as Grafana would for "all instances".
fn dashboard_expressions() -> Vec<String> {
    let path = ops_file("grafana/meshi-dashboard.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut found = Vec::new();
    collect_exprs(&dashboard["panels"], &mut found);
    assert!(found.len() >= 10, "only {} panel expressions", found.len());
    found
        .into_iter()
        .map(|expr| {
            expr.replace("$__rate_interval", "1m")
                .replace("${instance}", ".*")
                .replace("$instance", ".*")
        })
        .collect()
}

fn collect_exprs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => found.push(expr.clone()),
                    _ => collect_exprs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, found)),
        _ => {}
    }
}

/// Whether a query's answer holds at least one finite number: a quantile
/// over empty buckets answers NaN, which is no data either.
fn has_a_number(data: &Value) -> bool {
    let finite = |sample: &Value| {
        sample[1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .is_some_and(|series| series.iter().any(|s| finite(&s["value"]))),
        Some("scalar") => finite(&data["result"]),
        _ => false,
    }
}

/// An alert's expression without its threshold: `<quantity> <op> <number>`
/// is how every rule is written, so the quantity must have data even
/// while the alert is quiet.
fn quantity(expr: &str) -> &str {
    let expr = expr.trim();
    let number_start = expr
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .map_or(0, |i| i + 1);
    assert!(
        number_start < expr.len(),
        "the alert `{expr}` does not end in a number"
    );
    let before = expr[..number_start].trim_end();
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some(quantity) = before.strip_suffix(op) {
            return quantity.trim_end();
        }
    }
    panic!("the alert `{expr}` is not `<quantity> <comparison> <number>`");
}

/// Every `meshi_*` and `process_*` name an expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &expr[i..];
        if starts_word && (rest.starts_with("meshi_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..len].to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

/// Floods `room` from `sender` while `slow` reads nothing, until the node
/// drops `slow` as a slow consumer (4009).
async fn drive_a_slow_consumer(
    sender: &mut WsClient,
    slow: &mut WsClient,
    slow_id: &str,
    room: &str,
) {
    const MAX_FLOOD: u64 = 30_000;
    let text = "x".repeat(3000);
    let slow_left = |client: &WsClient| {
        client
            .pending()
            .iter()
            .any(|f| f["type"] == "room.member_left" && f["user_id"] == slow_id)
    };
    let mut sent = 0;
    while sent < MAX_FLOOD && !slow_left(sender) {
        sender
            .ok(json!({"type": "room.send", "room_id": room, "text": text}))
            .await;
        sender.next_of("room.message").await;
        sent += 1;
    }
    assert!(slow_left(sender), "still in the room after {sent} messages");
    let ended = slow.closed_with(Duration::from_secs(120)).await;
    assert_eq!(
        format!("{ended:?}"),
        "Closed(4009)",
        "after {sent} messages"
    );
}

#[tokio::test]
async fn prometheus_evaluates_every_dashboard_and_alert_expression_and_fires_an_alert() {
    let settings = Settings {
        outbox_frames: 16,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::Process, 2, shared_redis().await, settings).await;
    let targets: Vec<String> = cluster.nodes.iter().map(|n| n.addr.to_string()).collect();
    let prometheus = Prometheus::start(&targets).await;

    // Traffic on both nodes: a room across them, REST calls, a refused op.
    let (one, two) = (cluster.node(1), cluster.node(2));
    let (mut alice, alice_token, _) = one.user("alice").await;
    let (mut bob, _, _) = two.user("bob").await;
    let (mut slow, _, slow_id) = one.user("slow").await;
    let room = create_room(&mut alice, "lobby").await;
    join(&mut bob, &room).await;
    // The flood has a room of its own: every socket in it but the sender's
    // reads nothing, and is to be dropped.
    let firehose = create_room(&mut alice, "firehose").await;
    join(&mut slow, &firehose).await;
    for i in 0..20 {
        say(&mut bob, &room, &format!("from two {i}")).await;
    }
    let (status, _) = one
        .post(
            "/api/v1/cards",
            Some(&alice_token),
            json!({"title": "Prometheus", "body": "alerts", "tags": ["ops"]}),
        )
        .await;
    assert_eq!(status, 201);
    alice
        .err(
            json!({"type": "room.join", "room_id": "nowhere"}),
            "not_found",
        )
        .await;
    let (mut session, session_token, _) = two.user("leaving").await;
    session.ok(json!({"type": "ping"})).await;
    two.logout(&session_token).await;
    // An increase needs a sample from before it: both nodes scraped first.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = prometheus.query("meshi_slow_consumer_closes_total").await;
        if before["result"].as_array().is_some_and(|r| r.len() == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "nodes not scraped: {before}");
        sleep(Duration::from_millis(200)).await;
    }
    drive_a_slow_consumer(&mut alice, &mut slow, &slow_id, &firehose).await;

    // The rules Prometheus loaded, from the repository's file.
    let groups = prometheus.api("rules", &[]).await;
    let alerts: Vec<(String, String)> = groups["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["type"] == "alerting")
        .map(|r| {
            (
                r["name"].as_str().expect("name").to_owned(),
                r["query"].as_str().expect("query").to_owned(),
            )
        })
        .collect();
    assert!(
        alerts.len() >= 8,
        "Prometheus loaded {} alerts: {alerts:?}\n{}",
        alerts.len(),
        prometheus.log_text()
    );
    let mut expressions: Vec<(String, String)> = dashboard_expressions()
        .into_iter()
        .map(|expr| ("dashboard".to_owned(), expr))
        .collect();
    expressions.extend(
        alerts
            .iter()
            .map(|(name, expr)| (name.clone(), quantity(expr).to_owned())),
    );

    // Every expression returns data once a few scrapes are in.
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut empty = Vec::new();
        for (source, expr) in &expressions {
            let data = prometheus.query(expr).await;
            if !has_a_number(&data) {
                empty.push(format!("{source}: {expr}"));
            }
        }
        if empty.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let targets = prometheus.api("targets", &[]).await;
            panic!(
                "no data after {SETTLE:?} for:\n{}\ntargets: {targets:#}",
                empty.join("\n")
            );
        }
        // Keep the bus and the rooms busy meanwhile.
        say(&mut bob, &room, "still here").await;
        sleep(Duration::from_secs(2)).await;
    }

    // Every series named is one the nodes export.
    let exported = prometheus.api("label/__name__/values", &[]).await;
    let exported: Vec<&str> = exported
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (source, expr) in &expressions {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name.as_str()),
                "{source}: `{expr}` names {name}, which no node exports"
            );
        }
    }

    // The slow consumer fires its alert.
    let deadline = Instant::now() + SETTLE;
    loop {
        let alerts = prometheus.api("alerts", &[]).await;
        let firing = alerts["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["labels"]["alertname"] == "MeshiSlowConsumers" && a["state"] == "firing")
        });
        if firing {
            // On a healthy pair, nothing critical fires beside it.
            let critical: Vec<&Value> = alerts["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["labels"]["severity"] == "critical")
                .collect();
            assert!(critical.is_empty(), "critical alerts fire: {critical:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "MeshiSlowConsumers never fired: {alerts}"
        );
        sleep(Duration::from_secs(1)).await;
    }
}

#[test]
fn an_alert_splits_into_its_quantity_and_threshold() {
    assert_eq!(quantity("meshi_ready == 0"), "meshi_ready");
    assert_eq!(
        quantity("sum(rate(meshi_db_errors_total[5m])) > 0.5"),
        "sum(rate(meshi_db_errors_total[5m]))"
    );
    assert_eq!(
        metric_names("max(process_open_fds / process_max_fds) > 0.8"),
        ["process_open_fds", "process_max_fds"]
    );
}
