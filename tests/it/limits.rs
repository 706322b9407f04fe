//! Protection and operations: the rate limit, slow consumers, heartbeats,
//! metrics, health checks and the graceful drain.

use std::time::Duration;

use crate::common::{Ended, TestServer, WsClient, RECV_TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Generous bound for a close the server should send soon.
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

/// The value of an unlabelled sample in Prometheus text, if present.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

async fn metrics_text(server: &TestServer) -> String {
    let resp = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "/metrics content type {content_type:?}"
    );
    resp.text().await.expect("metrics body")
}

// --- rate limit ---------------------------------------------------------

#[tokio::test]
async fn a_burst_is_rate_limited_with_retry_after_and_then_recovers() {
    let server = TestServer::start_with(|config| {
        config.rate_per_sec = 5;
        config.rate_burst = 10;
    })
    .await;
    let (mut client, _, _) = server.user("aiko").await;

    // `hello` used one of the ten; fifteen more at once overflow the
    // bucket, but fewer than ten in a row are refused, so this is no abuse.
    let refs: Vec<String> = (0..15).map(|i| format!("burst-{i}")).collect();
    for reference in &refs {
        client.send(json!({"type": "ping", "ref": reference})).await;
    }
    let mut oks = 0;
    let mut limited = Vec::new();
    for reference in &refs {
        let reply = client
            .next_matching(|f| f["ref"] == reference.as_str())
            .await;
        match reply["type"].as_str() {
            Some("ok") => oks += 1,
            Some("error") => {
                assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
                let retry_after_ms = reply["error"]["retry_after_ms"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("retry_after_ms is a number in {reply}"));
                assert!(retry_after_ms > 0, "{reply}");
                // One frame at 5/s is never more than 200 ms away.
                assert!(retry_after_ms <= 1_000, "{reply}");
                limited.push(retry_after_ms);
            }
            _ => panic!("unexpected reply {reply}"),
        }
    }
    assert!(oks >= 1, "nothing of the burst was let through");
    assert!(
        !limited.is_empty(),
        "15 frames on top of hello with a burst of 10 were all let through"
    );
    // Exactly one reply each.
    client.assert_no("ok", Duration::from_millis(300)).await;
    assert!(
        client.pending().iter().all(|f| f["type"] != "error"),
        "extra errors: {:?}",
        client.pending()
    );

    // Waiting as told (and then some) makes room again.
    let wait = limited.iter().copied().max().unwrap_or(0) + 800;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let pong = client.ok(json!({"type": "ping"})).await;
    assert!(pong["server_time"].is_string(), "{pong}");
    let rooms = client.ok(json!({"type": "room.list"})).await;
    assert!(rooms["rooms"].is_array(), "{rooms}");
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limited_frames_without_ref_get_errors_without_ref() {
    let server = TestServer::start_with(|config| {
        config.rate_per_sec = 5;
        config.rate_burst = 10;
    })
    .await;
    let (mut client, _, _) = server.user("aiko").await;
    for _ in 0..14 {
        client.send(json!({"type": "ping"})).await;
    }
    let error = client.next_of("error").await;
    assert_eq!(error["error"]["code"], "rate_limited", "{error}");
    assert!(error.get("ref").is_none(), "{error}");
    assert!(
        error["error"]["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0),
        "{error}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn sustained_flooding_closes_with_4008() {
    let server = TestServer::start_with(|config| {
        config.rate_per_sec = 5;
        config.rate_burst = 10;
    })
    .await;
    let (mut client, _, _) = server.user("aiko").await;
    let ws = client.raw();
    for i in 0..80 {
        let frame = json!({"type": "ping", "ref": i}).to_string();
        // Once the server has closed, sends may fail; that is the point.
        if ws.send(Message::text(frame)).await.is_err() {
            break;
        }
    }
    assert_eq!(client.closed_with(CLOSE_WITHIN).await, Ended::Closed(4008));

    // Others are not affected.
    let (mut other, _, _) = server.user("bob").await;
    other.ok(json!({"type": "ping"})).await;
    server.shutdown().await;
}

#[tokio::test]
async fn binary_frames_count_against_the_rate_limit() {
    let server = TestServer::start_with(|config| {
        config.rate_per_sec = 5;
        config.rate_burst = 10;
    })
    .await;
    let (mut client, _, _) = server.user("aiko").await;
    let ws = client.raw();
    for _ in 0..80 {
        // Once the server has closed, sends may fail; that is the point.
        if ws.send(Message::binary(vec![0u8; 16])).await.is_err() {
            break;
        }
    }
    // Eighty frames at once against a burst of ten is the same abuse
    // whatever their kind.
    assert_eq!(client.closed_with(CLOSE_WITHIN).await, Ended::Closed(4008));
    server.shutdown().await;
}

#[test]
fn the_defaults_are_the_contracts() {
    let config = meshi::config::Config::defaults();
    assert_eq!(config.max_frame_bytes, 64 * 1024);
    assert_eq!(config.rate_per_sec, 20);
    assert_eq!(config.rate_burst, 40);
    assert_eq!(config.hello_timeout_ms, 10_000);
    assert!(config.room_history >= 100);
    assert!(config.outbox_frames > 0 && config.heartbeat_ms > 0);
}

// --- slow consumers -----------------------------------------------------

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4009_and_the_room_goes_on() {
    /// Stop if the slow socket is still open after this many messages.
    const MAX_FLOOD: u64 = 30_000;
    let server = TestServer::start_with(|config| {
        config.outbox_frames = 16;
        config.rate_per_sec = 1_000_000;
        config.rate_burst = 1_000_000;
    })
    .await;
    let (mut sender, _, _) = server.user("sender").await;
    let (mut slow, _, slow_id) = server.user("slow").await;
    let (mut reader, _, _) = server.user("reader").await;
    let created = sender
        .ok(json!({"type": "room.create", "name": "firehose"}))
        .await;
    let room_id = created["room"]["id"].as_str().expect("room id").to_owned();
    slow.ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    reader
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;

    // The reader reads everything until the closing message.
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            let message = reader.next_of("room.message").await;
            seqs.push(message["seq"].as_u64().expect("seq"));
            if message["text"] == "END" {
                break;
            }
        }
        (reader, seqs)
    });

    // `slow` never reads from here on. Flood until the server drops it
    // from the room (its socket is gone) or give up.
    let text = "x".repeat(3000);
    let mut sent = 0u64;
    let slow_left = |client: &WsClient| {
        client
            .pending()
            .iter()
            .any(|f| f["type"] == "room.member_left" && f["user_id"] == slow_id.as_str())
    };
    while sent < MAX_FLOOD && !slow_left(&sender) {
        let ok = sender
            .ok(json!({"type": "room.send", "room_id": room_id, "text": text}))
            .await;
        sent += 1;
        assert_eq!(ok["seq"], sent, "{ok}");
        let echo = sender.next_of("room.message").await;
        assert_eq!(echo["seq"], sent);
    }
    assert!(
        slow_left(&sender),
        "the slow consumer was still in the room after {sent} messages of 3000 chars"
    );
    let end = sender
        .ok(json!({"type": "room.send", "room_id": room_id, "text": "END"}))
        .await;
    let end_seq = end["seq"].as_u64().expect("seq");
    assert_eq!(end_seq, sent + 1);

    // The slow socket gets its backlog, then the 4009 close.
    assert_eq!(
        slow.closed_with(Duration::from_secs(120)).await,
        Ended::Closed(4009),
        "after {sent} messages"
    );

    let (mut reader, seqs) = timeout(Duration::from_secs(120), reading)
        .await
        .expect("the reader gets every message in time")
        .expect("the reader task succeeds");
    let expected: Vec<u64> = (1..=end_seq).collect();
    assert!(
        seqs == expected,
        "the reader got {} messages, expected {end_seq} in order; first gap near {:?}",
        seqs.len(),
        seqs.windows(2).find(|w| w[1] != w[0] + 1)
    );
    // Neither the reader nor the sender was slowed into a close.
    reader.ok(json!({"type": "ping"})).await;
    sender.ok(json!({"type": "ping"})).await;
    assert!(
        reader
            .pending()
            .iter()
            .any(|f| f["type"] == "room.member_left" && f["user_id"] == slow_id.as_str()),
        "the reader saw the slow consumer leave: {:?}",
        reader.pending()
    );
    let metrics = metrics_text(&server).await;
    assert!(
        sample(&metrics, "meshi_slow_consumer_closes_total").is_some_and(|v| v >= 1.0),
        "slow consumer closes not counted:\n{metrics}"
    );
    server.shutdown().await;
}

