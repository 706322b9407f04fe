//! Notifications over REST (listing, the unread filter, the read marker,
//! paging) and profiles (editing one's own, reading anyone's).

use std::collections::HashSet;

use crate::common::json::{
    assert_bad_field, assert_error, assert_error_naming, keys, parse_time, text_of,
};
use crate::common::platform::{new_card, press_interest};
use crate::common::TestServer;
use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

async fn patch_me(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    server.patch("/api/v1/me", token, body).await
}

/// Gives `owner` one `interest_received` notification per card: the owner
/// posts `n` cards and `fan` presses interested on each, oldest first.
/// Returns the card ids in that order.
async fn interest_notifications(
    server: &TestServer,
    owner: &str,
    fan: &str,
    n: usize,
) -> Vec<String> {
    let mut cards = Vec::with_capacity(n);
    for i in 0..n {
        let card = new_card(server, owner, &format!("topic {i}"), "", &[]).await;
        let id = text_of(&card["id"]);
        press_interest(server, &id, fan).await;
        cards.push(id);
    }
    cards
}

/// One page of notifications for this query string.
async fn page(server: &TestServer, token: &str, query: &str) -> (Vec<Value>, Option<String>) {
    server
        .page(&format!("/api/v1/notifications{query}"), token)
        .await
}

fn card_ids(notifications: &[Value]) -> Vec<String> {
    notifications
        .iter()
        .map(|n| {
            n["data"]["card_id"]
                .as_str()
                .unwrap_or_else(|| panic!("card_id in {n}"))
                .to_owned()
        })
        .collect()
}

fn notification_id(notification: &Value) -> String {
    notification["id"]
        .as_str()
        .unwrap_or_else(|| panic!("notification id is a string: {notification}"))
        .to_owned()
}

async fn mark_read(server: &TestServer, token: &str, up_to_id: &str) -> (u16, Value) {
    server
        .post(
            "/api/v1/notifications/read",
            Some(token),
            json!({"up_to_id": up_to_id}),
        )
        .await
}

#[tokio::test]
async fn notifications_are_listed_newest_first_with_their_fields() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("n_owner").await;
    let (fan, fan_id) = server.register("n_fan").await;
    let before = OffsetDateTime::now_utc();
    let cards = interest_notifications(&server, &owner, &fan, 3).await;

    let (items, cursor) = page(&server, &owner, "").await;
    assert_eq!(cursor, None);
    let newest_first: Vec<String> = cards.iter().rev().cloned().collect();
    assert_eq!(card_ids(&items), newest_first, "newest first");
    let mut ids = HashSet::new();
    for n in &items {
        assert_eq!(
            keys(n),
            ["created_at", "data", "id", "kind"],
            "notification fields in {n}"
        );
        assert_eq!(n["kind"], "interest_received");
        assert_eq!(n["data"]["user"]["id"], fan_id.as_str());
        assert_eq!(n["data"]["user"]["handle"], "n_fan");
        let at = parse_time(&n["created_at"]);
        let slack = time::Duration::seconds(5);
        assert!(at >= before - slack && at <= OffsetDateTime::now_utc() + slack);
        assert!(ids.insert(notification_id(n)), "ids are distinct");
    }

    // Others' notifications are not shown; the fan has none.
    let (items, _) = page(&server, &fan, "").await;
    assert!(items.is_empty(), "{items:?}");
    let (status, body) = server.get("/api/v1/notifications", None).await;
    assert_error(status, &body, 401, "unauthenticated");
    server.shutdown().await;
}

