//! Accounts people manage themselves (SAFETY-v1, "Accounts"): changing the
//! password, seeing and ending sessions, taking their data out and
//! deleting the account, on one node (SQLite) and across two (Postgres and
//! Redis), plus an erasure that fails midway on Postgres and leaves
//! nothing half-deleted.

use std::time::Duration;

use crate::common::api::PASSWORD;
use crate::common::chat::{create_room, join, say};
use crate::common::json::{assert_error, text_of};
use crate::common::place::{Place, RoomKnobs};
use crate::common::platform::{
    create_match, join_community, match_pair, new_card, new_community, new_event, press_interest,
    rsvp,
};
use crate::common::{Api, Ended, TestServer, WsClient};
use crate::room_contract;
use serde_json::{json, Value};

const CLOSES_WITHIN: Duration = Duration::from_secs(20);
const NEW_PASSWORD: &str = "a much better one";

fn lunch(capacity: u32) -> Value {
    json!({"title": "Lunch", "starts_at": "2099-03-01T12:00:00Z", "venue": "Canteen",
           "capacity": capacity})
}

/// The caller's live sessions.
async fn sessions(place: &Place, token: &str) -> Vec<Value> {
    place.api().page("/api/v1/me/sessions", token).await.0
}

/// A session that ended: its socket closed with 4010, its token opens
/// nothing.
async fn assert_ended(api: &Api, socket: &mut WsClient, token: &str) {
    assert_eq!(socket.closed_with(CLOSES_WITHIN).await, Ended::Closed(4010));
    let (status, _) = api.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, 401, "an ended session opens nothing");
}

async fn sessions_end_one_by_one_or_all_but_this_one(place: Place) {
    let api = place.api();
    let (first, ann_id) = api.register("ann").await;
    let (second, _) = api.sign_in("ann").await;
    let (third, _) = api.sign_in("ann").await;
    let mut on_third = place.socket(&third).await;
    let mut on_second = place.socket(&second).await;

    let listed = sessions(&place, &first).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "one is the caller's: {listed:?}");
    for session in &listed {
        assert!(session["created_at"].is_string() && session["expires_at"].is_string());
    }
    // Newest first: the third sign-in is listed first.
    let third_id = text_of(&listed[0]["id"]);
    let (status, body) = api
        .delete(&format!("/api/v1/me/sessions/{third_id}"), &first)
        .await;
    assert_eq!(status, 204, "{body}");
    assert_ended(api, &mut on_third, &third).await;
    let (status, body) = api
        .delete(&format!("/api/v1/me/sessions/{third_id}"), &first)
        .await;
    assert_error(status, &body, 404, "not_found");
    // Nobody ends someone else's session.
    let (ben, _) = api.register("ben").await;
    let (status, body) = api
        .delete(
            &format!("/api/v1/me/sessions/{}", text_of(&listed[1]["id"])),
            &ben,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = api.delete("/api/v1/me/sessions/nonsense", &ben).await;
    assert_error(status, &body, 404, "not_found");

    let (status, body) = api.delete("/api/v1/me/sessions", &first).await;
    assert_eq!(status, 204, "{body}");
    assert_ended(api, &mut on_second, &second).await;
    let listed = sessions(&place, &first).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["current"], true);
    let (status, body) = api.get("/api/v1/me", Some(&first)).await;
    assert_eq!((status, body["id"].clone()), (200, json!(ann_id)));
    let (status, _) = api.get("/api/v1/me/sessions", None).await;
    assert_eq!(status, 401);
    let (status, body) = api.get("/api/v1/me/sessions?limit=0", Some(&first)).await;
    assert_error(status, &body, 400, "bad_request");
    place.shutdown().await;
}

