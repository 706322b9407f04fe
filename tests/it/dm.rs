//! Conversations of matched pairs over real sockets: ordering under
//! concurrent senders (SQLite and Postgres), `client_msg_id` dedupe,
//! history paging on the socket and over REST, read markers, typing
//! throttling, presence (including reconnects racing the offline grace)
//! and bad input.
//!
//! The Postgres test needs the shared server (see `crate::common::postgres`) and
//! fails, saying how to start it, when it is down.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::chat::{burst, Burst};
use crate::common::json::{parse_time, seqs};
use crate::common::platform::{match_pair, pair};
use crate::common::{TestServer, WsClient};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Messages each of the four sockets sends in the concurrency test.
const PER_SOCKET: usize = 50;
const SOCKETS: usize = 4;
const TOTAL: u64 = (PER_SOCKET * SOCKETS) as u64;

/// `dm.history` with extra fields; returns the messages.
async fn history(client: &mut WsClient, conversation: &str, extra: Value) -> Vec<Value> {
    let mut frame = json!({"type": "dm.history", "conversation_id": conversation});
    for (key, value) in extra.as_object().expect("extra fields are an object") {
        frame[key] = value.clone();
    }
    let data = client.ok(frame).await;
    data["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of messages, got {data}"))
        .clone()
}

async fn rest_messages(
    server: &TestServer,
    token: &str,
    conversation: &str,
    query: &str,
) -> Vec<Value> {
    let (status, body) = server
        .get(
            &format!("/api/v1/conversations/{conversation}/messages{query}"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "GET messages{query}: {body}");
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {body}"))
        .clone()
}

/// The caller's entry for `conversation` in GET /conversations.
async fn conversation_item(server: &TestServer, token: &str, conversation: &str) -> Value {
    let (status, list) = server.get("/api/v1/conversations", Some(token)).await;
    assert_eq!(status, 200, "GET /conversations: {list}");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["id"] == conversation)
        .unwrap_or_else(|| panic!("{conversation} missing from {list}"))
        .clone()
}

async fn unread(server: &TestServer, token: &str, conversation: &str) -> i64 {
    let item = conversation_item(server, token, conversation).await;
    item["unread_count"]
        .as_i64()
        .unwrap_or_else(|| panic!("unread_count in {item}"))
}

/// Sends each text as a message, one after the other, each acknowledged.
async fn send_texts(
    client: &mut WsClient,
    conversation: &str,
    texts: impl Iterator<Item = String>,
) {
    for text in texts {
        client
            .ok(json!({"type": "dm.send", "conversation_id": conversation, "text": text}))
            .await;
    }
}

/// The frames of `kind` that arrive before `since + window`.
async fn count_within(
    client: &mut WsClient,
    kind: &str,
    since: Instant,
    window: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::from_std(since + window);
    let mut seen = Vec::new();
    while let Ok(frame) = tokio::time::timeout_at(deadline, client.next_of(kind)).await {
        seen.push(frame);
    }
    seen
}

/// Sends [`PER_SOCKET`] messages without waiting between them, then reads
/// until every reply and all [`TOTAL`] pushes are in.
async fn send_burst(client: WsClient, socket: usize, conversation: String) -> Burst {
    let frames = (0..PER_SOCKET)
        .map(|i| {
            json!({
                "type": "dm.send",
                "conversation_id": conversation,
                "text": format!("socket {socket} message {i}"),
            })
        })
        .collect();
    burst(
        client,
        &format!("s{socket}"),
        frames,
        "dm.message",
        TOTAL as usize,
        Duration::from_millis(300),
    )
    .await
}

