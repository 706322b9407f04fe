//! Interest, matching and the conversations matches open, over REST and
//! live on the socket. The whole story (card, interest, live notification,
//! match, notifications to both, the shared conversation) runs on SQLite
//! and on Postgres; the Postgres half needs the shared server (see
//! `crate::common::postgres`) and fails, saying how to start it, when it is down.

use std::time::Duration;

use crate::common::json::{
    assert_bad_field, assert_error, assert_error_naming, keys, notification_in, parse_time, text_of,
};
use crate::common::platform::new_card;
use crate::common::{TestServer, WsClient};
use reqwest::Method;
use serde_json::{json, Value};

/// How long a test watches for a frame that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// Posts a card with no body or tags; returns its id.
async fn card_of(server: &TestServer, token: &str, title: &str) -> String {
    text_of(&new_card(server, token, title, "", &[]).await["id"])
}

async fn press(server: &TestServer, card: &str, token: &str) -> (u16, Value) {
    server
        .put(&format!("/api/v1/cards/{card}/interest"), token)
        .await
}

async fn withdraw(server: &TestServer, card: &str, token: &str) -> (u16, Value) {
    server
        .delete(&format!("/api/v1/cards/{card}/interest"), token)
        .await
}

async fn match_with(server: &TestServer, card: &str, token: &str, user_id: &str) -> (u16, Value) {
    server
        .post(
            &format!("/api/v1/cards/{card}/matches"),
            Some(token),
            json!({"user_id": user_id}),
        )
        .await
}

/// GETs a page that must answer 200; returns its items.
async fn items(server: &TestServer, path: &str, token: &str) -> Vec<Value> {
    server.page(path, token).await.0
}

