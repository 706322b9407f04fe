//! Blocking and unmatching (SAFETY-v1, "Blocking and unmatching") over
//! real sockets and REST, on one node (SQLite) and on two (Postgres and
//! Redis): what a block refuses in both directions and what lifting it
//! gives back, and an unmatch closing the conversation until the pair
//! matches again.

use std::time::Duration;

use crate::common::json::{assert_error, text_of};
use crate::common::place::{Place, RoomKnobs};
use crate::common::platform::{create_match, new_card, new_event, press_interest, rsvp};
use crate::room_contract;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(400);

fn send(conversation: &str, text: &str) -> Value {
    json!({"type": "dm.send", "conversation_id": conversation, "text": text})
}

/// The texts of a `dm.history` answer, in order.
fn texts(history: &Value) -> Vec<&str> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect()
}

async fn a_block_closes_everything_between_the_pair_until_lifted(place: Place) {
    let (mut ann, ann_token, ann_id) = place.person("ann").await;
    let (mut ben, ben_token, ben_id) = place.person("ben").await;
    let api = place.api();
    let ann_card = text_of(&new_card(api, &ann_token, "rust", "talk rust", &[]).await["id"]);
    let ben_card = text_of(&new_card(api, &ben_token, "go", "talk go", &[]).await["id"]);
    press_interest(api, &ann_card, &ben_token).await;
    let record = create_match(api, &ann_card, &ann_token, &ben_id).await;
    let conversation = text_of(&record["conversation_id"]);
    ben.ok(send(&conversation, "hi ann")).await;

    let path = format!("/api/v1/users/{ben_id}/block");
    let (status, body) = api.post(&path, Some(&ann_token), json!({})).await;
    assert_eq!(status, 204, "{body}");
    for side in [&mut ann, &mut ben] {
        let closed = side.next_of("conversation.closed").await;
        assert_eq!(
            closed,
            json!({"type": "conversation.closed", "conversation_id": conversation, "reason": "blocked"})
        );
    }
    let (status, _) = api.post(&path, Some(&ann_token), json!({})).await;
    assert_eq!(status, 204, "blocking again changes nothing");
    ann.assert_no("conversation.closed", QUIET).await;

    // Both directions: messages, interest, matching, presence.
    ben.err(send(&conversation, "why?"), "forbidden").await;
    ann.err(send(&conversation, "bye"), "forbidden").await;
    ben.err(
        json!({"type": "dm.typing", "conversation_id": conversation}),
        "forbidden",
    )
    .await;
    let history = ann
        .ok(json!({"type": "dm.history", "conversation_id": conversation}))
        .await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1));
    let (status, body) = api
        .put(&format!("/api/v1/cards/{ben_card}/interest"), &ann_token)
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = api
        .post(
            &format!("/api/v1/cards/{ann_card}/matches"),
            Some(&ann_token),
            json!({"user_id": ben_id}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let presence = ann
        .ok(json!({"type": "presence.query", "user_ids": [ben_id]}))
        .await;
    assert_eq!(presence, json!({"presence": []}));
    let presence = ben
        .ok(json!({"type": "presence.query", "user_ids": [ann_id]}))
        .await;
    assert_eq!(presence, json!({"presence": []}));

    // Only the blocker lists the block.
    let (items, next) = api.page("/api/v1/me/blocks", &ann_token).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["user"]["id"], ben_id.as_str());
    assert!(items[0]["created_at"].is_string());
    assert!(next.is_none());
    let (items, _) = api.page("/api/v1/me/blocks", &ben_token).await;
    assert!(items.is_empty(), "{items:?}");

    // Refusals of the block itself.
    let (status, body) = api
        .post(
            &format!("/api/v1/users/{ann_id}/block"),
            Some(&ann_token),
            json!({}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = api
        .post("/api/v1/users/999999/block", Some(&ann_token), json!({}))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, _) = api.post(&path, None, json!({})).await;
    assert_eq!(status, 401);

    // Lifted: the conversation works again; what was refused stays so.
    let (status, body) = api.delete(&path, &ann_token).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = api.delete(&path, &ann_token).await;
    assert_eq!(status, 204, "unblocking again changes nothing");
    ben.ok(send(&conversation, "friends again?")).await;
    ann.next_matching(|f| f["type"] == "dm.message" && f["text"] == "friends again?")
        .await;
    let history = ann
        .ok(json!({"type": "dm.history", "conversation_id": conversation}))
        .await;
    assert_eq!(texts(&history), ["hi ann", "friends again?"]);
    press_interest(api, &ben_card, &ann_token).await;
    place.shutdown().await;
}

async fn a_blocked_user_hears_nothing_of_the_blocker(place: Place) {
    let (mut ann, ann_token, _) = place.person("ann").await;
    let api = place.api();
    let (ben_token, ben_id) = api.register("ben").await;
    let (cat_token, cat_id) = api.register("cat").await;
    for (token, id) in [(&ben_token, &ben_id), (&cat_token, &cat_id)] {
        crate::common::platform::match_pair(api, &ann_token, api, token, id).await;
    }
    let (status, body) = api
        .post(
            &format!("/api/v1/users/{ann_id_of}/block", ann_id_of = ben_id),
            Some(&ann_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");

    // Cat coming online is news to ann; ben is not.
    let _cat = place.socket(&cat_token).await;
    let online = ann.next_of("presence").await;
    assert_eq!(online["user_id"], cat_id.as_str(), "{online}");
    let _ben = place.socket(&ben_token).await;
    ann.assert_no("presence", QUIET).await;

    // Ben hosts an event both attend; ann hears nothing of his changes.
    let event = new_event(
        api,
        &ben_token,
        json!({"title": "Lunch", "starts_at": "2099-03-01T12:00:00Z", "venue": "Canteen", "capacity": 5}),
    )
    .await;
    let event_id = text_of(&event["id"]);
    rsvp(api, &event_id, &ann_token).await;
    rsvp(api, &event_id, &cat_token).await;
    let (status, body) = api
        .patch(
            &format!("/api/v1/events/{event_id}"),
            &ben_token,
            json!({"title": "Lunch, moved"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (items, _) = api.page("/api/v1/notifications", &cat_token).await;
    assert!(
        items.iter().any(|n| n["kind"] == "event_updated"),
        "cat hears of it: {items:?}"
    );
    let (items, _) = api.page("/api/v1/notifications", &ann_token).await;
    assert!(
        !items.iter().any(|n| n["kind"] == "event_updated"),
        "ann hears nothing caused by ben: {items:?}"
    );
    place.shutdown().await;
}

async fn unmatching_closes_the_conversation_until_the_pair_matches_again(place: Place) {
    let (mut ann, ann_token, ann_id) = place.person("ann").await;
    let (mut ben, ben_token, ben_id) = place.person("ben").await;
    let api = place.api();
    let card = text_of(&new_card(api, &ann_token, "rust", "talk rust", &[]).await["id"]);
    press_interest(api, &card, &ben_token).await;
    let record = create_match(api, &card, &ann_token, &ben_id).await;
    let match_id = text_of(&record["id"]);
    let conversation = text_of(&record["conversation_id"]);
    ann.ok(send(&conversation, "hello ben")).await;

    let (eve_token, _) = api.register("eve").await;
    let path = format!("/api/v1/matches/{match_id}");
    let (status, body) = api.delete(&path, &eve_token).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = api.delete(&path, &ben_token).await;
    assert_eq!(status, 204, "{body}");
    for side in [&mut ann, &mut ben] {
        let closed = side.next_of("conversation.closed").await;
        assert_eq!(
            closed,
            json!({"type": "conversation.closed", "conversation_id": conversation, "reason": "unmatched"})
        );
    }
    let (status, body) = api.delete(&path, &ann_token).await;
    assert_error(status, &body, 404, "not_found");

    for (side, token) in [(&mut ann, &ann_token), (&mut ben, &ben_token)] {
        side.err(send(&conversation, "still there?"), "forbidden")
            .await;
        side.err(
            json!({"type": "dm.history", "conversation_id": conversation}),
            "forbidden",
        )
        .await;
        side.err(
            json!({"type": "dm.read", "conversation_id": conversation, "seq": 1}),
            "forbidden",
        )
        .await;
        let (items, _) = api.page("/api/v1/conversations", token).await;
        assert!(
            items.is_empty(),
            "the conversation leaves the list: {items:?}"
        );
        let (items, _) = api.page("/api/v1/matches", token).await;
        assert!(items.is_empty(), "the match is gone: {items:?}");
        let (status, body) = api
            .get(
                &format!("/api/v1/conversations/{conversation}/messages"),
                Some(token),
            )
            .await;
        assert_error(status, &body, 403, "forbidden");
    }

    // Matching again opens the same conversation, with its history.
    let (status, body) = api
        .post(
            &format!("/api/v1/cards/{card}/matches"),
            Some(&ann_token),
            json!({"user_id": ben_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["match"]["conversation_id"], conversation.as_str());
    ben.ok(send(&conversation, "hello again")).await;
    let history = ann
        .ok(json!({"type": "dm.history", "conversation_id": conversation}))
        .await;
    assert_eq!(texts(&history), ["hello ben", "hello again"]);
    let (items, _) = api.page("/api/v1/conversations", &ben_token).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["other_user"]["id"], ann_id.as_str());
    place.shutdown().await;
}

room_contract! {
    a_block_closes_everything_between_the_pair_until_lifted: RoomKnobs::default(),
    a_blocked_user_hears_nothing_of_the_blocker: RoomKnobs::default(),
    unmatching_closes_the_conversation_until_the_pair_matches_again: RoomKnobs::default(),
}
