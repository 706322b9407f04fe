//! Reports and the moderation queue against the real server, on SQLite and
//! Postgres: anyone reports a user, a card or a message of a conversation
//! they are in, keeping a copy of the text; staff page the queue and
//! resolve each report once; the reporter hears the outcome live without
//! hearing who decided; every resolution is audited.

use std::time::Duration;

use crate::common::chat::{create_room, join, say};
use crate::common::json::{assert_bad_field, assert_error, keys, notification_in, parse_time};
use crate::common::platform::{new_card, pair};
use crate::common::{Api, TestServer};
use serde_json::{json, Value};

const ADMIN: &str = "root_admin";

async fn report(api: &Api, token: &str, body: Value) -> (u16, Value) {
    api.post("/api/v1/reports", Some(token), body).await
}

/// Files a report that must be accepted; returns it.
async fn filed(api: &Api, token: &str, body: Value) -> Value {
    let (status, answer) = report(api, token, body.clone()).await;
    assert_eq!(status, 201, "report {body}: {answer}");
    assert_eq!(keys(&answer), ["report"], "{answer}");
    answer["report"].clone()
}

async fn resolve(api: &Api, token: &str, report_id: &str, body: Value) -> (u16, Value) {
    api.post(
        &format!("/api/v1/admin/reports/{report_id}/resolve"),
        Some(token),
        body,
    )
    .await
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("id").to_owned()
}

/// Every report of the queue with this status, walking pages of `limit`.
async fn whole_queue(api: &Api, token: &str, status: &str, limit: u32) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/api/v1/admin/reports?status={status}&limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (items, next) = api.page(&path, token).await;
        assert!(items.len() <= limit as usize);
        all.extend(items);
        match next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
    panic!("the queue never ended");
}

