//! Control characters and bidirectional overrides never get into names,
//! titles, topics or tags, over REST and over the socket; free text keeps
//! its newlines.

use crate::common::json::assert_bad_field;
use crate::common::TestServer;
use serde_json::{json, Value};

/// What attackers put in a name: a newline to forge a second line, an
/// escape to drive a terminal, a right-to-left override to make `nimda`
/// display as `admin`, an isolate, a NUL.
const HOSTILE: [&str; 6] = [
    "two\nlines",
    "tab\there",
    "\u{1b}[31mred",
    "\u{202E}nimda",
    "iso\u{2066}late",
    "nul\u{0}byte",
];

/// [`assert_bad_field`], saying which input was let through.
fn assert_names_field(status: u16, body: &Value, field: &str, input: &str) {
    assert_eq!(status, 400, "{input:?} in {field} is refused: {body}");
    assert_bad_field(status, body, field);
}

#[tokio::test]
async fn rest_refuses_controls_and_overrides_in_names_titles_and_tags() {
    let server = TestServer::start().await;
    let (token, _) = server.register("aiko").await;
    for (n, bad) in HOSTILE.iter().enumerate() {
        let (status, body) = server
            .post(
                "/api/v1/auth/register",
                None,
                json!({"handle": format!("user_{n}"), "password": "password123", "display_name": bad}),
            )
            .await;
        assert_names_field(status, &body, "display_name", bad);

        let (status, body) = server
            .patch("/api/v1/me", &token, json!({"display_name": bad}))
            .await;
        assert_names_field(status, &body, "display_name", bad);

        let (status, body) = server
            .post(
                "/api/v1/cards",
                Some(&token),
                json!({"title": bad, "body": "fine", "tags": ["rust"]}),
            )
            .await;
        assert_names_field(status, &body, "title", bad);
        let (status, body) = server
            .post(
                "/api/v1/cards",
                Some(&token),
                json!({"title": "fine", "body": "fine", "tags": [bad]}),
            )
            .await;
        assert_names_field(status, &body, "tags", bad);

        let (status, body) = server
            .post(
                "/api/v1/communities",
                Some(&token),
                json!({"name": bad, "description": "", "tags": []}),
            )
            .await;
        assert_names_field(status, &body, "name", bad);

        let (status, body) = server
            .post(
                "/api/v1/events",
                Some(&token),
                json!({
                    "title": bad,
                    "description": "",
                    "starts_at": "2099-03-01T19:00:00Z",
                    "ends_at": "2099-03-01T21:00:00Z",
                    "capacity": 8,
                    "tags": [],
                }),
            )
            .await;
        assert_names_field(status, &body, "title", bad);
    }

    // Nothing was made by any refusal.
    let (_, cards) = server.get("/api/v1/cards", Some(&token)).await;
    assert_eq!(cards["items"], json!([]), "{cards}");
    let (_, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me["display_name"], "aiko");

    // Free text keeps its lines; names written in any script pass.
    let (status, card) = server
        .post(
            "/api/v1/cards",
            Some(&token),
            json!({"title": "東京で Rust の話", "body": "first line\nsecond line\n\tindented", "tags": ["日本語"]}),
        )
        .await;
    assert_eq!(status, 201, "{card}");
    assert_eq!(card["body"], "first line\nsecond line\n\tindented");
    let (status, body) = server
        .post(
            "/api/v1/cards",
            Some(&token),
            json!({"title": "bell", "body": "ding\u{7}", "tags": []}),
        )
        .await;
    assert_names_field(status, &body, "body", "a bell");
    server.shutdown().await;
}

#[tokio::test]
async fn rooms_refuse_hostile_names_and_topics_and_messages_keep_newlines() {
    let server = TestServer::start().await;
    let (mut host, _, _) = server.user("aiko").await;
    for bad in HOSTILE {
        let refused = host
            .err(json!({"type": "room.create", "name": bad}), "bad_request")
            .await;
        let message = refused["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("name:"), "{bad:?}: {refused}");
        let refused = host
            .err(
                json!({"type": "room.create", "name": "fine", "topic": bad}),
                "bad_request",
            )
            .await;
        let message = refused["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("topic:"), "{bad:?}: {refused}");
    }
    let list = host.ok(json!({"type": "room.list"})).await;
    assert_eq!(list["rooms"], json!([]), "no room was opened: {list}");

    let created = host
        .ok(json!({"type": "room.create", "name": "late ramen"}))
        .await;
    let room_id = created["room"]["id"].as_str().expect("room id").to_owned();
    host.ok(json!({"type": "room.send", "room_id": room_id, "text": "line one\nline two"}))
        .await;
    let echoed = host.next_matching(|f| f["type"] == "room.message").await;
    assert_eq!(echoed["text"], "line one\nline two");
    let refused = host
        .err(
            json!({"type": "room.send", "room_id": room_id, "text": "escape \u{1b}[2J"}),
            "bad_request",
        )
        .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("text:"),
        "{refused}"
    );
    host.close().await;
    server.shutdown().await;
}
