//! Events over REST against the real server: creating, listing, editing
//! and cancelling events, RSVPs with a FIFO waitlist, the notifications
//! attendees get, and RSVP races on SQLite and on Postgres.
//!
//! The Postgres race needs the shared server (see `crate::common::postgres`) and
//! fails, saying how to start it, when it is down.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::common::json::{assert_bad_field, assert_error_naming, ids, keys};
use crate::common::platform::{leave_event, new_event, rsvp};
use crate::common::{TestServer, WsClient};
use futures_util::future::join_all;
use serde_json::{json, Value};

/// How long a test waits to be sure that a frame does not come.
const QUIET: Duration = Duration::from_millis(300);

/// Far enough ahead that the default `from` (now) always includes it.
const START: &str = "2099-03-01T18:00:00Z";

/// `GET /events` with these query pairs.
async fn list(server: &TestServer, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
    server.get_query("/api/v1/events", token, query).await
}

/// A valid creation body; tests change what they need.
fn valid_event() -> Value {
    json!({
        "title": "Ramen night",
        "description": "Tonkotsu and talk about compilers",
        "starts_at": START,
        "ends_at": "2099-03-01T21:00:00Z",
        "venue": "Ichiran, Shibuya",
        "capacity": 8,
        "tags": ["ramen", "rust"],
    })
}

/// Creates an event with this title, start and capacity.
async fn create_at(
    server: &TestServer,
    token: &str,
    title: &str,
    starts_at: &str,
    capacity: u32,
) -> String {
    let mut body = valid_event();
    body["title"] = json!(title);
    body["starts_at"] = json!(starts_at);
    body["capacity"] = json!(capacity);
    body.as_object_mut().expect("object").remove("ends_at");
    let event = new_event(server, token, body).await;
    event["id"].as_str().expect("id").to_owned()
}

async fn event(server: &TestServer, event_id: &str, token: &str) -> Value {
    let (status, body) = server
        .get(&format!("/api/v1/events/{event_id}"), Some(token))
        .await;
    assert_eq!(status, 200, "get answered {body}");
    body
}

/// The next notification pushed to `client`; asserts its kind and data.
async fn expect_notification(client: &mut WsClient, kind: &str, event_id: &str, title: &str) {
    let frame = client.next_of("notification").await;
    let notification = &frame["notification"];
    assert_eq!(notification["kind"], kind, "frame {frame}");
    assert_eq!(
        notification["data"],
        json!({"event_id": event_id, "title": title}),
        "frame {frame}"
    );
}