/// Both participants, two sockets each, send at once; seqs stay gap-free
/// and every socket sees every message exactly once, in order.
async fn concurrent_senders_keep_order(server: &TestServer) {
    let p = pair(server, server, "alice", "bobby").await;
    let mut clients = Vec::new();
    for token in [&p.a_token, &p.a_token, &p.b_token, &p.b_token] {
        clients.push(WsClient::hello(server, token).await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(socket, client)| tokio::spawn(send_burst(client, socket, p.conversation.clone())))
        .collect();
    let mut runs = Vec::new();
    for task in tasks {
        runs.push(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("a socket finishes within 60 s")
                .expect("socket task joins"),
        );
    }

    // The stored history, paged forward.
    let mut reader = WsClient::hello(server, &p.b_token).await;
    let first = history(
        &mut reader,
        &p.conversation,
        json!({"after_seq": 0, "limit": 100}),
    )
    .await;
    let second = history(
        &mut reader,
        &p.conversation,
        json!({"after_seq": 100, "limit": 100}),
    )
    .await;
    let rest = history(
        &mut reader,
        &p.conversation,
        json!({"after_seq": 200, "limit": 100}),
    )
    .await;
    assert_eq!(seqs(&first), (1..=100).collect::<Vec<_>>());
    assert_eq!(seqs(&second), (101..=200).collect::<Vec<_>>());
    assert_eq!(seqs(&rest), Vec::<u64>::new(), "nothing past seq 200");
    let stored: Vec<Value> = first.iter().chain(&second).cloned().collect();
    let text_at = |seq: u64| stored[(seq - 1) as usize]["text"].clone();
    let mut texts: Vec<&str> = stored.iter().map(|m| m["text"].as_str().unwrap()).collect();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(
        texts.len() as u64,
        TOTAL,
        "every message stored exactly once"
    );

    for (socket, run) in runs.iter().enumerate() {
        let sender = if socket < 2 { &p.a_id } else { &p.b_id };
        assert!(
            run.acked.windows(2).all(|w| w[0].1 < w[1].1),
            "socket {socket}: its sends are acknowledged in order: {:?}",
            run.acked
        );
        for (i, (_, seq)) in run.acked.iter().enumerate() {
            assert_eq!(
                text_at(*seq),
                format!("socket {socket} message {i}"),
                "socket {socket}: the ok's seq names the stored message"
            );
            assert_eq!(stored[(*seq - 1) as usize]["from"]["id"], sender.as_str());
        }
        assert_eq!(
            seqs(&run.pushes),
            (1..=TOTAL).collect::<Vec<_>>(),
            "socket {socket} receives every message once, in seq order"
        );
        for push in &run.pushes {
            let seq = push["seq"].as_u64().unwrap();
            let mut body = push.clone();
            body.as_object_mut()
                .expect("a push is an object")
                .remove("type");
            assert_eq!(
                body,
                stored[(seq - 1) as usize],
                "the push equals the stored message"
            );
            assert_eq!(push["conversation_id"], p.conversation.as_str());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_sqlite_get_gap_free_seqs_and_ordered_delivery() {
    let server = TestServer::start_with(|_| {}).await;
    concurrent_senders_keep_order(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_postgres_get_gap_free_seqs_and_ordered_delivery() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    concurrent_senders_keep_order(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_client_msg_id_sent_concurrently_stores_and_delivers_once() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut a1 = WsClient::hello(&server, &p.a_token).await;
    let mut a2 = WsClient::hello(&server, &p.a_token).await;
    let mut b1 = WsClient::hello(&server, &p.b_token).await;

    let frame = |reference: &str| {
        json!({
            "type": "dm.send",
            "ref": reference,
            "conversation_id": p.conversation,
            "text": "only once",
            "client_msg_id": "same-id-1",
        })
    };
    // Five sends of one id, interleaved over two sockets, none awaited.
    a1.send(frame("r1")).await;
    a2.send(frame("r2")).await;
    a1.send(frame("r3")).await;
    a2.send(frame("r4")).await;
    a1.send(frame("r5")).await;
    let mut replies = Vec::new();
    for (socket, reference) in [(1, "r1"), (2, "r2"), (1, "r3"), (2, "r4"), (1, "r5")] {
        let client = if socket == 1 { &mut a1 } else { &mut a2 };
        let reply = client.next_matching(|f| f["ref"] == reference).await;
        assert_eq!(reply["type"], "ok", "{reply}");
        replies.push(reply["data"].clone());
    }
    assert_eq!(replies[0]["seq"], 1, "{replies:?}");
    assert!(
        replies.iter().all(|r| r == &replies[0]),
        "every repeat answers the first result: {replies:?}"
    );

    for client in [&mut a1, &mut a2, &mut b1] {
        let message = client.next_of("dm.message").await;
        assert_eq!(message["seq"], 1);
        assert_eq!(message["client_msg_id"], "same-id-1");
        assert_eq!(message["message_id"], replies[0]["message_id"]);
        client
            .assert_no("dm.message", Duration::from_millis(500))
            .await;
    }
    let stored = history(&mut b1, &p.conversation, json!({})).await;
    assert_eq!(seqs(&stored), vec![1], "one stored message: {stored:?}");

    // The repeats used up no seq: the next message is 2.
    let next = a1
        .ok(json!({"type": "dm.send", "conversation_id": p.conversation, "text": "next", "client_msg_id": "same-id-2"}))
        .await;
    assert_eq!(next["seq"], 2);
}

#[tokio::test]
async fn history_pages_forward_and_backward_on_the_socket_and_over_rest() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let mut bob = WsClient::hello(&server, &p.b_token).await;
    send_texts(
        &mut alice,
        &p.conversation,
        (1..=120).map(|n| format!("h{n}")),
    )
    .await;

    let cases: Vec<(Value, &str, Vec<u64>)> = vec![
        (json!({}), "", (71..=120).collect()),
        (json!({"limit": 100}), "?limit=100", (21..=120).collect()),
        (json!({"limit": 1}), "?limit=1", vec![120]),
        (
            json!({"after_seq": 0, "limit": 100}),
            "?after_seq=0&limit=100",
            (1..=100).collect(),
        ),
        (
            json!({"after_seq": 10}),
            "?after_seq=10",
            (11..=60).collect(),
        ),
        (
            json!({"after_seq": 10, "limit": 5}),
            "?after_seq=10&limit=5",
            (11..=15).collect(),
        ),
        (
            json!({"after_seq": 115}),
            "?after_seq=115",
            (116..=120).collect(),
        ),
        (json!({"after_seq": 120}), "?after_seq=120", vec![]),
        (
            json!({"before_seq": 30}),
            "?before_seq=30",
            (1..=29).collect(),
        ),
        (
            json!({"before_seq": 100, "limit": 10}),
            "?before_seq=100&limit=10",
            (90..=99).collect(),
        ),
        (json!({"before_seq": 1}), "?before_seq=1", vec![]),
        (
            json!({"before_seq": 500, "limit": 3}),
            "?before_seq=500&limit=3",
            (118..=120).collect(),
        ),
        (
            json!({"after_seq": 10, "before_seq": 20}),
            "?after_seq=10&before_seq=20",
            (11..=19).collect(),
        ),
        (
            json!({"after_seq": 10, "before_seq": 100, "limit": 5}),
            "?after_seq=10&before_seq=100&limit=5",
            (11..=15).collect(),
        ),
    ];
    for (params, query, expected) in cases {
        let messages = history(&mut bob, &p.conversation, params.clone()).await;
        assert_eq!(seqs(&messages), expected, "dm.history {params}");
        for message in &messages {
            let seq = message["seq"].as_u64().unwrap();
            assert_eq!(message["text"], format!("h{seq}"));
            assert_eq!(message["conversation_id"], p.conversation.as_str());
            assert_eq!(message["from"]["id"], p.a_id.as_str());
            assert!(message["message_id"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            parse_time(&message["sent_at"]);
        }
        let items = rest_messages(&server, &p.b_token, &p.conversation, query).await;
        assert_eq!(
            items, messages,
            "GET messages{query} equals dm.history {params}"
        );
    }

    for limit in [json!(0), json!(101)] {
        bob.err(
            json!({"type": "dm.history", "conversation_id": p.conversation, "limit": limit}),
            "bad_request",
        )
        .await;
    }
    for query in ["?limit=0", "?limit=101"] {
        let (status, body) = server
            .get(
                &format!("/api/v1/conversations/{}/messages{query}", p.conversation),
                Some(&p.b_token),
            )
            .await;
        assert_eq!(status, 400, "GET messages{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
    // The sender reads the same history as the receiver.
    let mine = rest_messages(&server, &p.a_token, &p.conversation, "?after_seq=118").await;
    assert_eq!(seqs(&mine), vec![119, 120]);
}

#[tokio::test]
async fn a_reconnecting_socket_reloads_exactly_what_it_missed() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let mut bob = WsClient::hello(&server, &p.b_token).await;
    send_texts(
        &mut alice,
        &p.conversation,
        (1..=3).map(|n| format!("before {n}")),
    )
    .await;
    let mut last_seen = 0;
    for _ in 0..3 {
        let message = bob.next_of("dm.message").await;
        assert_eq!(message["seq"], last_seen + 1);
        last_seen = message["seq"].as_u64().unwrap();
    }
    bob.close().await;

    send_texts(
        &mut alice,
        &p.conversation,
        (1..=10).map(|n| format!("missed {n}")),
    )
    .await;

    let mut bob = WsClient::hello(&server, &p.b_token).await;
    let missed = history(&mut bob, &p.conversation, json!({"after_seq": last_seen})).await;
    assert_eq!(seqs(&missed), (4..=13).collect::<Vec<_>>());
    let texts: Vec<&str> = missed.iter().map(|m| m["text"].as_str().unwrap()).collect();
    let expected: Vec<String> = (1..=10).map(|n| format!("missed {n}")).collect();
    assert_eq!(texts, expected);
    bob.assert_no("dm.message", Duration::from_millis(300))
        .await;

    // Live delivery resumes where the reload ended.
    alice
        .ok(json!({"type": "dm.send", "conversation_id": p.conversation, "text": "live"}))
        .await;
    let live = bob.next_of("dm.message").await;
    assert_eq!(live["seq"], 14);
    assert_eq!(live["text"], "live");
}

#[tokio::test]
async fn read_marker_moves_forward_only_is_capped_and_reaches_the_partner() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut a1 = WsClient::hello(&server, &p.a_token).await;
    let mut a2 = WsClient::hello(&server, &p.a_token).await;
    let mut b1 = WsClient::hello(&server, &p.b_token).await;
    let mut b2 = WsClient::hello(&server, &p.b_token).await;
    send_texts(&mut a1, &p.conversation, (1..=5).map(|n| format!("m{n}"))).await;
    assert_eq!(unread(&server, &p.b_token, &p.conversation).await, 5);

    let done = b1
        .ok(json!({"type": "dm.read", "conversation_id": p.conversation, "seq": 3}))
        .await;
    assert_eq!(done, json!({}));
    for partner in [&mut a1, &mut a2] {
        let read = partner.next_of("dm.read").await;
        assert_eq!(
            read,
            json!({"type": "dm.read", "conversation_id": p.conversation, "user_id": p.b_id, "seq": 3})
        );
    }
    assert_eq!(unread(&server, &p.b_token, &p.conversation).await, 2);

    // A lower seq afterwards, from another socket, does not move it back.
    b2.ok(json!({"type": "dm.read", "conversation_id": p.conversation, "seq": 1}))
        .await;
    assert_eq!(unread(&server, &p.b_token, &p.conversation).await, 2);
    b1.ok(json!({"type": "dm.read", "conversation_id": p.conversation, "seq": 4}))
        .await;
    for partner in [&mut a1, &mut a2] {
        loop {
            let read = partner.next_of("dm.read").await;
            let seq = read["seq"].as_u64().unwrap();
            assert!(
                seq >= 3,
                "the partner never hears of a marker going back: {read}"
            );
            if seq == 4 {
                break;
            }
        }
    }
    assert_eq!(unread(&server, &p.b_token, &p.conversation).await, 1);

    // Beyond the last message: capped at it, never negative.
    b2.ok(json!({"type": "dm.read", "conversation_id": p.conversation, "seq": 999}))
        .await;
    assert_eq!(unread(&server, &p.b_token, &p.conversation).await, 0);
    for partner in [&mut a1, &mut a2] {
        let read = partner.next_of("dm.read").await;
        assert_eq!(read["seq"], 5, "the pushed marker is capped: {read}");
        assert_eq!(read["user_id"], p.b_id.as_str());
    }
    // The marker was stored as 5, not 999: a new message is unread again.
    a1.ok(json!({"type": "dm.send", "conversation_id": p.conversation, "text": "m6"}))
        .await;
    assert_eq!(unread(&server, &p.b_token, &p.conversation).await, 1);
}

#[tokio::test]
async fn typing_reaches_the_partner_and_is_throttled() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let mut bob = WsClient::hello(&server, &p.b_token).await;

    let burst = Instant::now();
    for _ in 0..10 {
        alice
            .send(json!({"type": "dm.typing", "conversation_id": p.conversation}))
            .await;
    }
    // An acknowledged op after the burst: the burst has been handled.
    alice
        .ok(json!({"type": "dm.typing", "conversation_id": p.conversation}))
        .await;
    let heard = count_within(&mut bob, "dm.typing", burst, Duration::from_millis(1_500)).await;
    assert!(
        (1..=2).contains(&heard.len()),
        "11 typing frames in a burst give the partner 1 or 2 dm.typing within 1.5 s, got {heard:?}"
    );
    for typing in &heard {
        assert_eq!(
            typing,
            &json!({"type": "dm.typing", "conversation_id": p.conversation, "user_id": p.a_id})
        );
    }
    assert!(
        !alice.pending().iter().any(|f| f["type"] == "dm.typing"),
        "the typist does not hear itself: {:?}",
        alice.pending()
    );

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    alice
        .ok(json!({"type": "dm.typing", "conversation_id": p.conversation}))
        .await;
    let again = bob.next_of("dm.typing").await;
    assert_eq!(again["user_id"], p.a_id.as_str());

    // And the other way round.
    bob.ok(json!({"type": "dm.typing", "conversation_id": p.conversation}))
        .await;
    let typing = alice.next_of("dm.typing").await;
    assert_eq!(typing["user_id"], p.b_id.as_str());
    assert_eq!(typing["conversation_id"], p.conversation.as_str());
}

#[tokio::test]
async fn presence_is_announced_once_per_user_and_offline_after_the_grace() {
    let server = TestServer::start_with(|c| c.presence_grace_ms = 300).await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;

    let b1 = WsClient::hello(&server, &p.b_token).await;
    let online = alice.next_of("presence").await;
    assert_eq!(online["user_id"], p.b_id.as_str());
    assert_eq!(online["status"], "online");
    assert!(online["last_seen_at"].is_null(), "{online}");
    let b2 = WsClient::hello(&server, &p.b_token).await;
    alice
        .assert_no("presence", Duration::from_millis(500))
        .await;

    // One of two sockets closes: bob is still online, nobody hears a thing.
    b1.close().await;
    alice
        .assert_no("presence", Duration::from_millis(800))
        .await;
    let answer = alice
        .ok(json!({"type": "presence.query", "user_ids": [p.b_id]}))
        .await;
    assert_eq!(answer["presence"][0]["status"], "online", "{answer}");

    let closing = Instant::now();
    let before = OffsetDateTime::now_utc();
    b2.close().await;
    let offline = alice.next_of("presence").await;
    let took = closing.elapsed();
    assert_eq!(offline["user_id"], p.b_id.as_str());
    assert_eq!(offline["status"], "offline");
    assert!(
        took >= Duration::from_millis(300),
        "offline only after the 300 ms grace, came after {took:?}"
    );
    let seen = parse_time(&offline["last_seen_at"]);
    let after = OffsetDateTime::now_utc();
    assert!(
        seen >= before - time::Duration::seconds(1) && seen <= after + time::Duration::seconds(1),
        "last_seen_at {seen} lies between {before} and {after}"
    );
    alice
        .assert_no("presence", Duration::from_millis(300))
        .await;

    let answer = alice
        .ok(json!({"type": "presence.query", "user_ids": [p.b_id]}))
        .await;
    assert_eq!(
        answer["presence"],
        json!([{"user_id": p.b_id, "status": "offline", "last_seen_at": offline["last_seen_at"]}])
    );
}

#[tokio::test]
async fn a_quick_reconnect_within_the_grace_does_not_flap_presence() {
    let server = TestServer::start_with(|c| c.presence_grace_ms = 2_000).await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let bob = WsClient::hello(&server, &p.b_token).await;
    let online = alice.next_of("presence").await;
    assert_eq!(online["status"], "online");

    bob.close().await;
    let bob = WsClient::hello(&server, &p.b_token).await;
    alice
        .assert_no("presence", Duration::from_millis(2_600))
        .await;
    let answer = alice
        .ok(json!({"type": "presence.query", "user_ids": [p.b_id]}))
        .await;
    assert_eq!(answer["presence"][0]["status"], "online", "{answer}");

    // The stale timer did not fire; a real leave still goes offline.
    let closing = Instant::now();
    bob.close().await;
    let offline = alice.next_of("presence").await;
    assert_eq!(offline["status"], "offline");
    assert!(
        closing.elapsed() >= Duration::from_millis(2_000),
        "offline after the grace, came after {:?}",
        closing.elapsed()
    );
}

/// A reconnect that lands right at the end of the grace may cost an
/// offline/online pair, but the partner's last word must be `online`:
/// transitions reach partners in the order they happened. The rounds home
/// in on the end of the grace: a round without pushes reconnected too
/// early, so the next waits longer; one with pushes waits less.
#[tokio::test]
async fn reconnecting_around_the_end_of_the_grace_leaves_the_partner_seeing_online() {
    const GRACE_MS: u64 = 100;
    let server = TestServer::start_with(|c| c.presence_grace_ms = GRACE_MS).await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let mut bob = WsClient::hello(&server, &p.b_token).await;
    let online = alice.next_of("presence").await;
    assert_eq!(online["status"], "online");

    let mut heard = vec!["online".to_owned()];
    let mut delay_us = GRACE_MS * 1_000;
    for round in 0..50 {
        bob.close().await;
        tokio::time::sleep(Duration::from_micros(delay_us)).await;
        bob = WsClient::hello(&server, &p.b_token).await;
        // Long enough for a pending offline, its database write and the
        // pushes to settle.
        let settle = Instant::now();
        let pushes = count_within(&mut alice, "presence", settle, Duration::from_millis(300)).await;
        let statuses: Vec<String> = pushes
            .iter()
            .map(|f| f["status"].as_str().unwrap_or_default().to_owned())
            .collect();
        heard.extend(statuses.iter().cloned());
        let answer = alice
            .ok(json!({"type": "presence.query", "user_ids": [p.b_id]}))
            .await;
        assert_eq!(answer["presence"][0]["status"], "online", "{answer}");
        assert_eq!(
            heard.last().map(String::as_str),
            Some("online"),
            "round {round} (reconnect {delay_us} us after the close): bob is connected, but \
             the partner's last presence push says he is not; this round's pushes: \
             {statuses:?}"
        );
        assert!(
            heard.windows(2).all(|w| w[0] != w[1]),
            "round {round}: transitions alternate, never the same twice in a row: {heard:?}"
        );
        delay_us = if statuses.is_empty() {
            delay_us + 500
        } else {
            delay_us.saturating_sub(500)
        };
    }
}

#[tokio::test]
async fn presence_query_answers_partners_and_room_mates_only() {
    let server = TestServer::start_with(|c| c.presence_grace_ms = 300).await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let (erin_token, erin_id) = server.register("erin").await;
    match_pair(&server, &p.a_token, &server, &erin_token, &erin_id).await;
    let (carol_token, carol_id) = server.register("carol").await;
    let (dave_token, dave_id) = server.register("dave").await;

    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let mut carol = WsClient::hello(&server, &carol_token).await;
    let mut dave = WsClient::hello(&server, &dave_token).await;
    let bob = WsClient::hello(&server, &p.b_token).await;
    alice
        .next_matching(|f| f["type"] == "presence" && f["status"] == "online")
        .await;
    bob.close().await;
    let offline = alice
        .next_matching(|f| f["type"] == "presence" && f["status"] == "offline")
        .await;

    let ask = json!({
        "type": "presence.query",
        "user_ids": [p.b_id, erin_id, carol_id, dave_id, "garbage", "999999"],
    });
    let answer = alice.ok(ask.clone()).await;
    let by_user = |answer: &Value| -> HashMap<String, Value> {
        answer["presence"]
            .as_array()
            .unwrap_or_else(|| panic!("presence list in {answer}"))
            .iter()
            .map(|p| (p["user_id"].as_str().unwrap().to_owned(), p.clone()))
            .collect()
    };
    let seen = by_user(&answer);
    assert_eq!(seen.len(), 2, "only the partners: {answer}");
    assert_eq!(
        seen[&p.b_id],
        json!({"user_id": p.b_id, "status": "offline", "last_seen_at": offline["last_seen_at"]})
    );
    assert_eq!(
        seen[&erin_id]["status"], "offline",
        "never connected: {answer}"
    );
    assert!(
        seen[&erin_id]["last_seen_at"].is_null(),
        "never seen: {answer}"
    );

    // A room-mate without a match is visible while they share the room.
    let room = alice
        .ok(json!({"type": "room.create", "name": "lunch chat"}))
        .await;
    let room_id = room["room"]["id"].as_str().expect("room id").to_owned();
    dave.ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    let seen = by_user(&alice.ok(ask.clone()).await);
    assert_eq!(seen.len(), 3, "partners and the room-mate: {seen:?}");
    assert_eq!(seen[&dave_id]["status"], "online");
    assert!(seen[&dave_id]["last_seen_at"].is_null());
    assert!(!seen.contains_key(&carol_id), "a stranger stays hidden");

    dave.ok(json!({"type": "room.leave", "room_id": room_id}))
        .await;
    let seen = by_user(&alice.ok(ask).await);
    assert!(
        !seen.contains_key(&dave_id),
        "left the room: hidden again: {seen:?}"
    );

    let hundred: Vec<String> = (1..=100).map(|n| n.to_string()).collect();
    alice
        .ok(json!({"type": "presence.query", "user_ids": hundred}))
        .await;
    let too_many: Vec<String> = (1..=101).map(|n| n.to_string()).collect();
    alice
        .err(
            json!({"type": "presence.query", "user_ids": too_many}),
            "bad_request",
        )
        .await;

    // Presence pushes go to matched partners, not to strangers or room-mates.
    for other in [&mut carol, &mut dave] {
        other
            .assert_no("presence", Duration::from_millis(200))
            .await;
    }
}

#[tokio::test]
async fn unknown_conversations_are_not_found() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    for id in ["999999", "abc", "cv_nope", "0", "-1"] {
        for frame in [
            json!({"type": "dm.send", "conversation_id": id, "text": "hi"}),
            json!({"type": "dm.history", "conversation_id": id}),
            json!({"type": "dm.read", "conversation_id": id, "seq": 1}),
            json!({"type": "dm.typing", "conversation_id": id}),
        ] {
            alice.err(frame, "not_found").await;
        }
        let (status, body) = server
            .get(
                &format!("/api/v1/conversations/{id}/messages"),
                Some(&p.a_token),
            )
            .await;
        assert_eq!(status, 404, "GET /conversations/{id}/messages: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn non_participants_are_forbidden_and_change_nothing() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let mut bob = WsClient::hello(&server, &p.b_token).await;
    alice
        .ok(json!({"type": "dm.send", "conversation_id": p.conversation, "text": "private"}))
        .await;
    bob.next_of("dm.message").await;
    alice.next_of("dm.message").await;

    let (eve_token, _) = server.register("eve").await;
    let mut eve = WsClient::hello(&server, &eve_token).await;
    for frame in [
        json!({"type": "dm.send", "conversation_id": p.conversation, "text": "intrude"}),
        json!({"type": "dm.send", "conversation_id": p.conversation, "text": "intrude", "client_msg_id": "x"}),
        json!({"type": "dm.history", "conversation_id": p.conversation}),
        json!({"type": "dm.history", "conversation_id": p.conversation, "after_seq": 0}),
        json!({"type": "dm.read", "conversation_id": p.conversation, "seq": 1}),
        json!({"type": "dm.typing", "conversation_id": p.conversation}),
    ] {
        eve.err(frame, "forbidden").await;
    }
    for query in ["", "?after_seq=0", "?before_seq=5&limit=10"] {
        let (status, body) = server
            .get(
                &format!("/api/v1/conversations/{}/messages{query}", p.conversation),
                Some(&eve_token),
            )
            .await;
        assert_eq!(status, 403, "GET messages{query} as a stranger: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(body.get("items").is_none(), "no messages leak: {body}");
    }
    for participant in [&mut alice, &mut bob] {
        participant
            .assert_no("dm.message", Duration::from_millis(300))
            .await;
        assert!(
            !participant
                .pending()
                .iter()
                .any(|f| f["type"] == "dm.typing" || f["type"] == "dm.read"),
            "nothing from the stranger: {:?}",
            participant.pending()
        );
    }
    let stored = history(&mut alice, &p.conversation, json!({})).await;
    assert_eq!(seqs(&stored), vec![1]);
    assert_eq!(unread(&server, &p.b_token, &p.conversation).await, 1);
}

#[tokio::test]
async fn message_text_and_client_msg_id_are_validated() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let mut bob = WsClient::hello(&server, &p.b_token).await;
    let send = |text: String, client_msg_id: Option<String>| {
        let mut frame = json!({"type": "dm.send", "conversation_id": p.conversation, "text": text});
        if let Some(id) = client_msg_id {
            frame["client_msg_id"] = json!(id);
        }
        frame
    };

    alice.err(send(String::new(), None), "bad_request").await;
    alice.err(send("   \n\t".into(), None), "bad_request").await;
    alice.err(send("x".repeat(4001), None), "too_large").await;
    alice
        .err(send("hi".into(), Some("c".repeat(65))), "bad_request")
        .await;
    alice
        .err(
            json!({"type": "dm.send", "conversation_id": p.conversation}),
            "bad_request",
        )
        .await;
    alice
        .err(
            json!({"type": "dm.send", "conversation_id": p.conversation, "text": 5}),
            "bad_request",
        )
        .await;

    // The limits themselves are fine, counted in characters.
    let longest = alice.ok(send("é".repeat(4000), None)).await;
    assert_eq!(longest["seq"], 1, "failed sends used no seq");
    let with_id = alice.ok(send("hi".into(), Some("c".repeat(64)))).await;
    assert_eq!(with_id["seq"], 2);

    let stored = history(&mut bob, &p.conversation, json!({})).await;
    assert_eq!(seqs(&stored), vec![1, 2]);
    assert_eq!(stored[0]["text"].as_str().unwrap().chars().count(), 4000);
    assert_eq!(stored[1]["client_msg_id"], "c".repeat(64));
    for seq in [1, 2] {
        let message = bob.next_of("dm.message").await;
        assert_eq!(message["seq"], seq);
    }
    bob.assert_no("dm.message", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn bad_seq_and_limit_values_are_bad_requests() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    send_texts(
        &mut alice,
        &p.conversation,
        (1..=3).map(|n| format!("m{n}")),
    )
    .await;
    let conversation = p.conversation.as_str();

    for seq in [json!(-1), json!("2"), json!(1.5), json!(null)] {
        alice
            .err(
                json!({"type": "dm.read", "conversation_id": conversation, "seq": seq}),
                "bad_request",
            )
            .await;
    }
    alice
        .err(
            json!({"type": "dm.read", "conversation_id": conversation}),
            "bad_request",
        )
        .await;
    for field in ["after_seq", "before_seq", "limit"] {
        for value in [json!(-1), json!("5")] {
            let mut frame = json!({"type": "dm.history", "conversation_id": conversation});
            frame[field] = value;
            alice.err(frame, "bad_request").await;
        }
    }
    for query in [
        "?after_seq=-1",
        "?before_seq=-1",
        "?after_seq=abc",
        "?before_seq=x",
        "?limit=-1",
        "?limit=many",
    ] {
        let (status, body) = server
            .get(
                &format!("/api/v1/conversations/{conversation}/messages{query}"),
                Some(&p.a_token),
            )
            .await;
        assert_eq!(status, 400, "GET messages{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
    // None of that moved the read marker.
    assert_eq!(unread(&server, &p.b_token, conversation).await, 3);
    let (status, _) = server
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            None,
        )
        .await;
    assert_eq!(status, 401, "REST history needs a token");
}

#[tokio::test]
async fn conversation_ops_before_hello_are_unauthenticated() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let mut socket = WsClient::connect(&server).await;
    let conversation = p.conversation.as_str();
    for frame in [
        json!({"type": "dm.send", "conversation_id": conversation, "text": "hi"}),
        json!({"type": "dm.history", "conversation_id": conversation}),
        json!({"type": "dm.read", "conversation_id": conversation, "seq": 1}),
        json!({"type": "dm.typing", "conversation_id": conversation}),
        json!({"type": "presence.query", "user_ids": [p.b_id]}),
    ] {
        socket.err(frame, "unauthenticated").await;
    }
    // The socket stays usable: hello, then the same ops work.
    socket
        .ok(json!({"type": "hello", "token": p.a_token}))
        .await;
    let messages = history(&mut socket, conversation, json!({})).await;
    assert_eq!(
        seqs(&messages),
        Vec::<u64>::new(),
        "nothing was sent before hello"
    );
}

#[tokio::test]
async fn conversation_list_shows_last_message_and_unread_count_for_each_side() {
    let server = TestServer::start().await;
    let p = pair(&server, &server, "alice", "bobby").await;
    let (carol_token, carol_id) = server.register("carol").await;
    let quiet = match_pair(&server, &p.a_token, &server, &carol_token, &carol_id).await;
    let mut alice = WsClient::hello(&server, &p.a_token).await;
    let mut bob = WsClient::hello(&server, &p.b_token).await;

    for (token, other) in [(&p.a_token, &p.b_id), (&p.b_token, &p.a_id)] {
        let item = conversation_item(&server, token, &p.conversation).await;
        assert_eq!(item["other_user"]["id"], other.as_str(), "{item}");
        assert!(item["last_message"].is_null(), "no message yet: {item}");
        assert_eq!(item["unread_count"], 0);
    }

    send_texts(
        &mut alice,
        &p.conversation,
        (1..=3).map(|n| format!("a{n}")),
    )
    .await;
    alice
        .ok(json!({"type": "dm.read", "conversation_id": p.conversation, "seq": 3}))
        .await;
    let bob_item = conversation_item(&server, &p.b_token, &p.conversation).await;
    assert_eq!(bob_item["unread_count"], 3, "{bob_item}");
    assert_eq!(bob_item["last_message"]["seq"], 3);
    assert_eq!(bob_item["last_message"]["text"], "a3");
    assert_eq!(bob_item["last_message"]["from"]["id"], p.a_id.as_str());
    assert_eq!(
        bob_item["last_message"]["conversation_id"],
        p.conversation.as_str()
    );
    let alice_item = conversation_item(&server, &p.a_token, &p.conversation).await;
    assert_eq!(alice_item["unread_count"], 0, "{alice_item}");
    assert_eq!(alice_item["last_message"], bob_item["last_message"]);

    bob.ok(json!({"type": "dm.read", "conversation_id": p.conversation, "seq": 2}))
        .await;
    assert_eq!(unread(&server, &p.b_token, &p.conversation).await, 1);
    assert_eq!(
        unread(&server, &p.a_token, &p.conversation).await,
        0,
        "bob's marker is bob's alone"
    );

    bob.ok(json!({"type": "dm.send", "conversation_id": p.conversation, "text": "b4"}))
        .await;
    bob.ok(json!({"type": "dm.read", "conversation_id": p.conversation, "seq": 4}))
        .await;
    let alice_item = conversation_item(&server, &p.a_token, &p.conversation).await;
    assert_eq!(
        alice_item["unread_count"], 1,
        "bob's reply is unread: {alice_item}"
    );
    assert_eq!(alice_item["last_message"]["seq"], 4);
    assert_eq!(alice_item["last_message"]["text"], "b4");
    assert_eq!(alice_item["last_message"]["from"]["id"], p.b_id.as_str());
    let bob_item = conversation_item(&server, &p.b_token, &p.conversation).await;
    assert_eq!(bob_item["unread_count"], 0, "{bob_item}");
    assert_eq!(bob_item["last_message"], alice_item["last_message"]);

    // The other conversation is untouched.
    let quiet_item = conversation_item(&server, &p.a_token, &quiet).await;
    assert_eq!(quiet_item["other_user"]["id"], carol_id.as_str());
    assert!(quiet_item["last_message"].is_null(), "{quiet_item}");
    assert_eq!(quiet_item["unread_count"], 0);
    let (_, list) = server.get("/api/v1/conversations", Some(&p.a_token)).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    let carol_item = conversation_item(&server, &carol_token, &quiet).await;
    assert_eq!(carol_item["other_user"]["id"], p.a_id.as_str());
    assert_eq!(carol_item["unread_count"], 0);
}
