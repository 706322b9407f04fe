//! Every scenario, briefly, against a real server started in-process on
//! an ephemeral port: nothing lost, nothing duplicated, and a report that
//! makes sense.

use std::time::Duration;

use meshi_loadtest::check::CheckTotals;
use meshi_loadtest::scenario::{ChurnOpts, ConnectOpts, MixedOpts, PairsOpts, RoomsOpts};
use meshi_loadtest::{Env, EnvOptions, Report, Scenario};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A run that takes longer than this has hung.
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), meshi::app::ServeError>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server on a fresh SQLite file whose rate limit stays out of the
    /// way unless a test sets its own.
    async fn start_with(rate_per_sec: u32, rate_burst: u32) -> Server {
        Server::start_configured(|config| {
            config.rate_per_sec = rate_per_sec;
            config.rate_burst = rate_burst;
        })
        .await
    }

    /// A server with single sign-on by `secret` (and `iss`/`aud` checks
    /// when given).
    async fn start_sso(secret: &str, issuer: Option<&str>, audience: Option<&str>) -> Server {
        Server::start_configured(|config| {
            config.rate_per_sec = 10_000;
            config.rate_burst = 10_000;
            config.jwt_secret = Some(meshi::config::Secret::new(secret));
            config.jwt_issuer = issuer.map(str::to_owned);
            config.jwt_audience = audience.map(str::to_owned);
        })
        .await
    }

    async fn start_configured(configure: impl FnOnce(&mut meshi::config::Config)) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = meshi::config::Config::defaults();
        config.lift_abuse_limits();
        config.database_url = format!("sqlite://{}", dir.path().join("meshi.db").display());
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(meshi::serve(listener, config, async {
            let _ = stopped.await;
        }));
        let server = Server {
            url,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    async fn start() -> Server {
        Server::start_with(10_000, 10_000).await
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(resp) = http.get(format!("{}/healthz", self.url)).send().await {
                if resp.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server at {} never became healthy", self.url);
    }

    fn env(&self) -> EnvOptions {
        EnvOptions {
            urls: vec![self.url.clone()],
            quiet: true,
            socket_rate: 10_000.0,
            timeout: 5.0,
            register_concurrency: 4,
            ..EnvOptions::default()
        }
    }

    /// The same over `workers` worker processes of the tool itself (this
    /// test's own executable is the test harness, not the tool).
    fn over_workers(&self, workers: usize) -> EnvOptions {
        EnvOptions {
            workers,
            worker_exe: Some(env!("CARGO_BIN_EXE_meshi-loadtest").into()),
            ..self.env()
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the server stops in time")
                .expect("the server task joins")
                .expect("the server stops cleanly");
        }
    }
}

async fn run(options: EnvOptions, scenario: Scenario) -> Report {
    let env = Env::new(options).expect("valid options");
    tokio::time::timeout(RUN_LIMIT, meshi_loadtest::run(env, scenario))
        .await
        .expect("the run ends by itself")
        .expect("the run completes")
}

fn counter(report: &Report, name: &str) -> u64 {
    report.counters.get(name).copied().unwrap_or(0)
}

/// What every report must satisfy: it passed, its checks are clean, its
/// percentiles are ordered, and it survives JSON and renders as HTML.
fn assert_sane(report: &Report) {
    let summary = report.summary();
    assert!(report.passed, "{summary}");
    assert!(report.correctness.clean(), "{summary}");
    assert!(counter(report, "sockets_connected") > 0, "{summary}");
    assert!(!report.latency_ms.is_empty(), "{summary}");
    for (name, p) in &report.latency_ms {
        assert!(p.count > 0, "{name}: {p:?}");
        assert!(p.ordered(), "{name} percentiles out of order: {p:?}");
    }
    assert!(report.load_secs > 0.0, "{summary}");
    assert!(!report.timeline.t_secs.is_empty(), "{summary}");
    for (name, values) in &report.timeline.series {
        assert_eq!(values.len(), report.timeline.t_secs.len(), "{name}");
    }
    let json = report.to_json();
    let back: Report = serde_json::from_str(&json).expect("the JSON reads back");
    assert_eq!(back.counters, report.counters);
    let html = meshi_loadtest::html::render(report);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<svg"));
    assert!(
        !html.contains(" src=") && !html.contains(" href=") && !html.contains("<script"),
        "the page loads nothing from elsewhere"
    );
}

/// The report is sane, passed, and found nothing lost, duplicated or out
/// of order; returns its summary for further messages.
fn assert_passed_clean(report: &Report) -> String {
    assert_sane(report);
    let summary = report.summary();
    assert!(summary.contains("PASSED"), "{summary}");
    let checks = &report.correctness;
    assert_eq!(
        (checks.lost, checks.duplicated, checks.out_of_order),
        (0, 0, 0),
        "{summary}"
    );
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_deliver_every_message_to_every_member_once() {
    let server = Server::start().await;
    let report = run(
        server.env(),
        Scenario::Rooms(RoomsOpts {
            rooms: 2,
            members: 4,
            publishers: 2,
            rate: 80.0,
            duration: 1.5,
            ..RoomsOpts::default()
        }),
    )
    .await;
    assert_sane(&report);
    let acked = counter(&report, "room_acked");
    assert!(acked > 50, "{}", report.summary());
    assert_eq!(counter(&report, "room_sent"), acked);
    assert_eq!(counter(&report, "room_delivered"), acked * 4);
    assert_eq!(report.correctness.streams, 8);
    assert_eq!(report.correctness.messages, acked * 4);
    assert!(report.rates["room_delivered_per_sec"] > 0.0);
    assert!(report.latency_ms.contains_key("room_delivery"));
    server.stop().await;
}

/// A report that found a message lost, delivered twice or out of order
/// fails (the tool then exits with status 1), whatever else went well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_found_loss_duplicates_or_disorder_fails() {
    let server = Server::start().await;
    let clean = run(
        server.env(),
        Scenario::Rooms(RoomsOpts {
            rooms: 1,
            members: 2,
            publishers: 1,
            rate: 20.0,
            duration: 0.5,
            ..RoomsOpts::default()
        }),
    )
    .await;
    assert_passed_clean(&clean);
    for (what, found) in [
        (
            "messages lost",
            CheckTotals {
                lost: 1,
                ..clean.correctness
            },
        ),
        (
            "delivered twice",
            CheckTotals {
                duplicated: 1,
                ..clean.correctness
            },
        ),
        (
            "out of order",
            CheckTotals {
                out_of_order: 1,
                ..clean.correctness
            },
        ),
    ] {
        let mut report = clean.clone();
        report.correctness = found;
        report.failures.clear();
        report.judge(&[]);
        assert!(!report.passed, "{what}: {}", report.summary());
        assert!(report.summary().contains("FAILED"), "{what}");
        assert!(
            report.failures.iter().any(|f| f.contains(what)),
            "{what}: {:?}",
            report.failures
        );
    }
    server.stop().await;
}

/// Two nodes of one cluster: one SQLite file between them, and the tests'
/// shared Redis (see `meshi_testkit`) under a key prefix of their own.
async fn start_cluster() -> (Server, Server, String) {
    let redis_url = meshi_testkit::redis_url();
    let prefix = format!("meshi-loadtest-{:016x}", fastrand::u64(..));
    let node = |id: &'static str, database_url: Option<String>| {
        let prefix = prefix.clone();
        move |config: &mut meshi::config::Config| {
            config.rate_per_sec = 10_000;
            config.rate_burst = 10_000;
            config.redis_url = Some(redis_url.to_owned());
            config.redis_prefix = prefix;
            config.node_id = Some(id.to_owned());
            if let Some(url) = database_url {
                config.database_url = url;
            }
        }
    };
    let first = Server::start_configured(node("a", None)).await;
    let shared = format!("sqlite://{}", first._dir.path().join("meshi.db").display());
    let second = Server::start_configured(node("b", Some(shared))).await;
    (first, second, prefix)
}

