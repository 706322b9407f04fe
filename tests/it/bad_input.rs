//! Frames the server cannot make sense of: each gets `bad_request` (echoing
//! a readable `ref`) and the socket stays open; oversized frames close with
//! 1009; sockets from a refused origin close with 1008.

use std::time::Duration;

use crate::common::{Ended, TestServer, WsClient, RECV_TIMEOUT};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::http::header::ORIGIN;
use tokio_tungstenite::tungstenite::Message;

/// Generous bound for a close the server should send soon.
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

/// Sends `text` as is and expects a `bad_request` error carrying
/// `expected_ref` (or no `ref` at all); then checks the socket still works.
async fn assert_bad_request(client: &mut WsClient, text: &str, expected_ref: Option<Value>) {
    client.send_text(text).await;
    let error = client.next_of("error").await;
    check_bad_request(&error, text, expected_ref);
    assert_still_usable(client, text).await;
}

fn check_bad_request(error: &Value, sent: &str, expected_ref: Option<Value>) {
    assert_eq!(
        error["error"]["code"], "bad_request",
        "{sent:?} answered {error}"
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{sent:?} answered {error} without a message"
    );
    match expected_ref {
        Some(reference) => assert_eq!(error["ref"], reference, "{sent:?} answered {error}"),
        None => assert!(
            error.get("ref").is_none(),
            "{sent:?} answered {error} with a ref"
        ),
    }
}

async fn assert_still_usable(client: &mut WsClient, after: &str) {
    let reply = client.request(json!({"type": "ping"})).await;
    assert_eq!(reply["type"], "ok", "ping after {after:?} answered {reply}");
    assert!(reply["data"]["server_time"].is_string(), "{reply}");
}

/// A ping frame padded with an ignored field to exactly `len` bytes.
fn ping_of_len(len: usize) -> String {
    let head = r#"{"type":"ping","ref":"big","pad":""#;
    let tail = r#""}"#;
    let pad = len
        .checked_sub(head.len() + tail.len())
        .expect("room for the padding");
    let frame = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(frame.len(), len);
    frame
}

async fn connect_from(server: &TestServer, origin: &str) -> WsClient {
    WsClient::connect_with_header(server, ORIGIN, origin)
        .await
        .0
}