#[tokio::test]
async fn the_read_marker_moves_forward_and_never_back() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("r_owner").await;
    let (fan, _) = server.register("r_fan").await;
    let cards = interest_notifications(&server, &owner, &fan, 5).await;
    let (all, _) = page(&server, &owner, "").await;
    assert_eq!(all.len(), 5);
    // all[0] is the newest, all[4] the oldest.
    let (unread, _) = page(&server, &owner, "?unread=true").await;
    assert_eq!(unread, all, "nothing is read yet");

    let (status, body) = mark_read(&server, &owner, &notification_id(&all[2])).await;
    assert_eq!(status, 204, "mark read answered {body}");
    assert_eq!(body, Value::Null, "204 has no body");
    let (unread, _) = page(&server, &owner, "?unread=true").await;
    assert_eq!(
        card_ids(&unread),
        [cards[4].clone(), cards[3].clone()],
        "only those above the marker"
    );
    let (everything, _) = page(&server, &owner, "").await;
    assert_eq!(everything, all, "the full list still has everything");
    let (explicit, _) = page(&server, &owner, "?unread=false").await;
    assert_eq!(explicit, all);

    // A lower id afterwards changes nothing.
    let (status, body) = mark_read(&server, &owner, &notification_id(&all[4])).await;
    assert_eq!(status, 204, "{body}");
    let (unread, _) = page(&server, &owner, "?unread=true").await;
    assert_eq!(
        card_ids(&unread),
        [cards[4].clone(), cards[3].clone()],
        "the marker does not move back"
    );
    // The same id again changes nothing either.
    let (status, _) = mark_read(&server, &owner, &notification_id(&all[2])).await;
    assert_eq!(status, 204);
    let (unread, _) = page(&server, &owner, "?unread=true").await;
    assert_eq!(unread.len(), 2);

    // Up to the newest: nothing unread; a new one is unread again.
    let (status, _) = mark_read(&server, &owner, &notification_id(&all[0])).await;
    assert_eq!(status, 204);
    let (unread, cursor) = page(&server, &owner, "?unread=true").await;
    assert!(unread.is_empty(), "all read: {unread:?}");
    assert_eq!(cursor, None);
    let later = interest_notifications(&server, &owner, &fan, 1).await;
    let (unread, _) = page(&server, &owner, "?unread=true").await;
    assert_eq!(card_ids(&unread), later, "a newer notification is unread");

    // Each user has their own marker.
    let fan_owner_card = interest_notifications(&server, &fan, &owner, 1).await;
    let (fan_unread, _) = page(&server, &fan, "?unread=true").await;
    assert_eq!(card_ids(&fan_unread), fan_owner_card);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_up_to_id_is_400_and_changes_nothing() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("b_owner").await;
    let (fan, _) = server.register("b_fan").await;
    interest_notifications(&server, &owner, &fan, 2).await;
    for bad in ["abc", "0", "-5", "", "1.5"] {
        let (status, body) = mark_read(&server, &owner, bad).await;
        assert_bad_field(status, &body, "up_to_id");
    }
    let (status, body) = server
        .post("/api/v1/notifications/read", Some(&owner), json!({}))
        .await;
    assert_error_naming(status, &body, 400, "bad_request", "up_to_id");
    let (status, body) = server
        .post(
            "/api/v1/notifications/read",
            Some(&owner),
            json!({"up_to_id": null}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = server
        .post("/api/v1/notifications/read", None, json!({"up_to_id": "1"}))
        .await;
    assert_error(status, &body, 401, "unauthenticated");
    let (unread, _) = page(&server, &owner, "?unread=true").await;
    assert_eq!(unread.len(), 2, "nothing was marked read: {unread:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_marker_past_the_newest_notification_does_not_swallow_later_ones() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("p_owner").await;
    let (fan, _) = server.register("p_fan").await;
    interest_notifications(&server, &owner, &fan, 1).await;
    let (all, _) = page(&server, &owner, "").await;
    let newest: i64 = notification_id(&all[0]).parse().expect("numeric id");
    // An id that is not (yet) one of the caller's notifications: either it
    // is refused, or marking read cannot reach notifications that arrive
    // after it.
    let beyond = (newest + 1_000).to_string();
    let (status, body) = mark_read(&server, &owner, &beyond).await;
    if status == 400 {
        assert_bad_field(status, &body, "up_to_id");
    } else {
        assert_eq!(status, 204, "mark read answered {body}");
    }
    let (unread, _) = page(&server, &owner, "?unread=true").await;
    if status == 204 {
        assert!(unread.is_empty(), "everything is read: {unread:?}");
    } else {
        assert_eq!(unread.len(), 1, "a refused mark changed nothing");
    }
    let later = interest_notifications(&server, &owner, &fan, 1).await;
    let (unread, _) = page(&server, &owner, "?unread=true").await;
    assert!(
        card_ids(&unread).contains(&later[0]),
        "a notification that arrives after the mark is unread: {unread:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn notifications_page_with_a_cursor() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("pg_owner").await;
    let (fan, _) = server.register("pg_fan").await;
    let cards = interest_notifications(&server, &owner, &fan, 5).await;
    let newest_first: Vec<String> = cards.iter().rev().cloned().collect();

    let (first, cursor) = page(&server, &owner, "?limit=2").await;
    assert_eq!(card_ids(&first), newest_first[0..2]);
    let cursor = cursor.expect("a second page");
    // A notification arriving meanwhile does not shift the pages.
    interest_notifications(&server, &owner, &fan, 1).await;
    let (second, cursor) = page(&server, &owner, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(card_ids(&second), newest_first[2..4]);
    let cursor = cursor.expect("a third page");
    let (third, cursor) = page(&server, &owner, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(card_ids(&third), newest_first[4..5]);
    assert_eq!(cursor, None, "the last page has no cursor");

    // Paging the unread ones respects the marker.
    // Read up to the newest of the second page: the late one and the two
    // newest of the first page are still unread.
    let (status, _) = mark_read(&server, &owner, &notification_id(&second[0])).await;
    assert_eq!(status, 204);
    let (unread1, cursor) = page(&server, &owner, "?unread=true&limit=2").await;
    assert_eq!(unread1.len(), 2);
    let cursor = cursor.expect("one more unread");
    let (unread2, cursor) = page(
        &server,
        &owner,
        &format!("?unread=true&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(card_ids(&unread2), newest_first[1..2]);
    assert_eq!(cursor, None);

    for bad in ["?limit=0", "?limit=101", "?cursor=!!", "?unread=maybe"] {
        let (status, body) = server
            .get(&format!("/api/v1/notifications{bad}"), Some(&owner))
            .await;
        assert_error(status, &body, 400, "bad_request");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn patch_me_updates_the_profile_and_returns_it_whole() {
    let server = TestServer::start().await;
    let (token, id) = server.register("profiled").await;
    let (status, profile) = patch_me(
        &server,
        &token,
        json!({"display_name": "Pro Filed", "bio": "I write Rust.", "tags": ["rust", "db"]}),
    )
    .await;
    assert_eq!(status, 200, "PATCH /me answered {profile}");
    assert_eq!(
        keys(&profile),
        [
            "bio",
            "created_at",
            "display_name",
            "handle",
            "id",
            "role",
            "tags"
        ],
        "profile fields in {profile}"
    );
    assert_eq!(profile["id"], id.as_str());
    assert_eq!(profile["handle"], "profiled");
    assert_eq!(profile["display_name"], "Pro Filed");
    assert_eq!(profile["bio"], "I write Rust.");
    assert_eq!(profile["tags"], json!(["rust", "db"]));
    assert_eq!(profile["role"], "member");
    parse_time(&profile["created_at"]);
    let (status, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(me, profile, "GET /me shows the change");

    // Absent fields are kept.
    let (status, partial) = patch_me(&server, &token, json!({"bio": "Now Go too."})).await;
    assert_eq!(status, 200, "{partial}");
    assert_eq!(partial["bio"], "Now Go too.");
    assert_eq!(partial["display_name"], "Pro Filed");
    assert_eq!(partial["tags"], json!(["rust", "db"]));
    let (status, cleared) = patch_me(&server, &token, json!({"bio": "", "tags": []})).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["bio"], "");
    assert_eq!(cleared["tags"], json!([]));
    assert_eq!(cleared["display_name"], "Pro Filed");

    // The limits themselves are allowed.
    let ten: Vec<String> = (0..10).map(|i| format!("tag{i}")).collect();
    let (status, full) = patch_me(
        &server,
        &token,
        json!({"display_name": "d".repeat(50), "bio": "b".repeat(500), "tags": ten}),
    )
    .await;
    assert_eq!(status, 200, "50/500/10 are within bounds: {full}");
    assert_eq!(full["tags"].as_array().map(Vec::len), Some(10));

    // Others see the public profile.
    let (other, _) = server.register("onlooker").await;
    let (status, seen) = server
        .get(&format!("/api/v1/users/{id}"), Some(&other))
        .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["id"], id.as_str());
    assert_eq!(seen["handle"], "profiled");
    assert_eq!(seen["display_name"], full["display_name"]);
    assert_eq!(seen["bio"], full["bio"]);
    assert_eq!(seen["tags"], full["tags"]);

    let (status, body) = server
        .call(Method::PATCH, "/api/v1/me", None, Some(json!({"bio": "x"})))
        .await;
    assert_error(status, &body, 401, "unauthenticated");
    server.shutdown().await;
}

#[tokio::test]
async fn patch_me_validation_names_the_field_and_changes_nothing() {
    let server = TestServer::start().await;
    let (token, _) = server.register("strict").await;
    let (status, original) = patch_me(
        &server,
        &token,
        json!({"display_name": "Strict", "bio": "kept", "tags": ["kept"]}),
    )
    .await;
    assert_eq!(status, 200, "{original}");
    let eleven: Vec<String> = (0..11).map(|i| format!("tag{i}")).collect();
    let cases = [
        (json!({"bio": "b".repeat(501)}), "bio"),
        (json!({"tags": eleven}), "tags"),
        (json!({"tags": ["x".repeat(31)]}), "tags"),
        (json!({"tags": [""]}), "tags"),
        (json!({"display_name": ""}), "display_name"),
        (json!({"display_name": "   "}), "display_name"),
        (json!({"display_name": "d".repeat(51)}), "display_name"),
        // A valid field beside a bad one is not applied either.
        (
            json!({"display_name": "Changed", "bio": "b".repeat(501)}),
            "bio",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = patch_me(&server, &token, body).await;
        assert_bad_field(status, &answer, field);
    }
    let (_, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me, original, "refused edits changed nothing");
    server.shutdown().await;
}

#[tokio::test]
async fn users_are_found_by_id_and_unknown_ones_are_404() {
    let server = TestServer::start().await;
    let (token, id) = server.register("findable").await;
    let (other, other_id) = server.register("finder").await;
    let (status, user) = server
        .get(&format!("/api/v1/users/{id}"), Some(&other))
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["id"], id.as_str());
    assert_eq!(user["handle"], "findable");
    assert_eq!(user["display_name"], "findable");
    assert_eq!(user["bio"], "");
    assert_eq!(user["tags"], json!([]));
    parse_time(&user["created_at"]);
    let (status, me) = server
        .get(&format!("/api/v1/users/{other_id}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["handle"], "finder");

    let unknown = id.parse::<i64>().expect("numeric id") + 1_000;
    for bad in [unknown.to_string(), "abc".into(), "0".into()] {
        let (status, body) = server
            .get(&format!("/api/v1/users/{bad}"), Some(&token))
            .await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = server.get(&format!("/api/v1/users/{id}"), None).await;
    assert_error(status, &body, 401, "unauthenticated");
    server.shutdown().await;
}