// --- heartbeat ----------------------------------------------------------

#[tokio::test]
async fn a_reading_client_gets_pings_and_stays_open() {
    let heartbeat_ms = 300;
    let server = TestServer::start_with(|config| config.heartbeat_ms = heartbeat_ms).await;
    let (token, _) = server.register("aiko").await;
    let mut client = WsClient::connect(&server).await;
    let hello = client.ok(json!({"type": "hello", "token": token})).await;
    assert_eq!(hello["heartbeat_ms"], heartbeat_ms);

    // The server pings; reading answers them (tungstenite sends the pongs).
    let mut pings = 0;
    let ws = client.raw();
    timeout(Duration::from_secs(15), async {
        while pings < 3 {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Text(text))) => panic!("unexpected frame {text}"),
                Some(Ok(_)) => {}
                other => panic!("socket ended while reading: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {pings} pings arrived in 15 s"));

    // Well past two intervals of nothing but pongs, the socket is open.
    client
        .assert_no("error", Duration::from_millis(heartbeat_ms * 8))
        .await;
    client.ok(json!({"type": "ping"})).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_with_1001_after_two_intervals() {
    let heartbeat = Duration::from_millis(300);
    let server = TestServer::start_with(|config| {
        config.heartbeat_ms = heartbeat.as_millis() as u64;
    })
    .await;
    let (host_token, _) = server.register("host").await;
    let (silent_token, silent_id) = server.register("silent").await;
    let mut host = WsClient::hello(&server, &host_token).await;
    let created = host
        .ok(json!({"type": "room.create", "name": "who is quiet"}))
        .await;
    let room_id = created["room"]["id"].as_str().expect("room id").to_owned();

    // The host keeps reading (and so answering pings) in the background
    // until the silent one is gone from the room.
    let watching = {
        let silent_id = silent_id.clone();
        tokio::spawn(async move {
            let left = host
                .next_matching(|f| f["type"] == "room.member_left" && f["user_id"] == silent_id)
                .await;
            (host, left)
        })
    };

    let mut silent = WsClient::hello(&server, &silent_token).await;
    silent
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    let silent_since = Instant::now();

    // Reading would answer the server's pings, so watch the kernel buffer
    // instead until the server's close frame has arrived in it.
    wait_for_close_frame(&mut silent, 1001, Duration::from_secs(20)).await;
    let after = silent_since.elapsed();
    assert!(
        after < heartbeat * 2 + Duration::from_secs(4),
        "a silent socket was closed only after {after:?}"
    );
    // Reading now, the silent client finds the 1001 close.
    assert_eq!(silent.closed_with(CLOSE_WITHIN).await, Ended::Closed(1001));

    // It left the room.
    let (mut host, left) = timeout(Duration::from_secs(30), watching)
        .await
        .expect("the silent socket leaves the room in time")
        .expect("the host task succeeds");
    assert_eq!(left["room_id"], room_id.as_str());
    // The host, who answered pings all along, is still here.
    host.ok(json!({"type": "ping"})).await;
    server.shutdown().await;
}

/// Waits, without reading the socket (which would answer pings), until the
/// server's close frame with `code` sits in the client's receive buffer.
async fn wait_for_close_frame(client: &mut WsClient, code: u16, within: Duration) {
    let tcp = match client.raw().get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => panic!("the test server speaks plain TCP"),
    };
    let [hi, lo] = code.to_be_bytes();
    let mut buf = vec![0u8; 1 << 20];
    timeout(within, async {
        loop {
            let n = tcp.peek(&mut buf).await.expect("peek the socket");
            // FIN + close opcode, a short payload, then the code.
            let found = buf[..n]
                .windows(4)
                .any(|w| w[0] == 0x88 && (2..=125).contains(&w[1]) && w[2] == hi && w[3] == lo);
            if found {
                break;
            }
            assert!(n > 0, "the socket ended without a close frame");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no close frame with {code} within {within:?}"));
}

// --- operations ---------------------------------------------------------

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_meshi_series() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    client.ok(json!({"type": "ping"})).await;

    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("# TYPE "),
        "not Prometheus text:\n{metrics}"
    );
    for name in [
        "meshi_connections",
        "meshi_frames_in_total",
        "meshi_frames_out_total",
        "meshi_rooms_open",
        "meshi_rate_limited_total",
        "meshi_slow_consumer_closes_total",
    ] {
        assert!(
            sample(&metrics, name).is_some(),
            "no sample for {name} in:\n{metrics}"
        );
    }
    let build = format!(
        "meshi_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with(&build) && line.ends_with("\"} 1")),
        "{build}…\"}} 1 in:\n{metrics}"
    );
    // This test's socket is open and has sent and received frames.
    assert!(sample(&metrics, "meshi_connections").is_some_and(|v| v >= 1.0));
    assert!(sample(&metrics, "meshi_frames_in_total").is_some_and(|v| v >= 2.0));
    assert!(sample(&metrics, "meshi_frames_out_total").is_some_and(|v| v >= 2.0));
    server.shutdown().await;
}

