//! The safety tools together, as a harassed user and a moderator use
//! them (SAFETY-v1): B harasses A in their conversation; A blocks B and
//! reports the message; a moderator deletes it and suspends B; B's
//! sockets close and B cannot log in; A's report is resolved and A is
//! told. On one node (SQLite) and across two (Postgres and Redis), with
//! B's sockets on both nodes.

use std::time::Duration;

use crate::common::json::{assert_error, keys, text_of};
use crate::common::place::{Place, RoomKnobs};
use crate::common::platform::match_pair;
use crate::common::Ended;
use crate::room_contract;
use serde_json::{json, Value};

const CLOSES_WITHIN: Duration = Duration::from_secs(20);

/// Whether any string in `value` mentions `needle`.
fn mentions(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(text) => text.contains(needle),
        Value::Array(items) => items.iter().any(|v| mentions(v, needle)),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, v)| key.contains(needle) || mentions(v, needle)),
        _ => false,
    }
}

async fn a_harassed_user_is_protected_end_to_end(place: Place) {
    let api = place.api();
    let (admin_token, _) = place.admin("root_admin").await;
    let (mut ann, ann_token, _) = place.person("ann").await;
    let (mut ben, ben_token, ben_id) = place.person("ben").await;
    let (_, mod_token, mod_id) = place.person("mod_mia").await;
    api.set_role(&admin_token, &mod_id, "moderator").await;
    // Ben has a second socket, on the other node when there are two.
    let mut ben_again = place.socket(&ben_token).await;

    // Ben harasses Ann.
    let conversation = match_pair(api, &ann_token, api, &ben_token, &ben_id).await;
    let sent = ben
        .ok(json!({"type": "dm.send", "conversation_id": conversation,
                   "text": "answer me or you will regret it"}))
        .await;
    let harassing = text_of(&sent["message_id"]);
    ann.next_of("dm.message").await;

    // Ann blocks him: the conversation closes for both, his next message
    // is refused.
    let (status, body) = api
        .post(
            &format!("/api/v1/users/{ben_id}/block"),
            Some(&ann_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    ann.next_of("conversation.closed").await;
    ben.next_of("conversation.closed").await;
    ben.err(
        json!({"type": "dm.send", "conversation_id": conversation, "text": "hello??"}),
        "forbidden",
    )
    .await;

    // Ann reports the message; the report keeps its text.
    let (status, body) = api
        .post(
            "/api/v1/reports",
            Some(&ann_token),
            json!({"kind": "dm_message", "target_id": harassing,
                   "conversation_id": conversation, "reason": "threatening me"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let report_id = text_of(&body["report"]["id"]);
    assert_eq!(body["report"]["excerpt"], "answer me or you will regret it");

    // The moderator finds it in the queue.
    let (status, queue) = api
        .get("/api/v1/admin/reports?status=open", Some(&mod_token))
        .await;
    assert_eq!(status, 200, "{queue}");
    let listed = queue["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["id"] == report_id.as_str())
        .unwrap_or_else(|| panic!("the report is queued: {queue}"))
        .clone();
    assert_eq!(listed["kind"], "dm_message", "{listed}");
    assert_eq!(listed["reason"], "threatening me", "{listed}");

    // They delete the message and suspend Ben.
    let (status, body) = api
        .post(
            &format!("/api/v1/admin/reports/{report_id}/resolve"),
            Some(&mod_token),
            json!({"action": "message_deleted", "note": "threat"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "resolved", "{body}");
    let (status, body) = api
        .post(
            &format!("/api/v1/admin/users/{ben_id}/suspend"),
            Some(&mod_token),
            json!({"reason": "harassment"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");

    // Every socket of Ben's closes with 4010; he cannot come back.
    for socket in [&mut ben, &mut ben_again] {
        assert_eq!(socket.closed_with(CLOSES_WITHIN).await, Ended::Closed(4010));
    }
    let (status, body) = api.login_with("ben", crate::common::api::PASSWORD).await;
    assert_error(status, &body, 403, "forbidden");
    assert!(mentions(&body, "suspended"), "{body}");
    let (status, body) = api.get("/api/v1/me", Some(&ben_token)).await;
    assert_error(status, &body, 403, "forbidden");

    // Ann hears of the deletion and of her report, not of who handled it.
    let deleted = ann.next_of("dm.message_deleted").await;
    assert_eq!(deleted["message_id"], harassing.as_str(), "{deleted}");
    let notified = ann
        .next_matching(|f| {
            f["type"] == "notification" && f["notification"]["kind"] == "report_resolved"
        })
        .await;
    let data = &notified["notification"]["data"];
    assert_eq!(keys(data), ["action", "kind", "report_id"], "{notified}");
    assert_eq!(data["action"], "message_deleted", "{notified}");
    assert!(!mentions(&notified, "mod_mia"), "{notified}");
    let history = ann
        .ok(json!({"type": "dm.history", "conversation_id": conversation}))
        .await;
    let message = &history["messages"][0];
    assert_eq!(message["message_id"], harassing.as_str(), "{history}");
    assert_eq!(message["deleted"], true, "{history}");
    assert_eq!(message["text"], "", "{history}");

    // Everything the moderator did is on the record.
    let (status, audit) = api
        .get("/api/v1/admin/audit?limit=100", Some(&admin_token))
        .await;
    assert_eq!(status, 200, "{audit}");
    let by_mod: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["actor_id"] == mod_id.as_str())
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["message.delete", "report.resolve", "user.suspend"] {
        assert!(by_mod.contains(&action), "{action} in {by_mod:?}");
    }
    place.shutdown().await;
}

room_contract! {
    a_harassed_user_is_protected_end_to_end: RoomKnobs::default(),
}