#[tokio::test]
async fn garbage_and_broken_json_are_bad_requests() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    for text in [
        "not json at all",
        "",
        "   ",
        "{",
        r#"{"type":"ping","ref":1"#,
        r#"{"type":"ping","ref":"x""#,
        r#"{"type": ping}"#,
        "\u{0}\u{1}\u{2}",
    ] {
        assert_bad_request(&mut client, text, None).await;
    }
    client.assert_no("error", Duration::from_millis(300)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn json_that_is_not_an_object_is_a_bad_request() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    for text in [
        "[]",
        r#""x""#,
        r#"["ping"]"#,
        r#"["ping", 1]"#,
        r#"[{"type":"ping","ref":1}]"#,
        "42",
        "null",
        "true",
        r#""{\"type\":\"ping\",\"ref\":1}""#,
    ] {
        assert_bad_request(&mut client, text, None).await;
    }
    client.assert_no("error", Duration::from_millis(300)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_types_are_bad_requests_echoing_string_and_number_refs() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    let cases = [
        (r#"{"type":"no.such.op","ref":"u-1"}"#, Some(json!("u-1"))),
        (r#"{"type":"no.such.op","ref":9001}"#, Some(json!(9001))),
        (r#"{"type":"PING","ref":"u-2"}"#, Some(json!("u-2"))),
        (r#"{"type":"","ref":9002}"#, Some(json!(9002))),
        (r#"{"ref":"u-3"}"#, Some(json!("u-3"))),
        (r#"{"ref":9003}"#, Some(json!(9003))),
        // A number ref keeps its JSON type, a numeric-looking string too.
        (r#"{"type":"no.such.op","ref":"9004"}"#, Some(json!("9004"))),
        (r#"{"type":"no.such.op"}"#, None),
        ("{}", None),
    ];
    for (text, reference) in cases {
        assert_bad_request(&mut client, text, reference).await;
    }
    client.assert_no("error", Duration::from_millis(300)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn missing_fields_are_bad_requests() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    let cases = [
        (r#"{"type":"room.join","ref":"m-1"}"#, Some(json!("m-1"))),
        (
            r#"{"type":"room.send","ref":9101,"room_id":"r_x"}"#,
            Some(json!(9101)),
        ),
        (
            r#"{"type":"room.send","ref":"m-2","text":"hi"}"#,
            Some(json!("m-2")),
        ),
        (r#"{"type":"room.create","ref":9102}"#, Some(json!(9102))),
        (r#"{"type":"room.leave","ref":"m-3"}"#, Some(json!("m-3"))),
        (r#"{"type":"room.typing","ref":9103}"#, Some(json!(9103))),
        (r#"{"type":"auth.refresh","ref":"m-4"}"#, Some(json!("m-4"))),
        (r#"{"type":"presence.query","ref":9104}"#, Some(json!(9104))),
        (r#"{"type":"room.typing"}"#, None),
    ];
    for (text, reference) in cases {
        assert_bad_request(&mut client, text, reference).await;
    }
    client.assert_no("error", Duration::from_millis(300)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn fields_of_the_wrong_type_are_bad_requests() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    let room = client
        .ok(json!({"type": "room.create", "name": "typed"}))
        .await;
    let room_id = room["room"]["id"].as_str().expect("room id").to_owned();
    let cases = [
        (json!({"type": 7, "ref": "w-1"}), Some(json!("w-1"))),
        (json!({"type": null, "ref": 9201}), Some(json!(9201))),
        (json!({"type": ["ping"], "ref": "w-2"}), Some(json!("w-2"))),
        (
            json!({"type": "room.join", "ref": 9202, "room_id": 5}),
            Some(json!(9202)),
        ),
        (
            json!({"type": "room.join", "ref": "w-3", "room_id": room_id, "since_seq": "zero"}),
            Some(json!("w-3")),
        ),
        (
            json!({"type": "room.join", "ref": 9203, "room_id": room_id, "since_seq": -1}),
            Some(json!(9203)),
        ),
        (
            json!({"type": "room.send", "ref": "w-4", "room_id": room_id, "text": 123}),
            Some(json!("w-4")),
        ),
        (
            json!({"type": "room.send", "ref": 9204, "room_id": room_id, "text": "hi", "client_msg_id": 1}),
            Some(json!(9204)),
        ),
        (
            json!({"type": "room.create", "ref": "w-5", "name": "n", "capacity": "big"}),
            Some(json!("w-5")),
        ),
        (
            json!({"type": "room.create", "ref": 9205, "name": ["n"]}),
            Some(json!(9205)),
        ),
        (
            json!({"type": "presence.query", "ref": "w-6", "user_ids": "u_1"}),
            Some(json!("w-6")),
        ),
        (
            json!({"type": "room.send", "room_id": room_id, "text": false}),
            None,
        ),
    ];
    for (frame, reference) in cases {
        assert_bad_request(&mut client, &frame.to_string(), reference).await;
    }
    // None of them was carried out.
    let joined = client
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    assert_eq!(joined["last_seq"], 0, "{joined}");
    let rooms = client.ok(json!({"type": "room.list"})).await;
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(1), "{rooms}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_ref_that_is_neither_string_nor_number_is_a_bad_request() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    for text in [
        r#"{"type":"ping","ref":{"id":1}}"#,
        r#"{"type":"ping","ref":[1]}"#,
        r#"{"type":"ping","ref":true}"#,
    ] {
        client.send_text(text).await;
        let error = client.next_of("error").await;
        assert_eq!(
            error["error"]["code"], "bad_request",
            "{text} answered {error}"
        );
        assert_still_usable(&mut client, text).await;
    }
    client.assert_no("ok", Duration::from_millis(300)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn binary_frames_are_bad_requests() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    let frames: [&[u8]; 3] = [
        br#"{"type":"ping","ref":9301}"#,
        &[0xff, 0x00, 0x13, 0x37],
        b"",
    ];
    for bytes in frames {
        client
            .raw()
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("send a binary frame");
        let error = client.next_of("error").await;
        assert_eq!(
            error["error"]["code"], "bad_request",
            "binary {bytes:?} answered {error}"
        );
        assert!(
            error.get("ref").is_none() || error["ref"] == 9301,
            "binary {bytes:?} answered {error}"
        );
        assert_still_usable(&mut client, "a binary frame").await;
    }
    // The JSON inside a binary frame was not run as a ping.
    client.assert_no("ok", Duration::from_millis(300)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_frames_before_hello_are_bad_requests_too() {
    let server = TestServer::start().await;
    let (token, _) = server.register("aiko").await;
    let mut client = WsClient::connect(&server).await;
    for (text, reference) in [
        ("not json", None),
        ("[]", None),
        (r#"{"type":"no.such.op","ref":"b-1"}"#, Some(json!("b-1"))),
    ] {
        client.send_text(text).await;
        let error = client.next_of("error").await;
        check_bad_request(&error, text, reference);
    }
    client.ok(json!({"type": "hello", "token": token})).await;
    assert_still_usable(&mut client, "bad frames before hello").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_at_the_limit_is_accepted() {
    let limit = 2048;
    let server = TestServer::start_with(|config| config.max_frame_bytes = limit).await;
    let (mut client, _, _) = server.user("aiko").await;
    client.send_text(ping_of_len(limit)).await;
    let reply = client.next_matching(|f| f["ref"] == "big").await;
    assert_eq!(
        reply["type"], "ok",
        "a frame of exactly the limit answered {reply}"
    );
    assert_still_usable(&mut client, "a frame at the limit").await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_limit_is_64_kib() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    client.send_text(ping_of_len(64 * 1024)).await;
    let reply = client.next_matching(|f| f["ref"] == "big").await;
    assert_eq!(
        reply["type"], "ok",
        "a frame of exactly 64 KiB answered {reply}"
    );
    client.send_text(ping_of_len(64 * 1024 + 1)).await;
    assert_eq!(client.closed_with(CLOSE_WITHIN).await, Ended::Closed(1009));
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_slightly_over_the_limit_closes_with_1009() {
    let limit = 2048;
    let server = TestServer::start_with(|config| config.max_frame_bytes = limit).await;
    for over in [1, 100] {
        let (mut client, _, _) = server.user(&format!("aiko{over}")).await;
        client.send_text(ping_of_len(limit + over)).await;
        assert_eq!(
            client.closed_with(CLOSE_WITHIN).await,
            Ended::Closed(1009),
            "{over} byte(s) over the limit"
        );
        assert!(
            client.pending().iter().all(|f| f["type"] != "ok"),
            "the oversized ping was answered: {:?}",
            client.pending()
        );
    }
    // The server itself is fine.
    let (mut client, _, _) = server.user("after").await;
    assert_still_usable(&mut client, "oversized frames on other sockets").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_far_over_the_limit_closes_with_1009() {
    let limit = 2048;
    let server = TestServer::start_with(|config| config.max_frame_bytes = limit).await;
    for times in [5, 40] {
        let (mut client, _, _) = server.user(&format!("aiko{times}")).await;
        let frame = ping_of_len(limit * times);
        // The server may stop reading mid-frame; a failed send is fine.
        let _ = timeout(RECV_TIMEOUT, client.raw().send(Message::text(frame))).await;
        assert_eq!(
            client.closed_with(CLOSE_WITHIN).await,
            Ended::Closed(1009),
            "a frame {times}x the limit"
        );
    }
    let (mut client, _, _) = server.user("after").await;
    assert_still_usable(&mut client, "oversized frames on other sockets").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_origin_is_closed_with_1008_and_an_allowed_one_works() {
    let server = TestServer::start_with(|config| {
        config.allowed_origins = vec!["https://good.example".to_owned()];
    })
    .await;
    let (token, user_id) = server.register("aiko").await;

    let mut evil = connect_from(&server, "https://evil.example").await;
    // Whatever it sends, the socket is refused.
    let _ = evil
        .raw()
        .send(Message::text(
            json!({"type": "hello", "ref": 1, "token": token}).to_string(),
        ))
        .await;
    assert_eq!(evil.closed_with(CLOSE_WITHIN).await, Ended::Closed(1008));

    let mut good = connect_from(&server, "https://good.example").await;
    good.send(json!({"type": "hello", "ref": 1, "token": token}))
        .await;
    let reply = good.next().await;
    assert_eq!(
        reply["type"], "ok",
        "hello from the allowed origin: {reply}"
    );
    assert_eq!(reply["data"]["user"]["id"], user_id.as_str());
    server.shutdown().await;
}