/// Latencies are histograms with buckets, which add up across nodes (a
/// summary's quantiles cannot).
#[tokio::test]
async fn latencies_are_histograms_with_buckets() {
    let server = TestServer::start().await;
    let (mut alice, _, _) = server.user("alice").await;
    let room_id = crate::common::chat::create_room(&mut alice, "timed").await;
    crate::common::chat::say(&mut alice, &room_id, "one for the histogram").await;

    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("# TYPE meshi_fanout_seconds histogram"),
        "fan-out is a histogram:\n{metrics}"
    );
    assert!(
        metrics.contains("meshi_fanout_seconds_bucket{le=\"0.001\"}"),
        "with the seconds buckets:\n{metrics}"
    );
    assert!(
        !metrics.contains("quantile="),
        "no summaries are left:\n{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/healthz", None).await;
    assert_eq!(status, 200, "/healthz answered {body}");
    let (status, body) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "/readyz answered {body}");
    assert_eq!(body["database"], "ok", "/readyz answered {body}");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_reconnect_then_closes_every_socket_with_1012() {
    let reconnect_after_ms = 1_234;
    let mut server =
        TestServer::start_with(|config| config.reconnect_after_ms = reconnect_after_ms).await;
    let (mut alice, _, _) = server.user("alice").await;
    let (mut bob, _, _) = server.user("bob").await;
    let (token, _) = server.register("carol").await;
    let mut carol_tab1 = WsClient::hello(&server, &token).await;
    let mut carol_tab2 = WsClient::hello(&server, &token).await;
    let created = alice
        .ok(json!({"type": "room.create", "name": "last call"}))
        .await;
    let room_id = created["room"]["id"].as_str().expect("room id");
    bob.ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    // A socket that has not said hello yet is still a socket: make sure the
    // server has it (it answers) before draining.
    let mut anonymous = WsClient::connect(&server).await;
    anonymous
        .err(json!({"type": "room.list"}), "unauthenticated")
        .await;

    let addr = server.addr;
    let started = Instant::now();
    server.begin_shutdown();
    for (name, client) in [
        ("alice", &mut alice),
        ("bob", &mut bob),
        ("carol 1", &mut carol_tab1),
        ("carol 2", &mut carol_tab2),
        ("anonymous", &mut anonymous),
    ] {
        let push = client.next_of("reconnect").await;
        assert!(
            push["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{name}: {push}"
        );
        assert_eq!(push["retry_after_ms"], reconnect_after_ms, "{name}: {push}");
        assert!(push.get("ref").is_none(), "{name}: {push}");
        assert_eq!(
            client.closed_with(CLOSE_WITHIN).await,
            Ended::Closed(1012),
            "{name}"
        );
    }
    timeout(Duration::from_secs(60), server.wait_stopped())
        .await
        .expect("the server stops once its sockets are closed");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "draining took {:?}",
        started.elapsed()
    );
    // Nothing listens any more.
    let gone = timeout(
        RECV_TIMEOUT,
        reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .send(),
    )
    .await;
    assert!(
        !matches!(gone, Ok(Ok(ref resp)) if resp.status().is_success()),
        "the server still answers after stopping"
    );
}