async fn a_new_password_ends_every_other_session(place: Place) {
    let api = place.api();
    let (mut here, current, _) = place.person("ann").await;
    let (other, _) = api.sign_in("ann").await;
    let mut elsewhere = place.socket(&other).await;
    let change = |current_password: &str, new_password: &str| json!({"current_password": current_password, "new_password": new_password});

    let (status, body) = api
        .post(
            "/api/v1/auth/password",
            Some(&current),
            change("not it at all", NEW_PASSWORD),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = api
        .post(
            "/api/v1/auth/password",
            Some(&current),
            change(PASSWORD, "short"),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = api
        .post(
            "/api/v1/auth/password",
            Some(&current),
            json!({"current_password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, _) = api
        .post(
            "/api/v1/auth/password",
            None,
            change(PASSWORD, NEW_PASSWORD),
        )
        .await;
    assert_eq!(status, 401);
    // Refusals changed nothing: both sessions still work.
    let (status, _) = api.get("/api/v1/me", Some(&other)).await;
    assert_eq!(status, 200);

    let (status, body) = api
        .post(
            "/api/v1/auth/password",
            Some(&current),
            change(PASSWORD, NEW_PASSWORD),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_ended(api, &mut elsewhere, &other).await;
    here.ok(json!({"type": "ping"})).await;
    let (status, _) = api.login_with("ann", PASSWORD).await;
    assert_eq!(status, 401, "the old password is gone");
    let (status, body) = api.login_with("ann", NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    place.shutdown().await;
}

async fn the_export_holds_every_kind_of_data_kept(place: Place) {
    let api = place.api();
    let (mut ann, ann_token, ann_id) = place.person("ann").await;
    let (ben_token, ben_id) = api.register("ben").await;
    let (eve_token, eve_id) = api.register("eve").await;

    let ann_card = text_of(&new_card(api, &ann_token, "rust", "talk rust", &["rust"]).await["id"]);
    let ben_card = text_of(&new_card(api, &ben_token, "go", "talk go", &[]).await["id"]);
    press_interest(api, &ben_card, &ann_token).await;
    press_interest(api, &ann_card, &ben_token).await;
    let matched = create_match(api, &ann_card, &ann_token, &ben_id).await;
    let conversation = text_of(&matched["conversation_id"]);
    ann.ok(json!({"type": "dm.send", "conversation_id": conversation, "text": "hello ben"}))
        .await;
    let hosted = text_of(&new_event(api, &ann_token, lunch(4)).await["id"]);
    let bens_event = text_of(&new_event(api, &ben_token, lunch(4)).await["id"]);
    rsvp(api, &bens_event, &ann_token).await;
    let owned = new_community(api, &ann_token, json!({"name": "rustaceans"})).await;
    let bens = new_community(api, &ben_token, json!({"name": "gophers"})).await;
    join_community(api, &text_of(&bens["id"]), &ann_token).await;
    let (status, _) = api
        .post(
            &format!("/api/v1/users/{eve_id}/block"),
            Some(&ann_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = api
        .post(
            "/api/v1/reports",
            Some(&ann_token),
            json!({"kind": "card", "target_id": ben_card, "reason": "off topic"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    drop(eve_token);

    let (status, export) = api.get("/api/v1/me/export", Some(&ann_token)).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["profile"]["id"], ann_id.parse::<i64>().unwrap());
    assert_eq!(export["profile"]["handle"], "ann");
    assert_eq!(export["profile"]["has_password"], true);
    for kind in [
        "sessions",
        "cards",
        "interests",
        "interests_received",
        "matches",
        "conversations",
        "rsvps",
        "hosted_events",
        "memberships",
        "owned_communities",
        "blocks",
        "notifications",
        "reports",
    ] {
        let rows = export[kind]
            .as_array()
            .unwrap_or_else(|| panic!("{kind} is a list: {export}"));
        assert!(!rows.is_empty(), "{kind} holds what ann has: {export}");
    }
    assert_eq!(export["cards"][0]["title"], "rust");
    assert_eq!(
        export["hosted_events"][0]["id"],
        hosted.parse::<i64>().unwrap()
    );
    assert_eq!(
        export["owned_communities"][0]["id"],
        owned["id"].as_str().unwrap().parse::<i64>().unwrap()
    );
    let messages = &export["conversations"][0]["messages"];
    assert_eq!(messages[0]["text"], "hello ben", "{export}");
    assert!(
        !export.to_string().contains("token_hash") && !export.to_string().contains("$argon2"),
        "no secret is exported"
    );
    let (status, _) = api.get("/api/v1/me/export", None).await;
    assert_eq!(status, 401);
    place.shutdown().await;
}

async fn a_deleted_account_is_erased_and_its_words_stay_deleted(place: Place) {
    let api = place.api();
    let (mut ann, ann_token, ann_id) = place.person("ann").await;
    let (mut ben, ben_token, ben_id) = place.person("ben").await;
    let (cat_token, cat_id) = api.register("cat").await;
    let (dan_token, dan_id) = api.register("dan").await;
    let conversation = match_pair(api, &ann_token, api, &ben_token, &ben_id).await;
    ann.ok(json!({"type": "dm.send", "conversation_id": conversation, "text": "from ann"}))
        .await;
    ben.ok(json!({"type": "dm.send", "conversation_id": conversation, "text": "from ben"}))
        .await;
    let card = text_of(&new_card(api, &ann_token, "mine", "", &[]).await["id"]);
    let room_id = create_room(&mut ben, "open table").await;
    join(&mut ann, &room_id).await;
    let (in_room, _) = say(&mut ann, &room_id, "ann in the room").await;
    // Ann holds the one seat of ben's lunch; cat waits for it.
    let event = text_of(&new_event(api, &ben_token, lunch(1)).await["id"]);
    rsvp(api, &event, &ann_token).await;
    rsvp(api, &event, &cat_token).await;
    rsvp(api, &event, &dan_token).await;
    let community = text_of(&new_community(api, &ben_token, json!({"name": "cooks"})).await["id"]);
    join_community(api, &community, &ann_token).await;

    let (status, body) = api.delete("/api/v1/me", &ann_token).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = api
        .call(
            reqwest::Method::DELETE,
            "/api/v1/me",
            Some(&ann_token),
            Some(json!("my password")),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = api
        .call(
            reqwest::Method::DELETE,
            "/api/v1/me",
            Some(&ann_token),
            Some(json!({"password": "not it at all"})),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = api
        .call(
            reqwest::Method::DELETE,
            "/api/v1/me",
            Some(&ann_token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 204, "{body}");

    assert_eq!(ann.closed_with(CLOSES_WITHIN).await, Ended::Closed(4010));
    let closed = ben.next_of("conversation.closed").await;
    assert_eq!(
        closed,
        json!({"type": "conversation.closed", "conversation_id": conversation, "reason": "account_deleted"})
    );
    // Ben still reads what was said; ann's words are deleted, from nobody.
    let history = ben
        .ok(json!({"type": "dm.history", "conversation_id": conversation}))
        .await;
    let messages = history["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[0]["deleted"], true, "{history}");
    assert_eq!(messages[0]["text"], "", "{history}");
    assert_eq!(
        messages[0]["from"],
        json!({"id": ann_id, "handle": "deleted", "display_name": "Deleted user"})
    );
    assert_eq!(messages[1]["text"], "from ben", "{history}");
    ben.err(
        json!({"type": "dm.send", "conversation_id": conversation, "text": "ann?"}),
        "forbidden",
    )
    .await;

    // Her words in the room are deleted too, before everyone's eyes.
    let deleted = ben
        .next_matching(|f| {
            f["type"] == "room.message_deleted" && f["message_id"] == in_room.as_str()
        })
        .await;
    assert_eq!(deleted["deleted_by"], ann_id.as_str(), "{deleted}");
    let joined = join(&mut ben, &room_id).await;
    let message = joined["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["message_id"] == in_room.as_str())
        .unwrap_or_else(|| panic!("{joined}"))
        .clone();
    assert_eq!(message["deleted"], true, "{message}");
    assert_eq!(message["text"], "", "{message}");
    assert_eq!(message["from"]["handle"], "deleted", "{message}");

    // Cat moved into the freed seat and was told.
    let (items, _) = api.page("/api/v1/notifications", &cat_token).await;
    assert!(
        items.iter().any(|n| n["kind"] == "waitlist_promoted"),
        "{items:?}"
    );
    let (status, body) = api
        .get(&format!("/api/v1/events/{event}"), Some(&cat_token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["going_count"], 1, "{body}");
    assert_eq!(body["waitlist_count"], 1, "{body}");
    // In waitlist order: cat, first in line, took the seat; dan is next.
    let attendees = |status: &str| format!("/api/v1/events/{event}/attendees?status={status}");
    let (going, _) = api.page(&attendees("going"), &ben_token).await;
    let going: Vec<&Value> = going.iter().map(|a| &a["user"]["id"]).collect();
    assert_eq!(going, [&json!(cat_id)]);
    let (waiting, _) = api.page(&attendees("waitlisted"), &ben_token).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0]["user"]["id"], dan_id.as_str());
    assert_eq!(waiting[0]["position"], 1);

    // Nothing of ann is left to use, and her handle is never given out.
    let (status, _) = api.get("/api/v1/me", Some(&ann_token)).await;
    assert_eq!(status, 401);
    let (status, _) = api.login_with("ann", PASSWORD).await;
    assert_eq!(status, 401);
    let (status, body) = api.register_with("ann", PASSWORD).await;
    assert_error(status, &body, 409, "conflict");
    let (status, profile) = api
        .get(&format!("/api/v1/users/{ann_id}"), Some(&ben_token))
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["handle"], "deleted");
    assert_eq!(profile["display_name"], "Deleted user");
    assert_eq!(profile["bio"], "");
    let (status, _) = api
        .get(&format!("/api/v1/cards/{card}"), Some(&ben_token))
        .await;
    assert_eq!(status, 404, "her cards are gone");
    let (items, _) = api.page("/api/v1/matches", &ben_token).await;
    assert!(items.is_empty(), "the match is gone: {items:?}");
    place.shutdown().await;
}

room_contract! {
    sessions_end_one_by_one_or_all_but_this_one: RoomKnobs::default(),
    a_new_password_ends_every_other_session: RoomKnobs::default(),
    the_export_holds_every_kind_of_data_kept: RoomKnobs::default(),
    a_deleted_account_is_erased_and_its_words_stay_deleted: RoomKnobs::default(),
}

/// A failure inside the erasure (a trigger refusing the last deletes)
/// rolls all of it back: the account works as before, then deleting it
/// again once the failure is gone succeeds.
#[tokio::test]
async fn an_erasure_that_fails_midway_leaves_the_account_whole_on_postgres() {
    use sqlx::{Connection, Executor};
    let server = TestServer::start_on_postgres(|_| {}).await;
    let (token, _) = server.register("ann").await;
    let card = text_of(&new_card(&server, &token, "mine", "", &[]).await["id"]);
    let mut db = sqlx::PgConnection::connect(&server.config.database_url)
        .await
        .expect("connect to the test's database");
    db.execute(
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ \
         BEGIN RAISE EXCEPTION 'refused for the test'; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_session_ends BEFORE UPDATE ON sessions \
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await
    .expect("install the failing trigger");

    let body = json!({"password": PASSWORD});
    let (status, answer) = server
        .call(
            reqwest::Method::DELETE,
            "/api/v1/me",
            Some(&token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 500, "{answer}");
    let (status, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "the session still works: {me}");
    assert_eq!(me["handle"], "ann", "the profile is whole: {me}");
    let (status, _) = server
        .get(&format!("/api/v1/cards/{card}"), Some(&token))
        .await;
    assert_eq!(status, 200, "the card is still there");
    let (retired,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM retired_handles")
        .fetch_one(&mut db)
        .await
        .expect("count retired handles");
    assert_eq!(retired, 0, "no handle was retired");

    db.execute("DROP TRIGGER refuse_session_ends ON sessions")
        .await
        .expect("remove the trigger");
    let (status, answer) = server
        .call(
            reqwest::Method::DELETE,
            "/api/v1/me",
            Some(&token),
            Some(body),
        )
        .await;
    assert_eq!(status, 204, "{answer}");
    let (status, _) = server
        .get(&format!("/api/v1/cards/{card}"), Some(&token))
        .await;
    assert_eq!(status, 401, "the session ended with the account");
    server.shutdown().await;
}