/// Deletes every key under `<prefix>:` in the Redis the cluster used.
async fn clear_prefix(prefix: &str) {
    let client = redis::Client::open(meshi_testkit::redis_url()).expect("Redis URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut redis)
            .await
            .expect("DEL");
    }
}

/// The tool spreads one run's sockets over several nodes (`--url`
/// repeated, dealt out in turn), and every room message still reaches
/// every member once and in order, across the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_over_two_nodes_of_a_cluster() {
    let (a, b, prefix) = start_cluster().await;
    let options = EnvOptions {
        urls: vec![a.url.clone(), b.url.clone()],
        ..a.env()
    };
    let report = run(
        options,
        Scenario::Rooms(RoomsOpts {
            rooms: 2,
            members: 4,
            publishers: 2,
            rate: 60.0,
            duration: 1.5,
            ..RoomsOpts::default()
        }),
    )
    .await;
    let summary = assert_passed_clean(&report);
    let acked = counter(&report, "room_acked");
    assert!(acked > 30, "{summary}");
    assert_eq!(counter(&report, "room_delivered"), acked * 4, "{summary}");
    assert_eq!(report.correctness.streams, 8, "{summary}");
    b.stop().await;
    a.stop().await;
    clear_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_ping_pong_persisted_messages() {
    let server = Server::start().await;
    let report = run(
        server.env(),
        Scenario::Pairs(PairsOpts {
            pairs: 3,
            duration: 1.5,
            inflight: 2,
            ..PairsOpts::default()
        }),
    )
    .await;
    assert_sane(&report);
    assert!(counter(&report, "dm_round_trips") > 0);
    assert_eq!(
        counter(&report, "dm_delivered"),
        counter(&report, "dm_acked") * 2,
        "both sides get every message: {}",
        report.summary()
    );
    assert!(report.latency_ms["dm_round_trip"].p50 > 0.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_cycles_sockets_through_rooms() {
    let server = Server::start().await;
    let report = run(
        server.env(),
        Scenario::Churn(ChurnOpts {
            churners: 4,
            rooms: 2,
            duration: 1.5,
            dwell_ms: 100,
            anchor_rate: 20.0,
            max_cycles: 1_000,
        }),
    )
    .await;
    assert_sane(&report);
    let cycles = counter(&report, "churn_cycles");
    assert!(cycles >= 4, "{}", report.summary());
    assert_eq!(counter(&report, "room_leaves"), cycles);
    assert!(counter(&report, "room_delivered") > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_and_holds_sockets_and_reads_server_memory() {
    let server = Server::start().await;
    let options = EnvOptions {
        // The server runs in this process, so this process is the server.
        server_pid: Some(std::process::id()),
        sources: 2,
        ..server.env()
    };
    let report = run(
        options,
        Scenario::Connect(ConnectOpts {
            sockets: 30,
            users: Some(3),
            rate: 500.0,
            hold: 1.0,
        }),
    )
    .await;
    assert_sane(&report);
    assert_eq!(counter(&report, "sockets_connected"), 30);
    assert_eq!(counter(&report, "hellos"), 30);
    assert!(report.figures["connect_per_sec"] > 0.0);
    assert!(report.figures.contains_key("server_bytes_per_socket"));
    assert!(report.server.as_ref().is_some_and(|s| s.rss_end_kib > 0));
    assert!(report.timeline.series.contains_key("sockets_open"));
    server.stop().await;
}

/// A server that is no process of this machine is read from its
/// `/metrics`: the same CPU, memory and per-socket figures as by pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reads_the_server_from_its_metrics_page() {
    let server = Server::start().await;
    let options = EnvOptions {
        server_metrics: true,
        ..server.env()
    };
    let report = run(
        options,
        Scenario::Connect(ConnectOpts {
            sockets: 30,
            users: Some(3),
            rate: 500.0,
            hold: 1.0,
        }),
    )
    .await;
    assert_sane(&report);
    assert!(report.figures.contains_key("server_bytes_per_socket"));
    let usage = report.server.as_ref().expect("server usage from /metrics");
    assert!(usage.rss_end_kib > 0 && usage.threads > 0, "{usage:?}");
    assert!(usage.cpu_secs > 0.0, "{usage:?}");
    assert!(report.timeline.series.contains_key("server_rss_mib"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_over_worker_processes_merges_into_one_report() {
    let server = Server::start().await;
    let options = EnvOptions {
        server_pid: Some(std::process::id()),
        ..server.over_workers(2)
    };
    let report = run(
        options,
        Scenario::Connect(ConnectOpts {
            sockets: 301,
            users: Some(7),
            rate: 1000.0,
            hold: 1.0,
        }),
    )
    .await;
    assert_sane(&report);
    let summary = report.summary();
    assert_eq!(counter(&report, "sockets_connected"), 301, "{summary}");
    assert_eq!(counter(&report, "hellos"), 301, "{summary}");
    assert_eq!(report.latency_ms["connect"].count, 301, "{summary}");
    assert_eq!(report.latency_ms["hello"].count, 301, "{summary}");
    assert_eq!(report.figures["connect_sockets_open"], 301.0, "{summary}");
    assert!(report.figures["connect_per_sec"] > 0.0, "{summary}");
    assert!(
        report.figures.contains_key("server_bytes_per_socket"),
        "{summary}"
    );
    assert!(report.transport_errors.is_empty(), "{summary}");
    let open = &report.timeline.series["sockets_open"];
    assert!(
        open.iter().flatten().any(|&n| n == 301.0),
        "the workers' sockets add up in the timeline: {open:?}"
    );
    for phase in [
        "connect: register users",
        "connect: open sockets",
        "connect: hold",
    ] {
        assert!(
            report.phases.iter().any(|p| p.name == phase),
            "{phase}: {summary}"
        );
    }
    assert!(summary.contains("PASSED"), "{summary}");
    server.stop().await;
}

/// The HS256 secret of the single sign-on tests: 32 bytes or more, as the
/// server demands.
const JWT_SECRET: &str = "load-test-secret-0123456789abcdef-0123456789";

/// A file holding `secret` the way people write one: with a newline.
fn secret_file(secret: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), format!("{secret}\n")).expect("write the secret");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_minted_jwts_over_worker_processes() {
    let server = Server::start_sso(JWT_SECRET, Some("test-idp"), Some("meshi-test")).await;
    let secret = secret_file(JWT_SECRET);
    let options = EnvOptions {
        jwt_secret_file: Some(secret.path().to_owned()),
        jwt_issuer: Some("test-idp".to_owned()),
        jwt_audience: Some("meshi-test".to_owned()),
        // The parent mints; the workers get the tokens over their stdin.
        ..server.over_workers(2)
    };
    let report = run(
        options,
        Scenario::Connect(ConnectOpts {
            sockets: 40,
            users: Some(10),
            rate: 1000.0,
            hold: 1.0,
        }),
    )
    .await;
    assert_sane(&report);
    let summary = report.summary();
    assert!(summary.contains("PASSED"), "{summary}");
    assert_eq!(counter(&report, "sockets_connected"), 40, "{summary}");
    assert_eq!(counter(&report, "hellos"), 40, "{summary}");
    assert!(report.errors_by_code.is_empty(), "{summary}");
    assert!(
        report.notes.iter().any(|n| n.contains("--jwt-secret-file")),
        "{summary}"
    );
    let json = report.to_json();
    assert!(
        !json.contains(JWT_SECRET),
        "the report never holds the secret"
    );
    assert!(!json.contains("eyJ"), "nor a token");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_with_minted_jwts_match_and_talk() {
    let server = Server::start_sso(JWT_SECRET, None, None).await;
    let secret = secret_file(JWT_SECRET);
    let options = EnvOptions {
        jwt_secret_file: Some(secret.path().to_owned()),
        ..server.env()
    };
    let report = run(
        options,
        Scenario::Pairs(PairsOpts {
            pairs: 3,
            duration: 1.5,
            inflight: 2,
            ..PairsOpts::default()
        }),
    )
    .await;
    assert_sane(&report);
    let summary = report.summary();
    assert!(summary.contains("PASSED"), "{summary}");
    assert_eq!(counter(&report, "hellos"), 6, "{summary}");
    assert!(counter(&report, "dm_round_trips") > 0, "{summary}");
    assert_eq!(
        counter(&report, "dm_delivered"),
        counter(&report, "dm_acked") * 2,
        "{summary}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_server_does_not_share_is_refused_with_a_hint() {
    let server = Server::start_sso(JWT_SECRET, None, None).await;
    let other = secret_file("another-secret-of-enough-length-0123456789");
    let options = EnvOptions {
        jwt_secret_file: Some(other.path().to_owned()),
        ..server.env()
    };
    let env = Env::new(options).expect("valid options");
    let err = meshi_loadtest::run(
        env,
        Scenario::Connect(ConnectOpts {
            sockets: 2,
            users: None,
            rate: 100.0,
            hold: 0.5,
        }),
    )
    .await
    .expect_err("the server refuses tokens of another secret");
    let err = format!("{err:#}");
    assert!(err.contains("MESHI_JWT_SECRET_FILE"), "{err}");
    assert!(
        !err.contains("another-secret") && !err.contains("eyJ"),
        "{err}"
    );

    let short = secret_file("short");
    let options = EnvOptions {
        jwt_secret_file: Some(short.path().to_owned()),
        ..server.env()
    };
    assert!(Env::new(options).is_err(), "a secret under 32 bytes");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_over_worker_processes_keep_each_room_in_one() {
    let server = Server::start().await;
    let options = server.over_workers(2);
    let report = run(
        options,
        Scenario::Rooms(RoomsOpts {
            rooms: 3,
            members: 4,
            publishers: 2,
            rate: 90.0,
            duration: 1.5,
            ..RoomsOpts::default()
        }),
    )
    .await;
    let summary = assert_passed_clean(&report);
    let checks = &report.correctness;
    assert_eq!(counter(&report, "sockets_connected"), 12, "{summary}");
    let acked = counter(&report, "room_acked");
    assert!(acked > 50, "{summary}");
    assert_eq!(counter(&report, "room_sent"), acked, "{summary}");
    assert_eq!(counter(&report, "room_delivered"), acked * 4, "{summary}");
    assert_eq!(checks.streams, 12, "{summary}");
    assert_eq!(checks.messages, acked * 4, "{summary}");
    assert_eq!(report.latency_ms["room_ack"].count, acked, "{summary}");
    assert_eq!(
        report.latency_ms["room_delivery"].count,
        acked * 4,
        "{summary}"
    );
    assert_eq!(report.figures["rooms_member_sockets"], 12.0, "{summary}");
    assert_eq!(
        report.figures["rooms_target_msgs_per_sec"], 90.0,
        "{summary}"
    );
    for phase in [
        "rooms: register users",
        "rooms: open and join",
        "rooms: load",
    ] {
        assert!(
            report.phases.iter().any(|p| p.name == phase),
            "{phase}: {summary}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_over_worker_processes_keep_each_pair_in_one() {
    let server = Server::start().await;
    let options = server.over_workers(2);
    let report = run(
        options,
        Scenario::Pairs(PairsOpts {
            pairs: 3,
            duration: 1.5,
            inflight: 2,
            ..PairsOpts::default()
        }),
    )
    .await;
    let summary = assert_passed_clean(&report);
    let checks = &report.correctness;
    assert_eq!(counter(&report, "sockets_connected"), 6, "{summary}");
    let acked = counter(&report, "dm_acked");
    let trips = counter(&report, "dm_round_trips");
    assert!(trips > 0, "{summary}");
    assert_eq!(counter(&report, "dm_sent"), acked, "{summary}");
    assert_eq!(counter(&report, "dm_delivered"), acked * 2, "{summary}");
    assert_eq!(checks.streams, 6, "{summary}");
    assert_eq!(checks.messages, acked * 2, "{summary}");
    assert_eq!(report.latency_ms["dm_round_trip"].count, trips, "{summary}");
    assert!(
        report
            .phases
            .iter()
            .any(|p| p.name == "pairs: register and match"),
        "{summary}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_over_worker_processes_keeps_churners_with_their_rooms() {
    let server = Server::start().await;
    let options = server.over_workers(2);
    let report = run(
        options,
        Scenario::Churn(ChurnOpts {
            churners: 6,
            rooms: 3,
            duration: 1.5,
            dwell_ms: 100,
            anchor_rate: 20.0,
            max_cycles: 1_000,
        }),
    )
    .await;
    let summary = assert_passed_clean(&report);
    let cycles = counter(&report, "churn_cycles");
    assert!(cycles >= 6, "{summary}");
    assert_eq!(counter(&report, "room_joins"), cycles, "{summary}");
    assert_eq!(counter(&report, "room_leaves"), cycles, "{summary}");
    // Every cycle connects once, and so does each room's anchor.
    assert_eq!(
        counter(&report, "sockets_connected"),
        cycles + 3,
        "{summary}"
    );
    assert!(counter(&report, "room_delivered") > 0, "{summary}");
    // One checked stream per cycle's stay, and one per anchor.
    assert_eq!(report.correctness.streams, cycles + 3, "{summary}");
    assert_eq!(report.latency_ms["churn_cycle"].count, cycles, "{summary}");
    assert_eq!(report.latency_ms["room_join"].count, cycles, "{summary}");
    assert_eq!(
        report.latency_ms["room_ack"].count,
        counter(&report, "room_acked"),
        "{summary}"
    );
    for phase in [
        "churn: register users",
        "churn: open rooms",
        "churn: load",
        "churn: drain",
    ] {
        assert!(
            report.phases.iter().any(|p| p.name == phase),
            "{phase}: {summary}"
        );
    }
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("1-2 churn rooms and 3-3 churners")),
        "{summary}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_over_worker_processes_deals_out_every_part() {
    let server = Server::start().await;
    let options = server.over_workers(2);
    let report = run(
        options,
        Scenario::Mixed(MixedOpts {
            duration: 1.5,
            idle: 11,
            idle_rate: 500.0,
            rooms: 3,
            members: 3,
            publishers: 1,
            rate: 30.0,
            pairs: 2,
            churners: 4,
            churn_rooms: 1,
            max_cycles: 1_000,
        }),
    )
    .await;
    let summary = assert_passed_clean(&report);
    for name in ["room_delivered", "dm_round_trips", "churn_cycles", "hellos"] {
        assert!(counter(&report, name) > 0, "{name}: {summary}");
    }
    assert_eq!(report.figures["connect_sockets_open"], 11.0, "{summary}");
    assert_eq!(report.figures["rooms_member_sockets"], 9.0, "{summary}");
    assert_eq!(
        report.figures["rooms_target_msgs_per_sec"], 30.0,
        "{summary}"
    );
    // The idle sockets, the rooms' members, the pairs and the anchor, and
    // each churn cycle.
    let cycles = counter(&report, "churn_cycles");
    assert_eq!(
        counter(&report, "hellos"),
        11 + 9 + 4 + 1 + cycles,
        "{summary}"
    );
    assert_eq!(
        counter(&report, "dm_delivered"),
        counter(&report, "dm_acked") * 2,
        "{summary}"
    );
    assert_eq!(
        report.latency_ms["dm_round_trip"].count,
        counter(&report, "dm_round_trips"),
        "{summary}"
    );
    assert_eq!(report.latency_ms["churn_cycle"].count, cycles, "{summary}");
    for phase in [
        "connect: register users",
        "rooms: register users",
        "pairs: register and match",
        "churn: register users",
        "rooms: load",
        "pairs: load",
        "churn: load",
    ] {
        assert!(
            report.phases.iter().any(|p| p.name == phase),
            "{phase}: {summary}"
        );
    }
    // One churn room cannot be shared: it goes whole, with every churner,
    // to the first worker.
    assert!(
        report.notes.iter().any(|n| n.contains("5-6 sockets")
            && n.contains("1-2 rooms")
            && n.contains("1-1 churn rooms and 4-4 churners on 1 of the workers")),
        "{summary}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_the_workers_cannot_share_whole_are_refused() {
    let options = EnvOptions {
        urls: vec!["http://127.0.0.1:1".to_owned()],
        workers: 2,
        quiet: true,
        ..EnvOptions::default()
    };
    let one_of_each = MixedOpts {
        idle: 1,
        rooms: 1,
        rate: 10.0,
        pairs: 1,
        churners: 1,
        ..MixedOpts::default()
    };
    for (scenario, refused) in [
        (
            Scenario::Rooms(RoomsOpts {
                rooms: 1,
                rate: 10.0,
                ..RoomsOpts::default()
            }),
            "1 rooms cannot be shared by 2 workers",
        ),
        (
            Scenario::Churn(ChurnOpts {
                rooms: 1,
                ..ChurnOpts::default()
            }),
            "1 churn rooms cannot be shared by 2 workers",
        ),
        (Scenario::Mixed(one_of_each), "use --workers 1 or fewer"),
    ] {
        let env = Env::new(options.clone()).expect("valid options");
        let name = scenario.name();
        // Refused before anything is sent: nothing listens on port 1.
        let err = meshi_loadtest::run(env, scenario)
            .await
            .expect_err("a load that cannot be shared whole");
        assert!(err.to_string().contains(refused), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_runs_every_part_over_one_window() {
    let server = Server::start().await;
    let report = run(
        server.env(),
        Scenario::Mixed(MixedOpts {
            duration: 1.5,
            idle: 10,
            rooms: 1,
            members: 3,
            publishers: 1,
            rate: 20.0,
            pairs: 2,
            churners: 2,
            ..MixedOpts::default()
        }),
    )
    .await;
    assert_sane(&report);
    for name in ["room_delivered", "dm_round_trips", "churn_cycles", "hellos"] {
        assert!(counter(&report, name) > 0, "{name}: {}", report.summary());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_the_rate_limit_are_counted_and_nothing_is_lost() {
    // A server far stricter than the tool is told: its refusals must show
    // up by code, and refused sends must not look like lost messages.
    let server = Server::start_with(20, 5).await;
    let options = EnvOptions {
        socket_rate: 100.0,
        ..server.env()
    };
    let report = run(
        options,
        Scenario::Rooms(RoomsOpts {
            rooms: 1,
            members: 2,
            publishers: 1,
            rate: 60.0,
            duration: 1.5,
            ..RoomsOpts::default()
        }),
    )
    .await;
    let summary = report.summary();
    assert!(
        report
            .errors_by_code
            .get("rate_limited")
            .copied()
            .unwrap_or(0)
            > 0,
        "{summary}"
    );
    assert!(report.correctness.clean(), "{summary}");
    assert!(report.passed, "{summary}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_paces_itself_under_the_server_limit() {
    let server = Server::start_with(20, 40).await;
    let options = EnvOptions {
        socket_rate: 20.0,
        ..server.env()
    };
    let too_fast = RoomsOpts {
        rooms: 1,
        members: 2,
        publishers: 1,
        rate: 50.0,
        duration: 1.0,
        ..RoomsOpts::default()
    };
    let env = Env::new(options.clone()).expect("valid options");
    let err = meshi_loadtest::run(env, Scenario::Rooms(too_fast))
        .await
        .expect_err("a publisher above the socket rate is refused up front");
    assert!(err.to_string().contains("--socket-rate"), "{err}");
    let report = run(
        options,
        Scenario::Rooms(RoomsOpts {
            rooms: 1,
            members: 2,
            publishers: 1,
            rate: 15.0,
            duration: 1.5,
            ..RoomsOpts::default()
        }),
    )
    .await;
    assert_sane(&report);
    assert!(report.errors_by_code.is_empty(), "{}", report.summary());
    server.stop().await;
}

#[test]
fn targets_off_loopback_are_refused() {
    for url in [
        "http://10.0.0.1:8080",
        "http://192.168.0.10",
        "http://8.8.8.8:80",
        "http://example.com:8080",
        "http://[2001:db8::1]:8080",
    ] {
        let options = EnvOptions {
            urls: vec![url.to_owned()],
            quiet: true,
            ..EnvOptions::default()
        };
        let err = Env::new(options)
            .err()
            .unwrap_or_else(|| panic!("{url} must be refused"));
        assert!(!err.to_string().is_empty());
    }
    let owned = EnvOptions {
        urls: vec!["http://10.0.0.1:8080".to_owned()],
        i_own_this_target: true,
        quiet: true,
        ..EnvOptions::default()
    };
    assert!(Env::new(owned).is_ok(), "allowed when the operator owns it");
    let mixed = EnvOptions {
        urls: vec![
            "http://127.0.0.1:1".to_owned(),
            "http://10.0.0.1:1".to_owned(),
        ],
        quiet: true,
        ..EnvOptions::default()
    };
    assert!(
        Env::new(mixed).is_err(),
        "one foreign URL among loopback ones is refused too"
    );
    let foreign_source = EnvOptions {
        urls: vec!["http://127.0.0.1:1".to_owned()],
        source_ips: vec!["10.1.2.3".parse().unwrap()],
        quiet: true,
        ..EnvOptions::default()
    };
    assert!(Env::new(foreign_source).is_err());
}