/// The kinds of the stored notifications of `token`'s user, newest first.
async fn notification_kinds(server: &TestServer, token: &str) -> Vec<String> {
    let (status, page) = server.get("/api/v1/notifications", Some(token)).await;
    assert_eq!(status, 200, "notifications answered {page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["kind"].as_str().expect("kind").to_owned())
        .collect()
}

/// The ids of a page's items.
fn page_ids(page: &Value) -> Vec<String> {
    ids(page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {page}")))
}

#[tokio::test]
async fn create_answers_201_with_the_full_event() {
    let server = TestServer::start().await;
    let (token, host_id) = server.register("host_ann").await;
    let mut body = valid_event();
    // Offsets are accepted and shown in UTC.
    body["starts_at"] = json!("2099-03-02T03:00:00+09:00");
    body["ends_at"] = json!("2099-03-01T21:30:00.5Z");
    body["online_url"] = json!("https://meet.example/ramen");
    body["tags"] = json!([" ramen ", "rust", "ramen"]);
    let event = new_event(&server, &token, body).await;

    assert_eq!(
        keys(&event),
        [
            "capacity",
            "created_at",
            "description",
            "ends_at",
            "going_count",
            "host",
            "host_id",
            "id",
            "online_url",
            "room_id",
            "starts_at",
            "status",
            "tags",
            "title",
            "updated_at",
            "venue",
            "waitlist_count",
        ],
        "event {event}"
    );
    let id = event["id"].as_str().expect("id is a string");
    assert!(id.parse::<i64>().is_ok_and(|n| n > 0), "id {id}");
    assert_eq!(event["host_id"], host_id.as_str());
    assert_eq!(
        event["host"],
        json!({"id": host_id, "handle": "host_ann", "display_name": "host_ann"})
    );
    assert_eq!(event["title"], "Ramen night");
    assert_eq!(event["description"], "Tonkotsu and talk about compilers");
    assert_eq!(event["starts_at"], "2099-03-01T18:00:00Z");
    assert_eq!(event["ends_at"], "2099-03-01T21:30:00.5Z");
    assert_eq!(event["venue"], "Ichiran, Shibuya");
    assert_eq!(event["online_url"], "https://meet.example/ramen");
    assert_eq!(event["capacity"], 8);
    assert_eq!(event["tags"], json!(["ramen", "rust"]));
    assert_eq!(event["status"], "scheduled");
    assert_eq!(event["going_count"], 0);
    assert_eq!(event["waitlist_count"], 0);
    assert_eq!(event["room_id"], format!("event:{id}"));
    assert_eq!(event["created_at"], event["updated_at"]);

    // Online only, no end, no tags, no description: still an event.
    let online = new_event(
        &server,
        &token,
        json!({"title": "Remote lunch", "starts_at": START,
               "online_url": "http://call.example", "capacity": 1}),
    )
    .await;
    assert_eq!(online["venue"], Value::Null);
    assert_eq!(online["ends_at"], Value::Null);
    assert_eq!(online["description"], "");
    assert_eq!(online["tags"], json!([]));

    let (status, body) = server.post("/api/v1/events", None, valid_event()).await;
    assert_error_naming(status, &body, 401, "unauthenticated", "token");
}

#[tokio::test]
async fn create_refuses_bad_input_naming_the_field_and_stores_nothing() {
    let server = TestServer::start().await;
    let (token, _) = server.register("host_bea").await;
    let long_url = format!("https://meet.example/{}", "a".repeat(500));
    let cases: Vec<(&str, Value)> = vec![
        ("title", json!({"title": ""})),
        ("title", json!({"title": "   "})),
        ("title", json!({"title": "t".repeat(81)})),
        ("title", json!({"title": null})),
        ("description", json!({"description": "d".repeat(2001)})),
        ("starts_at", json!({"starts_at": "next friday"})),
        ("starts_at", json!({"starts_at": "2099-03-01"})),
        ("starts_at", json!({"starts_at": null})),
        ("ends_at", json!({"ends_at": "2099-03-01T17:00:00Z"})),
        ("ends_at", json!({"ends_at": START})),
        ("ends_at", json!({"ends_at": "late"})),
        ("venue", json!({"venue": "v".repeat(201)})),
        ("venue", json!({"venue": null})),
        ("venue", json!({"venue": "  "})),
        ("online_url", json!({"online_url": "ftp://files.example"})),
        ("online_url", json!({"online_url": "javascript:alert(1)"})),
        ("online_url", json!({"online_url": long_url})),
        ("capacity", json!({"capacity": 0})),
        ("capacity", json!({"capacity": 501})),
        ("capacity", json!({"capacity": "ten"})),
        ("capacity", json!({"capacity": null})),
        ("tags", json!({"tags": ["a", "b", "c", "d", "e", "f"]})),
        ("tags", json!({"tags": ["x".repeat(31)]})),
        ("tags", json!({"tags": [""]})),
    ];
    for (field, change) in cases {
        let mut body = valid_event();
        for (key, value) in change.as_object().expect("object") {
            if value.is_null() {
                body.as_object_mut().expect("object").remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        let (status, answer) = server.post("/api/v1/events", Some(&token), body).await;
        assert_error_naming(status, &answer, 400, "bad_request", field);
    }
    // A venue of the right size passes once the limit is respected.
    let mut body = valid_event();
    body["venue"] = json!("v".repeat(200));
    new_event(&server, &token, body).await;

    let (status, page) = list(&server, &token, &[("from", "1970-01-01T00:00:00Z")]).await;
    assert_eq!(status, 200, "list answered {page}");
    assert_eq!(
        page_ids(&page).len(),
        1,
        "only the valid event exists: {page}"
    );
}

#[tokio::test]
async fn get_shows_the_callers_rsvp_and_unknown_ids_are_404() {
    let server = TestServer::start().await;
    let (host, _) = server.register("host_cai").await;
    let (guest, _) = server.register("guest_dan").await;
    let (late, _) = server.register("guest_eve").await;
    let id = create_at(&server, &host, "Dumplings", START, 1).await;

    let seen = event(&server, &id, &host).await;
    assert_eq!(seen["my_rsvp"], Value::Null, "the host has no RSVP");
    assert_eq!(seen["title"], "Dumplings");
    assert_eq!(seen["room_id"], format!("event:{id}"));
    assert_eq!(event(&server, &id, &guest).await["my_rsvp"], Value::Null);

    assert_eq!(rsvp(&server, &id, &guest).await, json!({"status": "going"}));
    assert_eq!(
        rsvp(&server, &id, &late).await,
        json!({"status": "waitlisted", "waitlist_position": 1})
    );
    assert_eq!(event(&server, &id, &guest).await["my_rsvp"], "going");
    let seen = event(&server, &id, &late).await;
    assert_eq!(seen["my_rsvp"], "waitlisted");
    assert_eq!(seen["going_count"], 1);
    assert_eq!(seen["waitlist_count"], 1);

    for missing in ["999999", "0", "abc", "-3"] {
        let (status, body) = server
            .get(&format!("/api/v1/events/{missing}"), Some(&guest))
            .await;
        assert_error_naming(status, &body, 404, "not_found", "event");
    }
    let (status, body) = server.get(&format!("/api/v1/events/{id}"), None).await;
    assert_error_naming(status, &body, 401, "unauthenticated", "token");
}

#[tokio::test]
async fn rsvp_is_idempotent_and_the_host_cannot_rsvp() {
    let server = TestServer::start().await;
    let (host, _) = server.register("host_fay").await;
    let (first, _) = server.register("guest_gus").await;
    let (second, _) = server.register("guest_hal").await;
    let id = create_at(&server, &host, "Curry", START, 1).await;
    let path = format!("/api/v1/events/{id}/rsvp");

    assert_eq!(rsvp(&server, &id, &first).await["status"], "going");
    assert_eq!(rsvp(&server, &id, &first).await, json!({"status": "going"}));
    assert_eq!(
        rsvp(&server, &id, &second).await,
        json!({"status": "waitlisted", "waitlist_position": 1})
    );
    assert_eq!(
        rsvp(&server, &id, &second).await,
        json!({"status": "waitlisted", "waitlist_position": 1})
    );
    let seen = event(&server, &id, &host).await;
    assert_eq!(
        (seen["going_count"].clone(), seen["waitlist_count"].clone()),
        (json!(1), json!(1)),
        "repeats changed nothing: {seen}"
    );

    let (status, body) = server.put(&path, &host).await;
    assert_error_naming(status, &body, 400, "bad_request", "host");
    let (status, body) = server.delete(&path, &host).await;
    assert_error_naming(status, &body, 400, "bad_request", "host");
    assert_eq!(event(&server, &id, &host).await["going_count"], 1);

    // Leaving from the waitlist frees no seat and promotes nobody.
    leave_event(&server, &id, &second).await;
    leave_event(&server, &id, &second).await;
    let seen = event(&server, &id, &host).await;
    assert_eq!(seen["going_count"], 1, "{seen}");
    assert_eq!(seen["waitlist_count"], 0, "{seen}");
    assert_eq!(event(&server, &id, &second).await["my_rsvp"], Value::Null);

    leave_event(&server, &id, &first).await;
    leave_event(&server, &id, &first).await;
    assert_eq!(event(&server, &id, &host).await["going_count"], 0);
    // Never RSVPed at all: still fine.
    let (never, _) = server.register("guest_ivy").await;
    leave_event(&server, &id, &never).await;

    for missing in ["424242", "nope"] {
        let path = format!("/api/v1/events/{missing}/rsvp");
        let (status, body) = server.put(&path, &first).await;
        assert_error_naming(status, &body, 404, "not_found", "event");
        let (status, body) = server.delete(&path, &first).await;
        assert_error_naming(status, &body, 404, "not_found", "event");
    }
}

#[tokio::test]
async fn leaving_promotes_the_first_waitlisted_user_live() {
    let server = TestServer::start().await;
    let (mut host_ws, host, _) = server.user("host_jo").await;
    let (mut a_ws, a, _) = server.user("guest_kai").await;
    let (mut b_ws, b, _) = server.user("guest_lee").await;
    let (mut c_ws, c, _) = server.user("guest_max").await;
    let (mut d_ws, d, _) = server.user("guest_ned").await;
    let id = create_at(&server, &host, "Okonomiyaki", START, 2).await;

    assert_eq!(rsvp(&server, &id, &a).await["status"], "going");
    assert_eq!(rsvp(&server, &id, &b).await["status"], "going");
    assert_eq!(rsvp(&server, &id, &c).await["waitlist_position"], 1);
    assert_eq!(rsvp(&server, &id, &d).await["waitlist_position"], 2);

    leave_event(&server, &id, &b).await;
    expect_notification(&mut c_ws, "waitlist_promoted", &id, "Okonomiyaki").await;
    for quiet in [&mut d_ws, &mut a_ws, &mut b_ws, &mut host_ws] {
        quiet.assert_no("notification", QUIET).await;
    }
    assert_eq!(event(&server, &id, &c).await["my_rsvp"], "going");
    assert_eq!(
        rsvp(&server, &id, &d).await,
        json!({"status": "waitlisted", "waitlist_position": 1})
    );
    let seen = event(&server, &id, &host).await;
    assert_eq!(seen["going_count"], 2, "{seen}");
    assert_eq!(seen["waitlist_count"], 1, "{seen}");

    // The promotion is kept for listing too.
    assert_eq!(notification_kinds(&server, &c).await, ["waitlist_promoted"]);

    // Someone who joins now queues behind d.
    let (e, _) = server.register("guest_oli").await;
    assert_eq!(rsvp(&server, &id, &e).await["waitlist_position"], 2);
    leave_event(&server, &id, &a).await;
    expect_notification(&mut d_ws, "waitlist_promoted", &id, "Okonomiyaki").await;
    assert_eq!(event(&server, &id, &d).await["my_rsvp"], "going");
    assert_eq!(
        rsvp(&server, &id, &e).await,
        json!({"status": "waitlisted", "waitlist_position": 1})
    );
    c_ws.assert_no("notification", QUIET).await;
}

#[tokio::test]
async fn update_is_host_only_checks_input_and_notifies_attendees() {
    let server = TestServer::start().await;
    let (mut host_ws, host, _) = server.user("host_pia").await;
    let (mut going_ws, going, _) = server.user("guest_quin").await;
    let (mut waiting_ws, waiting, _) = server.user("guest_rey").await;
    let (mut stranger_ws, stranger, _) = server.user("guest_sol").await;
    let mut body = valid_event();
    body["capacity"] = json!(1);
    let created = new_event(&server, &host, body).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/events/{id}");
    rsvp(&server, &id, &going).await;
    rsvp(&server, &id, &waiting).await;

    let (status, body) = server
        .patch(&path, &stranger, json!({"title": "Mine now"}))
        .await;
    assert_error_naming(status, &body, 403, "forbidden", "host");
    let (status, body) = server
        .patch(&path, &going, json!({"title": "Mine now"}))
        .await;
    assert_error_naming(status, &body, 403, "forbidden", "host");

    let bad: Vec<(&str, Value)> = vec![
        ("title", json!({"title": ""})),
        ("description", json!({"description": "d".repeat(2001)})),
        ("starts_at", json!({"starts_at": "soon"})),
        // Checked against the stored start.
        ("ends_at", json!({"ends_at": "2099-03-01T17:00:00Z"})),
        // Checked against the stored end.
        ("ends_at", json!({"starts_at": "2099-03-01T22:00:00Z"})),
        ("venue", json!({"venue": null})),
        ("venue", json!({"venue": "v".repeat(201)})),
        (
            "online_url",
            json!({"online_url": "mailto:host@example.com"}),
        ),
        ("capacity", json!({"capacity": 0})),
        ("capacity", json!({"capacity": 501})),
        ("tags", json!({"tags": ["1", "2", "3", "4", "5", "6"]})),
    ];
    for (field, change) in bad {
        let (status, body) = server.patch(&path, &host, change.clone()).await;
        assert_bad_field(status, &body, field);
    }
    let (status, body) = server
        .patch("/api/v1/events/987654", &host, json!({"title": "x"}))
        .await;
    assert_error_naming(status, &body, 404, "not_found", "event");
    let unchanged = event(&server, &id, &host).await;
    assert_eq!(unchanged["title"], "Ramen night");
    assert_eq!(unchanged["updated_at"], created["updated_at"]);
    for ws in [&mut going_ws, &mut waiting_ws] {
        ws.assert_no("notification", QUIET).await;
    }

    let (status, updated) = server
        .patch(
            &path,
            &host,
            json!({"title": "Tsukemen night", "ends_at": null, "venue": null,
               "online_url": "https://meet.example/tsukemen", "tags": ["noodles"]}),
        )
        .await;
    assert_eq!(status, 200, "patch answered {updated}");
    assert_eq!(updated["title"], "Tsukemen night");
    assert_eq!(updated["ends_at"], Value::Null);
    assert_eq!(updated["venue"], Value::Null);
    assert_eq!(updated["online_url"], "https://meet.example/tsukemen");
    assert_eq!(updated["tags"], json!(["noodles"]));
    assert_eq!(updated["description"], created["description"]);
    assert_eq!(updated["starts_at"], created["starts_at"]);
    assert_eq!(updated["capacity"], 1);
    assert_eq!(updated["going_count"], 1);
    assert_eq!(updated["waitlist_count"], 1);
    assert_ne!(updated["updated_at"], created["updated_at"]);
    assert_eq!(updated["created_at"], created["created_at"]);
    for ws in [&mut going_ws, &mut waiting_ws] {
        expect_notification(ws, "event_updated", &id, "Tsukemen night").await;
    }
    host_ws.assert_no("notification", QUIET).await;
    stranger_ws.assert_no("notification", QUIET).await;

    let (status, page) = list(&server, &host, &[("tag", "noodles")]).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page_ids(&page), [id.as_str()], "tags were replaced");
    let (_, page) = list(&server, &host, &[("tag", "ramen")]).await;
    assert!(page_ids(&page).is_empty(), "old tag gone: {page}");
}

#[tokio::test]
async fn capacity_cannot_drop_below_going_and_growth_promotes_in_order() {
    let server = TestServer::start().await;
    let (host, _) = server.register("host_tao").await;
    let (a, _) = server.register("guest_uma").await;
    let (b, _) = server.register("guest_vic").await;
    let (mut c_ws, c, _) = server.user("guest_wes").await;
    let (mut d_ws, d, _) = server.user("guest_xia").await;
    let (mut e_ws, e, _) = server.user("guest_yan").await;
    let id = create_at(&server, &host, "Hot pot", START, 2).await;
    let path = format!("/api/v1/events/{id}");
    for token in [&a, &b, &c, &d, &e] {
        rsvp(&server, &id, token).await;
    }

    let (status, body) = server.patch(&path, &host, json!({"capacity": 1})).await;
    assert_error_naming(status, &body, 409, "conflict", "capacity");
    assert_eq!(event(&server, &id, &host).await["capacity"], 2);

    let (status, updated) = server.patch(&path, &host, json!({"capacity": 4})).await;
    assert_eq!(status, 200, "patch answered {updated}");
    assert_eq!(updated["going_count"], 4);
    assert_eq!(updated["waitlist_count"], 1);
    for ws in [&mut c_ws, &mut d_ws] {
        expect_notification(ws, "waitlist_promoted", &id, "Hot pot").await;
        expect_notification(ws, "event_updated", &id, "Hot pot").await;
    }
    expect_notification(&mut e_ws, "event_updated", &id, "Hot pot").await;
    e_ws.assert_no("notification", QUIET).await;
    assert_eq!(event(&server, &id, &c).await["my_rsvp"], "going");
    assert_eq!(event(&server, &id, &d).await["my_rsvp"], "going");
    assert_eq!(
        rsvp(&server, &id, &e).await,
        json!({"status": "waitlisted", "waitlist_position": 1})
    );

    // Down to exactly the people going is allowed.
    let (status, updated) = server.patch(&path, &host, json!({"capacity": 4})).await;
    assert_eq!(status, 200, "{updated}");
}

#[tokio::test]
async fn cancel_is_host_only_keeps_rsvps_and_notifies_attendees() {
    let server = TestServer::start().await;
    let (mut host_ws, host, _) = server.user("host_zed").await;
    let (mut going_ws, going, _) = server.user("guest_abe").await;
    let (mut waiting_ws, waiting, _) = server.user("guest_bo").await;
    let (mut left_ws, left, _) = server.user("guest_cy").await;
    let (late, _) = server.register("guest_di").await;
    let id = create_at(&server, &host, "Sushi", START, 1).await;
    let path = format!("/api/v1/events/{id}");
    rsvp(&server, &id, &going).await;
    rsvp(&server, &id, &left).await;
    rsvp(&server, &id, &waiting).await;
    leave_event(&server, &id, &left).await;

    let (status, body) = server.delete(&path, &going).await;
    assert_error_naming(status, &body, 403, "forbidden", "host");
    assert_eq!(event(&server, &id, &host).await["status"], "scheduled");
    let (status, body) = server.delete("/api/v1/events/5555", &host).await;
    assert_error_naming(status, &body, 404, "not_found", "event");

    let (status, body) = server.delete(&path, &host).await;
    assert_eq!(status, 204, "cancel answered {body}");
    for ws in [&mut going_ws, &mut waiting_ws] {
        expect_notification(ws, "event_cancelled", &id, "Sushi").await;
    }
    left_ws.assert_no("notification", QUIET).await;
    host_ws.assert_no("notification", QUIET).await;

    let seen = event(&server, &id, &going).await;
    assert_eq!(seen["status"], "cancelled");
    assert_eq!(seen["going_count"], 1, "RSVPs are kept: {seen}");
    assert_eq!(seen["waitlist_count"], 1, "RSVPs are kept: {seen}");
    assert_eq!(seen["my_rsvp"], "going");

    let (status, page) = list(&server, &host, &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page_ids(&page).is_empty(),
        "cancelled events are not listed: {page}"
    );

    let rsvp_path = format!("{path}/rsvp");
    let (status, body) = server.put(&rsvp_path, &late).await;
    assert_error_naming(status, &body, 409, "conflict", "cancelled");
    let (status, body) = server.put(&rsvp_path, &going).await;
    assert_error_naming(status, &body, 409, "conflict", "cancelled");
    let (status, body) = server
        .patch(&path, &host, json!({"title": "Back on"}))
        .await;
    assert_error_naming(status, &body, 409, "conflict", "cancelled");

    // Cancelling again is fine and tells nobody twice.
    let (status, _) = server.delete(&path, &host).await;
    assert_eq!(status, 204);
    going_ws.assert_no("notification", QUIET).await;
    assert_eq!(
        notification_kinds(&server, &going).await,
        ["event_cancelled"]
    );

    // Leaving a cancelled event promotes nobody.
    leave_event(&server, &id, &going).await;
    waiting_ws.assert_no("notification", QUIET).await;
    assert_eq!(event(&server, &id, &waiting).await["my_rsvp"], "waitlisted");
}

#[tokio::test]
async fn list_pages_soonest_first_with_a_cursor_stable_under_inserts() {
    let server = TestServer::start().await;
    let (host, _) = server.register("host_ed").await;
    let (reader, _) = server.register("reader_flo").await;
    let a = create_at(&server, &host, "A", "2099-01-01T10:00:00Z", 5).await;
    let c = create_at(&server, &host, "C", "2099-01-03T10:00:00Z", 5).await;
    let b = create_at(&server, &host, "B", "2099-01-02T10:00:00Z", 5).await;
    let e = create_at(&server, &host, "E", "2099-01-05T10:00:00Z", 5).await;
    let d = create_at(&server, &host, "D", "2099-01-04T10:00:00Z", 5).await;
    // Same start as C: ties go by id, so after C.
    let c2 = create_at(&server, &host, "C2", "2099-01-03T10:00:00Z", 5).await;

    let (status, first) = list(&server, &reader, &[("limit", "2")]).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(page_ids(&first), [a.clone(), b.clone()]);
    let item = &first["items"][0];
    assert_eq!(item["title"], "A");
    assert_eq!(item["going_count"], 0);
    assert_eq!(item["waitlist_count"], 0);
    assert_eq!(item["room_id"], format!("event:{a}"));
    let cursor = first["next_cursor"].as_str().expect("a next cursor");

    // New events meanwhile: one before the cursor never shows up, one
    // after it shows up in its place.
    create_at(&server, &host, "Early", "2098-12-31T10:00:00Z", 5).await;
    let d2 = create_at(&server, &host, "D2", "2099-01-04T12:00:00Z", 5).await;

    let mut seen = page_ids(&first);
    let mut cursor = cursor.to_owned();
    let mut pages = 1;
    loop {
        let (status, page) = list(&server, &reader, &[("limit", "2"), ("cursor", &cursor)]).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(page_ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(seen, [a, b, c, c2, d, d2, e]);
    assert_eq!(pages, 4);

    for (key, value) in [
        ("limit", "0"),
        ("limit", "101"),
        ("cursor", "!!not-a-cursor"),
    ] {
        let (status, body) = list(&server, &reader, &[(key, value)]).await;
        assert_bad_field(status, &body, key);
    }
    let (status, body) = server.get("/api/v1/events", None).await;
    assert_error_naming(status, &body, 401, "unauthenticated", "token");
}

#[tokio::test]
async fn list_filters_by_from_and_tag_and_leaves_out_cancelled_events() {
    let server = TestServer::start().await;
    let (host, _) = server.register("host_gil").await;
    let (guest, _) = server.register("guest_hu").await;
    let (other, _) = server.register("guest_io").await;
    let past = create_at(&server, &host, "Past", "2001-05-01T12:00:00Z", 5).await;
    let mut body = valid_event();
    body["title"] = json!("Sushi");
    body["starts_at"] = json!("2099-02-01T12:00:00Z");
    body["tags"] = json!(["sushi", "food"]);
    body["capacity"] = json!(1);
    let sushi = new_event(&server, &host, body).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut body = valid_event();
    body["title"] = json!("Ramen");
    body["starts_at"] = json!("2099-04-01T12:00:00Z");
    body["ends_at"] = json!("2099-04-01T14:00:00Z");
    body["tags"] = json!(["ramen", "food"]);
    let ramen = new_event(&server, &host, body).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let gone = create_at(&server, &host, "Gone", "2099-03-01T12:00:00Z", 5).await;
    let (status, _) = server
        .delete(&format!("/api/v1/events/{gone}"), &host)
        .await;
    assert_eq!(status, 204);
    rsvp(&server, &sushi, &guest).await;
    rsvp(&server, &sushi, &other).await;

    let (_, page) = list(&server, &guest, &[]).await;
    assert_eq!(
        page_ids(&page),
        [sushi.clone(), ramen.clone()],
        "default from is now"
    );
    let counts = &page["items"][0];
    assert_eq!(counts["going_count"], 1, "{counts}");
    assert_eq!(counts["waitlist_count"], 1, "{counts}");

    let (_, page) = list(&server, &guest, &[("from", "2000-01-01T00:00:00Z")]).await;
    assert_eq!(
        page_ids(&page),
        [past.clone(), sushi.clone(), ramen.clone()]
    );
    // The bound is inclusive, and offsets count.
    let (_, page) = list(&server, &guest, &[("from", "2099-02-01T21:00:00+09:00")]).await;
    assert_eq!(page_ids(&page), [sushi.clone(), ramen.clone()]);
    let (_, page) = list(&server, &guest, &[("from", "2099-02-01T12:00:00.001Z")]).await;
    assert_eq!(page_ids(&page), [ramen.as_str()]);

    let (_, page) = list(&server, &guest, &[("tag", "sushi")]).await;
    assert_eq!(page_ids(&page), [sushi.as_str()]);
    let (_, page) = list(&server, &guest, &[("tag", "food")]).await;
    assert_eq!(page_ids(&page), [sushi.clone(), ramen.clone()]);
    let (_, page) = list(
        &server,
        &guest,
        &[("tag", "ramen"), ("from", "2000-01-01T00:00:00Z")],
    )
    .await;
    // The past event carries the default tags, `ramen` among them.
    assert_eq!(page_ids(&page), [past.clone(), ramen.clone()]);
    let (_, page) = list(&server, &guest, &[("tag", "ramen")]).await;
    assert_eq!(page_ids(&page), [ramen.as_str()]);
    let (_, page) = list(&server, &guest, &[("tag", "pizza")]).await;
    assert!(page_ids(&page).is_empty(), "{page}");
    let (_, page) = list(&server, &guest, &[("tag", "100%_food")]).await;
    assert!(page_ids(&page).is_empty(), "{page}");

    let (status, body) = list(&server, &guest, &[("from", "yesterday")]).await;
    assert_bad_field(status, &body, "from");
}

/// 50 users RSVP at once to 10 seats: exactly 10 go and 40 wait, in a
/// strict queue. Then 5 going users leave at once: exactly the first 5 of
/// the queue move up, each told so.
async fn rsvp_race_never_overbooks(server: &TestServer) {
    let (host, _) = server.register("race_host").await;
    let id = create_at(server, &host, "Izakaya", START, 10).await;

    let handles: Vec<String> = (0..50).map(|i| format!("racer_{i:02}")).collect();
    let tokens: Vec<String> = join_all(handles.iter().map(|h| server.register(h)))
        .await
        .into_iter()
        .map(|(token, _)| token)
        .collect();

    // Every user at once, and the first ten twice, to race the repeat too.
    let requests = tokens.iter().chain(tokens.iter().take(10));
    let answers = join_all(requests.map(|token| rsvp(server, &id, token))).await;
    let mut by_user: HashMap<&str, Value> = HashMap::new();
    for (token, answer) in tokens.iter().chain(tokens.iter().take(10)).zip(answers) {
        if let Some(before) = by_user.insert(token.as_str(), answer.clone()) {
            assert_eq!(before, answer, "a repeated RSVP answers the same");
        }
    }
    let going: Vec<&str> = tokens
        .iter()
        .map(String::as_str)
        .filter(|t| by_user[t]["status"] == "going")
        .collect();
    let mut waiting: Vec<(i64, &str)> = tokens
        .iter()
        .map(String::as_str)
        .filter(|t| by_user[t]["status"] == "waitlisted")
        .map(|t| {
            let place = by_user[t]["waitlist_position"]
                .as_i64()
                .unwrap_or_else(|| panic!("a place in {}", by_user[t]));
            (place, t)
        })
        .collect();
    assert_eq!(going.len(), 10, "exactly the capacity goes");
    assert_eq!(waiting.len(), 40, "everyone else waits");
    waiting.sort_unstable();
    let places: BTreeSet<i64> = waiting.iter().map(|(place, _)| *place).collect();
    assert_eq!(
        places,
        (1..=40).collect(),
        "the waitlist is one strict queue"
    );
    let seen = event(server, &id, &host).await;
    assert_eq!(seen["going_count"], 10, "{seen}");
    assert_eq!(seen["waitlist_count"], 40, "{seen}");

    let leavers = &going[..5];
    join_all(leavers.iter().map(|token| leave_event(server, &id, token))).await;

    let seen = event(server, &id, &host).await;
    assert_eq!(
        seen["going_count"], 10,
        "the freed seats are all taken: {seen}"
    );
    assert_eq!(seen["waitlist_count"], 35, "{seen}");
    for token in leavers {
        assert_eq!(event(server, &id, token).await["my_rsvp"], Value::Null);
    }
    for token in &going[5..] {
        assert_eq!(event(server, &id, token).await["my_rsvp"], "going");
    }
    for &(place, token) in &waiting {
        let kinds = notification_kinds(server, token).await;
        if place <= 5 {
            assert_eq!(
                event(server, &id, token).await["my_rsvp"],
                "going",
                "place {place} was promoted"
            );
            assert_eq!(kinds, ["waitlist_promoted"], "place {place} was told");
        } else {
            assert_eq!(
                rsvp(server, &id, token).await,
                json!({"status": "waitlisted", "waitlist_position": place - 5}),
                "place {place} moved up by five"
            );
            assert!(
                kinds.is_empty(),
                "place {place} was not promoted: {kinds:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rsvp_race_never_overbooks_on_sqlite() {
    let server = TestServer::start().await;
    assert!(server.config.database_url.starts_with("sqlite:"));
    rsvp_race_never_overbooks(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rsvp_race_never_overbooks_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    assert!(server.config.database_url.starts_with("postgres"));
    rsvp_race_never_overbooks(&server).await;
    server.shutdown().await;
}