async fn notifications_of_kind(server: &TestServer, token: &str, kind: &str) -> Vec<Value> {
    items(server, "/api/v1/notifications", token)
        .await
        .into_iter()
        .filter(|n| n["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn pressing_interest_twice_notifies_the_owner_once() {
    let server = TestServer::start().await;
    let (mut owner_ws, owner, _) = server.user("press_owner").await;
    let (fan, fan_id) = server.register("press_fan").await;
    let card = card_of(&server, &owner, "talk to me").await;

    let (status, body) = press(&server, &card, &fan).await;
    assert_eq!(status, 204, "first press answered {body}");
    let frame = owner_ws.next_of("notification").await;
    let live = notification_in(&frame, "interest_received");
    assert_eq!(live["data"]["card_id"], card.as_str(), "card in {frame}");
    assert_eq!(
        live["data"]["user"]["id"],
        fan_id.as_str(),
        "user in {frame}"
    );

    let (status, body) = press(&server, &card, &fan).await;
    assert_eq!(status, 204, "pressing again is fine: {body}");
    owner_ws.assert_no("notification", QUIET).await;

    let stored = notifications_of_kind(&server, &owner, "interest_received").await;
    assert_eq!(
        stored.len(),
        1,
        "one notification for two presses: {stored:?}"
    );
    assert_eq!(stored[0], live, "the stored notification is the pushed one");

    let interested = items(&server, &format!("/api/v1/cards/{card}/interests"), &owner).await;
    assert_eq!(interested.len(), 1, "one interest: {interested:?}");
    assert_eq!(interested[0]["user"]["id"], fan_id.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn racing_presses_notify_the_owner_once() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("race_owner").await;
    let (fan, _) = server.register("race_fan").await;
    let card = card_of(&server, &owner, "hot topic").await;
    let (first, second, third) = tokio::join!(
        press(&server, &card, &fan),
        press(&server, &card, &fan),
        press(&server, &card, &fan),
    );
    for (status, body) in [first, second, third] {
        assert_eq!(status, 204, "every racing press answers 204: {body}");
    }
    let stored = notifications_of_kind(&server, &owner, "interest_received").await;
    assert_eq!(
        stored.len(),
        1,
        "one notification for racing presses: {stored:?}"
    );
    let interested = items(&server, &format!("/api/v1/cards/{card}/interests"), &owner).await;
    assert_eq!(interested.len(), 1, "{interested:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn interest_refuses_own_closed_and_unknown_cards() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("refuse_owner").await;
    let (fan, _) = server.register("refuse_fan").await;
    let card = card_of(&server, &owner, "mine").await;

    let (status, body) = press(&server, &card, &owner).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = withdraw(&server, &card, &owner).await;
    assert_error(status, &body, 400, "bad_request");

    let (status, body) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/cards/{card}"),
            Some(&owner),
            Some(json!({"status": "closed"})),
        )
        .await;
    assert_eq!(status, 200, "closing answered {body}");
    let (status, body) = press(&server, &card, &fan).await;
    assert_error(status, &body, 409, "conflict");

    let (status, body) = press(&server, "999999", &fan).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = press(&server, "nope", &fan).await;
    assert_error(status, &body, 404, "not_found");

    let interested = items(&server, &format!("/api/v1/cards/{card}/interests"), &owner).await;
    assert!(
        interested.is_empty(),
        "no refused press was kept: {interested:?}"
    );
    let stored = notifications_of_kind(&server, &owner, "interest_received").await;
    assert!(stored.is_empty(), "nobody was notified: {stored:?}");

    let (status, body) = server
        .call(
            Method::PUT,
            &format!("/api/v1/cards/{card}/interest"),
            None,
            None,
        )
        .await;
    assert_error(status, &body, 401, "unauthenticated");
    server.shutdown().await;
}

#[tokio::test]
async fn withdrawing_interest_is_idempotent() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("withdraw_owner").await;
    let (fan, fan_id) = server.register("withdraw_fan").await;
    let card = card_of(&server, &owner, "maybe").await;

    let (status, body) = withdraw(&server, &card, &fan).await;
    assert_eq!(status, 204, "withdrawing what was never pressed: {body}");
    let (status, _) = press(&server, &card, &fan).await;
    assert_eq!(status, 204);
    let interested = items(&server, &format!("/api/v1/cards/{card}/interests"), &owner).await;
    assert_eq!(interested.len(), 1);

    let (status, body) = withdraw(&server, &card, &fan).await;
    assert_eq!(status, 204, "withdraw answered {body}");
    let (status, body) = withdraw(&server, &card, &fan).await;
    assert_eq!(status, 204, "withdrawing twice answered {body}");
    let interested = items(&server, &format!("/api/v1/cards/{card}/interests"), &owner).await;
    assert!(interested.is_empty(), "withdrawn: {interested:?}");

    // Without interest there is nothing to match.
    let (status, body) = match_with(&server, &card, &owner, &fan_id).await;
    assert_bad_field(status, &body, "user_id");
    server.shutdown().await;
}

#[tokio::test]
async fn only_the_owner_lists_who_is_interested() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("list_owner").await;
    let (first, first_id) = server.register("list_first").await;
    let (second, second_id) = server.register("list_second").await;
    let card = card_of(&server, &owner, "popular").await;
    let path = format!("/api/v1/cards/{card}/interests");
    assert_eq!(press(&server, &card, &first).await.0, 204);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(press(&server, &card, &second).await.0, 204);

    for outsider in [&first, &second] {
        let (status, body) = server.get(&path, Some(outsider)).await;
        assert_error(status, &body, 403, "forbidden");
    }
    let (status, body) = server.get(&path, None).await;
    assert_error(status, &body, 401, "unauthenticated");

    let listed = items(&server, &path, &owner).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let who: Vec<&str> = listed
        .iter()
        .map(|i| i["user"]["id"].as_str().expect("user id"))
        .collect();
    assert_eq!(who, [second_id.as_str(), first_id.as_str()], "newest first");
    for item in &listed {
        assert_eq!(
            keys(item),
            ["created_at", "user"],
            "interest fields in {item}"
        );
        assert!(item["user"]["handle"].is_string(), "user summary in {item}");
        assert!(item["user"]["display_name"].is_string(), "{item}");
        parse_time(&item["created_at"]);
    }
    assert_eq!(listed[1]["user"]["handle"], "list_first");

    // Paging one at a time gives the same two.
    let (status, page) = server.get(&format!("{path}?limit=1"), Some(&owner)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["user"]["id"], second_id.as_str());
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (status, page) = server
        .get(&format!("{path}?limit=1&cursor={cursor}"), Some(&owner))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["user"]["id"], first_id.as_str());
    assert_eq!(page["next_cursor"], Value::Null);

    let (status, body) = server
        .get("/api/v1/cards/999999/interests", Some(&owner))
        .await;
    assert_error(status, &body, 404, "not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn matching_is_for_the_owner_and_interested_users_only() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("m_owner").await;
    let (fan, fan_id) = server.register("m_fan").await;
    let (stranger, stranger_id) = server.register("m_stranger").await;
    let card = card_of(&server, &owner, "matchable").await;
    assert_eq!(press(&server, &card, &fan).await.0, 204);

    // Only the owner matches, even with someone who is interested.
    let (status, body) = match_with(&server, &card, &fan, &fan_id).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = match_with(&server, &card, &stranger, &fan_id).await;
    assert_error(status, &body, 403, "forbidden");

    // Only with someone who pressed interested.
    let (status, body) = match_with(&server, &card, &owner, &stranger_id).await;
    assert_bad_field(status, &body, "user_id");
    // Unknown and malformed users.
    let (status, body) = match_with(&server, &card, &owner, "999999").await;
    assert_bad_field(status, &body, "user_id");
    for bad in ["abc", "0", "-4", ""] {
        let (status, body) = match_with(&server, &card, &owner, bad).await;
        assert_bad_field(status, &body, "user_id");
    }
    let (status, body) = server
        .post(
            &format!("/api/v1/cards/{card}/matches"),
            Some(&owner),
            json!({}),
        )
        .await;
    assert_error_naming(status, &body, 400, "bad_request", "user_id");
    let (status, body) = match_with(&server, "999999", &owner, &fan_id).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .post(
            &format!("/api/v1/cards/{card}/matches"),
            None,
            json!({"user_id": fan_id}),
        )
        .await;
    assert_error(status, &body, 401, "unauthenticated");

    // None of that matched anyone or opened a conversation.
    for token in [&owner, &fan, &stranger] {
        assert!(items(&server, "/api/v1/matches", token).await.is_empty());
        assert!(items(&server, "/api/v1/conversations", token)
            .await
            .is_empty());
        assert!(notifications_of_kind(&server, token, "matched")
            .await
            .is_empty());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn matching_yourself_is_400_naming_user_id() {
    let server = TestServer::start().await;
    let (owner, owner_id) = server.register("self_matcher").await;
    let card = card_of(&server, &owner, "lonely").await;
    // The owner can never press interested on their own card, so they can
    // never be matched through it.
    let (status, body) = match_with(&server, &card, &owner, &owner_id).await;
    assert_bad_field(status, &body, "user_id");
    assert!(items(&server, "/api/v1/matches", &owner).await.is_empty());
    assert!(items(&server, "/api/v1/conversations", &owner)
        .await
        .is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_pair_shares_one_conversation_however_many_cards_match_them() {
    let server = TestServer::start().await;
    let (owner, owner_id) = server.register("pair_owner").await;
    let (fan, fan_id) = server.register("pair_fan").await;
    let first_card = card_of(&server, &owner, "first topic").await;
    let second_card = card_of(&server, &owner, "second topic").await;
    assert_eq!(press(&server, &first_card, &fan).await.0, 204);
    assert_eq!(press(&server, &second_card, &fan).await.0, 204);

    let (status, created) = match_with(&server, &first_card, &owner, &fan_id).await;
    assert_eq!(status, 201, "the first match answered {created}");
    assert_eq!(
        keys(&created),
        ["match"],
        "the body is {{match}}: {created}"
    );
    let record = &created["match"];
    assert_eq!(
        keys(record),
        ["card_id", "conversation_id", "created_at", "id", "user"],
        "match fields in {created}"
    );
    assert!(record["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(record["card_id"], first_card.as_str());
    assert_eq!(record["user"]["id"], fan_id.as_str(), "the matched user");
    assert_eq!(record["user"]["handle"], "pair_fan");
    let conversation = record["conversation_id"]
        .as_str()
        .expect("conversation_id is a string")
        .to_owned();
    parse_time(&record["created_at"]);

    // The same pair on the same card again: the existing match.
    let (status, again) = match_with(&server, &first_card, &owner, &fan_id).await;
    assert_eq!(status, 200, "matching again answered {again}");
    assert_eq!(again["match"]["id"], record["id"]);
    assert_eq!(again["match"]["conversation_id"], conversation.as_str());
    assert_eq!(again["match"]["created_at"], record["created_at"]);

    // Another card, same pair: a new match in the same conversation.
    let (status, second) = match_with(&server, &second_card, &owner, &fan_id).await;
    assert_eq!(status, 200, "the pair already has a conversation: {second}");
    assert_eq!(second["match"]["card_id"], second_card.as_str());
    assert_ne!(second["match"]["id"], record["id"], "a match per card");
    assert_eq!(
        second["match"]["conversation_id"],
        conversation.as_str(),
        "one conversation per pair"
    );

    // Both sides see both matches and the one conversation.
    for (token, other_id) in [(&owner, &fan_id), (&fan, &owner_id)] {
        let matches = items(&server, "/api/v1/matches", token).await;
        assert_eq!(matches.len(), 2, "{matches:?}");
        for m in &matches {
            assert_eq!(m["user"]["id"], other_id.as_str(), "{m}");
            assert_eq!(m["conversation_id"], conversation.as_str(), "{m}");
        }
        let conversations = items(&server, "/api/v1/conversations", token).await;
        assert_eq!(
            conversations.len(),
            1,
            "one conversation: {conversations:?}"
        );
        assert_eq!(conversations[0]["id"], conversation.as_str());
        assert_eq!(conversations[0]["other_user"]["id"], other_id.as_str());
    }

    // The reverse direction: the fan's own card matching the owner.
    let fan_card = card_of(&server, &fan, "fan's topic").await;
    assert_eq!(press(&server, &fan_card, &owner).await.0, 204);
    let (status, reverse) = match_with(&server, &fan_card, &fan, &owner_id).await;
    assert_eq!(
        status, 200,
        "the pair already has a conversation: {reverse}"
    );
    assert_eq!(reverse["match"]["conversation_id"], conversation.as_str());
    assert_eq!(reverse["match"]["user"]["id"], owner_id.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn matches_and_conversations_are_listed_for_both_sides() {
    let server = TestServer::start().await;
    let (owner, owner_id) = server.register("both_owner").await;
    let (fan, fan_id) = server.register("both_fan").await;
    let (other_fan, other_fan_id) = server.register("both_other").await;
    let card = card_of(&server, &owner, "shared").await;
    assert_eq!(press(&server, &card, &fan).await.0, 204);
    assert_eq!(press(&server, &card, &other_fan).await.0, 204);
    let (status, first) = match_with(&server, &card, &owner, &fan_id).await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = match_with(&server, &card, &owner, &other_fan_id).await;
    assert_eq!(
        status, 201,
        "a different pair gets its own conversation: {second}"
    );
    assert_ne!(
        first["match"]["conversation_id"],
        second["match"]["conversation_id"]
    );

    let owner_matches = items(&server, "/api/v1/matches", &owner).await;
    let users: Vec<&str> = owner_matches
        .iter()
        .map(|m| m["user"]["id"].as_str().expect("user id"))
        .collect();
    assert_eq!(
        users,
        [other_fan_id.as_str(), fan_id.as_str()],
        "newest first"
    );
    let m = &owner_matches[1];
    assert_eq!(
        keys(m),
        ["card_id", "conversation_id", "created_at", "id", "user"],
        "match item fields in {m}"
    );
    assert_eq!(m["id"], first["match"]["id"]);
    assert_eq!(m["card_id"], card.as_str());
    assert_eq!(m["conversation_id"], first["match"]["conversation_id"]);
    assert_eq!(m["created_at"], first["match"]["created_at"]);

    let fan_matches = items(&server, "/api/v1/matches", &fan).await;
    assert_eq!(fan_matches.len(), 1, "{fan_matches:?}");
    assert_eq!(fan_matches[0]["user"]["id"], owner_id.as_str());
    assert_eq!(fan_matches[0]["user"]["handle"], "both_owner");
    assert_eq!(fan_matches[0]["id"], first["match"]["id"]);

    let owner_conversations = items(&server, "/api/v1/conversations", &owner).await;
    assert_eq!(owner_conversations.len(), 2, "{owner_conversations:?}");
    let fan_conversations = items(&server, "/api/v1/conversations", &fan).await;
    assert_eq!(fan_conversations.len(), 1, "{fan_conversations:?}");
    let c = &fan_conversations[0];
    assert_eq!(
        keys(c),
        [
            "id",
            "last_activity_at",
            "last_message",
            "other_user",
            "unread_count"
        ],
        "conversation fields in {c}"
    );
    assert_eq!(
        c["last_activity_at"], first["match"]["created_at"],
        "without messages, activity is the match"
    );
    assert_eq!(c["id"], first["match"]["conversation_id"]);
    assert_eq!(c["other_user"]["id"], owner_id.as_str());
    assert_eq!(c["last_message"], Value::Null);
    assert_eq!(c["unread_count"], 0);

    // Paging the owner's matches one at a time.
    let (status, page) = server.get("/api/v1/matches?limit=1", Some(&owner)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (status, page) = server
        .get(
            &format!("/api/v1/matches?limit=1&cursor={cursor}"),
            Some(&owner),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["user"]["id"], fan_id.as_str());
    assert_eq!(page["next_cursor"], Value::Null);
    let (status, body) = server.get("/api/v1/matches?limit=0", Some(&owner)).await;
    assert_bad_field(status, &body, "limit");
    let (status, body) = server
        .get("/api/v1/conversations?cursor=junk!", Some(&owner))
        .await;
    assert_bad_field(status, &body, "cursor");

    // The third user has nothing.
    let (lonely, _) = server.register("both_lonely").await;
    assert!(items(&server, "/api/v1/matches", &lonely).await.is_empty());
    assert!(items(&server, "/api/v1/conversations", &lonely)
        .await
        .is_empty());
    for path in ["/api/v1/matches", "/api/v1/conversations"] {
        let (status, body) = server.get(path, None).await;
        assert_error(status, &body, 401, "unauthenticated");
    }
    server.shutdown().await;
}

/// A posts a card; B, online, presses interested and A's socket hears of
/// it at once; A matches B and both sockets hear of the match; both see
/// the conversation over REST.
async fn the_story(server: &TestServer) {
    let (mut a_ws, a_token, a_id) = server.user("story_a").await;
    let (mut b_ws, b_token, b_id) = server.user("story_b").await;
    let card = card_of(server, &a_token, "Let's talk Rust").await;

    let (status, body) = press(server, &card, &b_token).await;
    assert_eq!(status, 204, "B presses interested: {body}");
    let frame = a_ws.next_of("notification").await;
    let interest = notification_in(&frame, "interest_received");
    assert_eq!(interest["data"]["card_id"], card.as_str(), "{frame}");
    assert_eq!(interest["data"]["user"]["id"], b_id.as_str(), "{frame}");
    assert_eq!(interest["data"]["user"]["handle"], "story_b", "{frame}");
    b_ws.assert_no("notification", QUIET).await;

    let interested = items(server, &format!("/api/v1/cards/{card}/interests"), &a_token).await;
    assert_eq!(interested.len(), 1, "{interested:?}");
    assert_eq!(interested[0]["user"]["id"], b_id.as_str());

    let (status, created) = match_with(server, &card, &a_token, &b_id).await;
    assert_eq!(status, 201, "A matches B: {created}");
    let record = &created["match"];
    let conversation = record["conversation_id"]
        .as_str()
        .expect("conversation_id")
        .to_owned();
    assert_eq!(record["user"]["id"], b_id.as_str());

    let frame = a_ws.next_of("notification").await;
    let to_a = notification_in(&frame, "matched");
    assert_eq!(
        to_a["data"]["conversation_id"],
        conversation.as_str(),
        "{frame}"
    );
    assert_eq!(to_a["data"]["card_id"], card.as_str(), "{frame}");
    assert_eq!(
        to_a["data"]["user"]["id"],
        b_id.as_str(),
        "A hears of B: {frame}"
    );

    let frame = b_ws.next_of("notification").await;
    let to_b = notification_in(&frame, "matched");
    assert_eq!(
        to_b["data"]["conversation_id"],
        conversation.as_str(),
        "{frame}"
    );
    assert_eq!(to_b["data"]["card_id"], card.as_str(), "{frame}");
    assert_eq!(
        to_b["data"]["user"]["id"],
        a_id.as_str(),
        "B hears of A: {frame}"
    );
    assert_ne!(to_a["id"], to_b["id"], "each side has its own notification");

    for (token, other_id) in [(&a_token, &b_id), (&b_token, &a_id)] {
        let conversations = items(server, "/api/v1/conversations", token).await;
        assert_eq!(conversations.len(), 1, "{conversations:?}");
        assert_eq!(conversations[0]["id"], conversation.as_str());
        assert_eq!(conversations[0]["other_user"]["id"], other_id.as_str());
        assert_eq!(conversations[0]["last_message"], Value::Null);
        assert_eq!(conversations[0]["unread_count"], 0);
        let matches = items(server, "/api/v1/matches", token).await;
        assert_eq!(matches.len(), 1, "{matches:?}");
        assert_eq!(matches[0]["conversation_id"], conversation.as_str());
        assert_eq!(matches[0]["user"]["id"], other_id.as_str());
    }

    // The pushed notifications are also kept for listing.
    let a_stored = items(server, "/api/v1/notifications", &a_token).await;
    let a_kinds: Vec<&str> = a_stored
        .iter()
        .map(|n| n["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(a_kinds, ["matched", "interest_received"], "newest first");
    assert_eq!(a_stored[0], to_a);
    assert_eq!(a_stored[1], interest);
    let b_stored = items(server, "/api/v1/notifications", &b_token).await;
    assert_eq!(b_stored, [to_b], "B has just the match");

    // Matching again notifies nobody.
    let (status, again) = match_with(server, &card, &a_token, &b_id).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["match"]["conversation_id"], conversation.as_str());
    a_ws.assert_no("notification", QUIET).await;
    b_ws.assert_no("notification", Duration::ZERO).await;
    a_ws.close().await;
    b_ws.close().await;
}

#[tokio::test]
async fn the_story_on_sqlite() {
    let server = TestServer::start().await;
    the_story(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_story_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    the_story(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_socket_hears_only_its_own_notifications() {
    let server = TestServer::start().await;
    let (mut owner_ws, owner, _) = server.user("own_owner").await;
    let (mut bystander_ws, _, _) = server.user("own_bystander").await;
    let (fan, _) = server.register("own_fan").await;
    let card = card_of(&server, &owner, "private news").await;
    // A second socket of the owner hears it too.
    let mut owner_ws2 = WsClient::hello(&server, &owner).await;
    assert_eq!(press(&server, &card, &fan).await.0, 204);
    let first = owner_ws.next_of("notification").await;
    let second = owner_ws2.next_of("notification").await;
    assert_eq!(
        first, second,
        "every socket of the owner gets the same frame"
    );
    notification_in(&first, "interest_received");
    bystander_ws.assert_no("notification", QUIET).await;
    owner_ws.close().await;
    owner_ws2.close().await;
    bystander_ws.close().await;
    server.shutdown().await;
}