/// Reports of each kind, the queue, resolving, the reporter's
/// notification and the audit log.
async fn reports_round_trip(server: &TestServer) {
    let (admin, _) = server.admin(ADMIN).await;
    let (moderator, mod_id) = server.register("mod_mia").await;
    server.set_role(&admin, &mod_id, "moderator").await;
    let p = pair(server, server, "alice", "bob").await;
    let (status, _) = server
        .patch("/api/v1/me", &p.b_token, json!({"bio": "buy my coins"}))
        .await;
    assert_eq!(status, 200);
    let card = new_card(server, &p.b_token, "cheap coins", "dm me for deals", &[]).await;
    let mut alice = server.client(&p.a_token).await;
    let mut bob = server.client(&p.b_token).await;
    let sent = bob
        .ok(json!({"type": "dm.send", "conversation_id": p.conversation, "text": "send me 5 coins"}))
        .await;
    let message_id = sent["message_id"].as_str().expect("message id").to_owned();

    let of_user = filed(
        server,
        &p.a_token,
        json!({"kind": "user", "target_id": p.b_id, "reason": "scam profile"}),
    )
    .await;
    assert_eq!(
        keys(&of_user),
        [
            "created_at",
            "excerpt",
            "id",
            "kind",
            "reason",
            "reporter",
            "status",
            "target_id"
        ]
    );
    assert_eq!(of_user["kind"], "user");
    assert_eq!(of_user["target_id"], json!(p.b_id));
    assert_eq!(of_user["status"], "open");
    assert_eq!(of_user["reason"], "scam profile");
    assert_eq!(
        of_user["reporter"],
        json!({"id": p.a_id, "handle": "alice", "display_name": "alice"})
    );
    let excerpt = of_user["excerpt"].as_str().unwrap();
    assert!(
        excerpt.contains("bob") && excerpt.contains("buy my coins"),
        "{excerpt}"
    );
    parse_time(&of_user["created_at"]);

    let card_id = id_of(&card);
    let of_card = filed(
        server,
        &p.a_token,
        json!({"kind": "card", "target_id": card_id, "reason": "a scam"}),
    )
    .await;
    assert_eq!(of_card["excerpt"], "cheap coins\ndm me for deals");
    let of_dm = filed(
        server,
        &p.a_token,
        json!({
            "kind": "dm_message",
            "target_id": message_id,
            "conversation_id": p.conversation,
            "reason": "asked for money",
        }),
    )
    .await;
    assert_eq!(of_dm["excerpt"], "send me 5 coins");
    assert_eq!(of_dm["conversation_id"], json!(p.conversation));
    // The copy outlives the card.
    let (status, _) = server
        .delete(&format!("/api/v1/cards/{card_id}"), &p.b_token)
        .await;
    assert_eq!(status, 204);

    // Oldest open first, the same walked one at a time.
    let open = whole_queue(server, &moderator, "open", 100).await;
    let ids: Vec<String> = open.iter().map(id_of).collect();
    assert_eq!(ids, [id_of(&of_user), id_of(&of_card), id_of(&of_dm)]);
    assert_eq!(open[1]["excerpt"], "cheap coins\ndm me for deals");
    assert_eq!(whole_queue(server, &moderator, "open", 1).await, open);
    let (items, _) = server.page("/api/v1/admin/reports", &moderator).await;
    assert_eq!(items, open, "open is the default");

    let (status, resolved) = resolve(
        server,
        &moderator,
        &id_of(&of_card),
        json!({"action": "dismissed", "note": "a joke between friends"}),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["action"], "dismissed");
    assert_eq!(resolved["note"], "a joke between friends");
    assert_eq!(resolved["resolved_by"], json!(mod_id));
    assert_eq!(resolved["excerpt"], of_card["excerpt"]);

    let frame = alice.next_of("notification").await;
    let notification = notification_in(&frame, "report_resolved");
    assert_eq!(
        notification["data"],
        json!({"report_id": id_of(&of_card), "kind": "card", "action": "dismissed"}),
        "no word of who resolved it"
    );
    assert_eq!(
        keys(&notification),
        ["created_at", "data", "id", "kind"],
        "{frame}"
    );
    assert!(!frame.to_string().contains("mod_mia"), "{frame}");
    let (listed, _) = server.page("/api/v1/notifications", &p.a_token).await;
    assert_eq!(listed[0]["kind"], "report_resolved");

    let (status, again) = resolve(
        server,
        &admin,
        &id_of(&of_card),
        json!({"action": "user_suspended"}),
    )
    .await;
    assert_error(status, &again, 409, "conflict");

    let (status, second) = resolve(
        server,
        &admin,
        &id_of(&of_user),
        json!({"action": "user_suspended"}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert!(second.get("note").is_none(), "{second}");
    let frame = alice.next_of("notification").await;
    assert_eq!(
        notification_in(&frame, "report_resolved")["data"]["action"],
        "user_suspended"
    );

    let open = whole_queue(server, &moderator, "open", 100).await;
    assert_eq!(open.iter().map(id_of).collect::<Vec<_>>(), [id_of(&of_dm)]);
    let done = whole_queue(server, &moderator, "resolved", 100).await;
    assert_eq!(
        done.iter().map(id_of).collect::<Vec<_>>(),
        [id_of(&of_user), id_of(&of_card)],
        "most recently resolved first"
    );
    assert_eq!(whole_queue(server, &moderator, "resolved", 1).await, done);

    let (audit, _) = server.page("/api/v1/admin/audit?limit=100", &admin).await;
    let resolutions: Vec<(Value, Value, Value)> = audit
        .iter()
        .filter(|e| e["action"] == "report.resolve")
        .map(|e| {
            (
                e["actor_id"].clone(),
                e["target"].clone(),
                e["data"]["action"].clone(),
            )
        })
        .collect();
    let (_, admin_id) = server.sign_in(ADMIN).await;
    assert_eq!(
        resolutions,
        [
            (
                json!(admin_id),
                json!(format!("report:{}", id_of(&of_user))),
                json!("user_suspended")
            ),
            (
                json!(mod_id),
                json!(format!("report:{}", id_of(&of_card))),
                json!("dismissed")
            ),
        ]
    );
    bob.assert_no("notification", Duration::from_millis(200))
        .await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn reports_are_filed_queued_resolved_once_and_the_reporter_told() {
    let server = TestServer::start().await;
    reports_round_trip(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn reports_are_filed_queued_resolved_once_and_the_reporter_told_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    reports_round_trip(&server).await;
    server.shutdown().await;
}

async fn refusals(server: &TestServer) {
    let (admin, _) = server.admin(ADMIN).await;
    let p = pair(server, server, "alice", "bob").await;
    let (carol, carol_id) = server.register("carol").await;
    let mut bob = server.client(&p.b_token).await;
    let sent = bob
        .ok(json!({"type": "dm.send", "conversation_id": p.conversation, "text": "hi"}))
        .await;
    let message_id = sent["message_id"].as_str().expect("message id").to_owned();

    // Only the conversation's two may report its messages.
    let (status, body) = report(
        server,
        &carol,
        json!({"kind": "dm_message", "target_id": message_id,
               "conversation_id": p.conversation, "reason": "nosy"}),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");

    let reason = "because";
    for (body, want, code) in [
        (
            json!({"kind": "user", "target_id": "424242", "reason": reason}),
            404,
            "not_found",
        ),
        (
            json!({"kind": "user", "target_id": "nope", "reason": reason}),
            404,
            "not_found",
        ),
        (
            json!({"kind": "card", "target_id": "424242", "reason": reason}),
            404,
            "not_found",
        ),
        (
            json!({"kind": "dm_message", "target_id": "no-such-message",
                   "conversation_id": p.conversation, "reason": reason}),
            404,
            "not_found",
        ),
        (
            json!({"kind": "dm_message", "target_id": message_id,
                   "conversation_id": "424242", "reason": reason}),
            404,
            "not_found",
        ),
    ] {
        let (status, answer) = report(server, &p.a_token, body.clone()).await;
        assert_error(status, &answer, want, code);
    }
    for (body, field) in [
        (
            json!({"kind": "user", "target_id": p.a_id, "reason": reason}),
            "target_id",
        ),
        (
            json!({"kind": "gossip", "target_id": p.b_id, "reason": reason}),
            "kind",
        ),
        (
            json!({"kind": "user", "target_id": p.b_id, "reason": ""}),
            "reason",
        ),
        (
            json!({"kind": "user", "target_id": p.b_id, "reason": "x".repeat(501)}),
            "reason",
        ),
        (
            json!({"kind": "dm_message", "target_id": message_id, "reason": reason}),
            "conversation_id",
        ),
    ] {
        let (status, answer) = report(server, &p.a_token, body.clone()).await;
        assert_bad_field(status, &answer, field);
    }
    let (status, answer) = report(server, &p.a_token, json!({"kind": "user"})).await;
    assert_error(status, &answer, 400, "bad_request");
    let (status, answer) = server
        .post(
            "/api/v1/reports",
            None,
            json!({"kind": "user", "target_id": p.b_id, "reason": reason}),
        )
        .await;
    assert_error(status, &answer, 401, "unauthenticated");

    // Members do not see the queue or resolve.
    let one = filed(
        server,
        &p.a_token,
        json!({"kind": "user", "target_id": carol_id, "reason": reason}),
    )
    .await;
    let (status, body) = server.get("/api/v1/admin/reports", Some(&p.a_token)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) =
        resolve(server, &carol, &id_of(&one), json!({"action": "dismissed"})).await;
    assert_error(status, &body, 403, "forbidden");

    for (body, field) in [
        (json!({"action": "banished"}), "action"),
        (
            json!({"action": "dismissed", "note": "x".repeat(501)}),
            "note",
        ),
    ] {
        let (status, answer) = resolve(server, &admin, &id_of(&one), body).await;
        assert_bad_field(status, &answer, field);
    }
    for id in ["424242", "nope"] {
        let (status, body) = resolve(server, &admin, id, json!({"action": "dismissed"})).await;
        assert_error(status, &body, 404, "not_found");
    }
    for (query, field) in [
        ("status=closed", "status"),
        ("limit=101", "limit"),
        ("cursor=!!", "cursor"),
    ] {
        let (status, body) = server
            .get(&format!("/api/v1/admin/reports?{query}"), Some(&admin))
            .await;
        assert_bad_field(status, &body, field);
    }
    let (status, _) = resolve(server, &admin, &id_of(&one), json!({"action": "dismissed"})).await;
    assert_eq!(status, 200);
    let (status, body) =
        resolve(server, &admin, &id_of(&one), json!({"action": "dismissed"})).await;
    assert_error(status, &body, 409, "conflict");
    bob.close().await;
}

#[tokio::test]
async fn reports_refuse_what_cannot_be_reported_and_members_see_no_queue() {
    let server = TestServer::start().await;
    refusals(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn reports_refuse_what_cannot_be_reported_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    refusals(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reporter_has_at_most_fifty_open_reports() {
    let server = TestServer::start().await;
    let (admin, _) = server.admin(ADMIN).await;
    let (token, _) = server.register("busy_body").await;
    let (_, target) = server.register("target").await;
    let body = json!({"kind": "user", "target_id": target, "reason": "again"});
    let mut first = None;
    for _ in 0..50 {
        first.get_or_insert(filed(&server, &token, body.clone()).await);
    }
    let (status, answer) = report(&server, &token, body.clone()).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "rate_limited");
    // Resolving one makes room for one more.
    let first = first.expect("a report");
    let (status, _) = resolve(
        &server,
        &admin,
        &id_of(&first),
        json!({"action": "dismissed"}),
    )
    .await;
    assert_eq!(status, 200);
    filed(&server, &token, body.clone()).await;
    let (status, _) = report(&server, &token, body).await;
    assert_eq!(status, 429);
    server.shutdown().await;
}

/// Room messages reported by id, and resolving with `message_deleted`
/// deleting what was reported, in a room and in a conversation.
async fn reported_messages_are_deleted(server: &TestServer) {
    let (admin, _) = server.admin(ADMIN).await;
    let (moderator, mod_id) = server.register("mod_mia").await;
    server.set_role(&admin, &mod_id, "moderator").await;
    let p = pair(server, server, "alice", "bob").await;
    let mut alice = server.client(&p.a_token).await;
    let mut bob = server.client(&p.b_token).await;
    let room_id = create_room(&mut alice, "ramen after work").await;
    join(&mut bob, &room_id).await;
    let (room_message, _) = say(&mut bob, &room_id, "you all smell").await;
    alice.next_of("room.message").await;

    let (status, body) = report(
        server,
        &p.a_token,
        json!({"kind": "room_message", "target_id": room_message, "reason": "rude"}),
    )
    .await;
    assert_bad_field(status, &body, "room_id");
    for (room, message) in [
        ("r_nosuchroom", room_message.as_str()),
        (room_id.as_str(), "m_nosuch"),
    ] {
        let (status, body) = report(
            server,
            &p.a_token,
            json!({"kind": "room_message", "target_id": message, "room_id": room, "reason": "rude"}),
        )
        .await;
        assert_error(status, &body, 404, "not_found");
    }
    let of_room = filed(
        server,
        &p.a_token,
        json!({"kind": "room_message", "target_id": room_message, "room_id": room_id,
               "reason": "rude"}),
    )
    .await;
    assert_eq!(of_room["excerpt"], "you all smell");
    assert_eq!(of_room["room_id"], json!(room_id));
    assert_eq!(of_room["target_id"], json!(room_message));

    let dm = bob
        .ok(json!({"type": "dm.send", "conversation_id": p.conversation, "text": "pay me"}))
        .await;
    let dm_id = dm["message_id"].as_str().expect("message id").to_owned();
    alice.next_of("dm.message").await;
    let of_dm = filed(
        server,
        &p.a_token,
        json!({"kind": "dm_message", "target_id": dm_id, "conversation_id": p.conversation,
               "reason": "extortion"}),
    )
    .await;
    let of_user = filed(
        server,
        &p.a_token,
        json!({"kind": "user", "target_id": p.b_id, "reason": "all of it"}),
    )
    .await;

    // Only a message can be deleted.
    let (status, body) = resolve(
        server,
        &moderator,
        &id_of(&of_user),
        json!({"action": "message_deleted"}),
    )
    .await;
    assert_bad_field(status, &body, "action");

    let (status, body) = resolve(
        server,
        &moderator,
        &id_of(&of_room),
        json!({"action": "message_deleted"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for socket in [&mut alice, &mut bob] {
        let deleted = socket.next_of("room.message_deleted").await;
        assert_eq!(deleted["message_id"], json!(room_message));
        assert_eq!(deleted["deleted_by"], json!(mod_id));
    }
    // The report keeps its copy.
    let (done, _) = server
        .page("/api/v1/admin/reports?status=resolved", &moderator)
        .await;
    assert_eq!(done[0]["excerpt"], "you all smell");

    let (status, body) = resolve(
        server,
        &moderator,
        &id_of(&of_dm),
        json!({"action": "message_deleted"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for socket in [&mut alice, &mut bob] {
        let deleted = socket.next_of("dm.message_deleted").await;
        assert_eq!(deleted["message_id"], json!(dm_id));
    }
    let (status, history) = server
        .get(
            &format!("/api/v1/conversations/{}/messages", p.conversation),
            Some(&p.a_token),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let stored = &history["items"][0];
    assert_eq!(stored["deleted"], true, "{history}");
    assert_eq!(stored["text"], "");
    // A deleted message can no longer be reported.
    let (status, body) = report(
        server,
        &p.a_token,
        json!({"kind": "dm_message", "target_id": dm_id, "conversation_id": p.conversation,
               "reason": "again"}),
    )
    .await;
    assert_error(status, &body, 404, "not_found");

    let (audit, _) = server.page("/api/v1/admin/audit?limit=100", &admin).await;
    let deletes: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "message.delete")
        .collect();
    assert_eq!(deletes.len(), 2, "{audit:?}");
    assert!(deletes.iter().all(|e| e["actor_id"] == json!(mod_id)));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn resolving_with_message_deleted_deletes_the_reported_message() {
    let server = TestServer::start().await;
    reported_messages_are_deleted(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn resolving_with_message_deleted_deletes_the_reported_message_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    reported_messages_are_deleted(&server).await;
    server.shutdown().await;
}
