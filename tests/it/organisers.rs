//! What organisers see over REST against the real server, on SQLite and on
//! Postgres: an event's attendees in seat and waitlist order (who may see
//! which list, paging while people leave and the waitlist moves up), and a
//! community's members in join order.
//!
//! The Postgres variants need the shared server (see
//! `crate::common::postgres`) and fail, saying how to start it, when it is
//! down.

use serde_json::{json, Value};

use crate::common::json::{assert_bad_field, assert_error, keys, parse_time, text_of};
use crate::common::platform::{join_community, leave_event, new_community, new_event, rsvp};
use crate::common::TestServer;

/// An event with `capacity` seats, far enough ahead to stay scheduled.
async fn event_with_seats(server: &TestServer, host: &str, capacity: u32) -> String {
    let event = new_event(
        server,
        host,
        json!({
            "title": "Ramen night",
            "starts_at": "2099-03-01T18:00:00Z",
            "venue": "Ichiran, Shibuya",
            "capacity": capacity,
        }),
    )
    .await;
    text_of(&event["id"])
}

/// GET /events/{id}/attendees with this query string (may be empty).
async fn attendees(server: &TestServer, event: &str, token: &str, query: &str) -> (u16, Value) {
    server
        .get(
            &format!("/api/v1/events/{event}/attendees{query}"),
            Some(token),
        )
        .await
}

/// `(user id, status, position)` of each item of a page.
fn rows(items: &[Value]) -> Vec<(String, String, i64)> {
    items
        .iter()
        .map(|item| {
            (
                text_of(&item["user"]["id"]),
                text_of(&item["status"]),
                item["position"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("position in {item}")),
            )
        })
        .collect()
}

fn going(user: &str, position: i64) -> (String, String, i64) {
    (user.to_owned(), "going".to_owned(), position)
}

fn waiting(user: &str, position: i64) -> (String, String, i64) {
    (user.to_owned(), "waitlisted".to_owned(), position)
}

/// Every page of `path` (which has a query string) at `limit` a page.
async fn all_pages(server: &TestServer, path: &str, token: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (page, next) = server.page(&url, token).await;
        assert!(page.len() <= limit as usize, "{url} keeps to the limit");
        items.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
}

/// A host, an event of two seats, and four guests who RSVPed in order:
/// two going, two waitlisted.
struct Seated {
    host: String,
    event: String,
    guests: Vec<(String, String)>,
}

async fn seated(server: &TestServer, prefix: &str, guests: usize) -> Seated {
    let (host, _) = server.register(&format!("{prefix}_host")).await;
    let event = event_with_seats(server, &host, 2).await;
    let mut all = Vec::new();
    for n in 0..guests {
        let (token, id) = server.register(&format!("{prefix}_guest{n}")).await;
        rsvp(server, &event, &token).await;
        all.push((token, id));
    }
    Seated {
        host,
        event,
        guests: all,
    }
}

async fn host_sees_both_lists_in_order(server: &TestServer) {
    let s = seated(server, "ord", 4).await;
    let id = |n: usize| s.guests[n].1.as_str();

    let (status, page) = attendees(server, &s.event, &s.host, "?status=going").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(rows(items), [going(id(0), 1), going(id(1), 2)]);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(keys(&items[0]), ["position", "rsvp_at", "status", "user"]);
    assert_eq!(keys(&items[0]["user"]), ["display_name", "handle", "id"]);
    assert_eq!(items[0]["user"]["handle"], "ord_guest0");
    assert!(parse_time(&items[0]["rsvp_at"]) <= parse_time(&items[1]["rsvp_at"]));

    let (status, page) = attendees(server, &s.event, &s.host, "?status=waitlisted").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(rows(items), [waiting(id(2), 1), waiting(id(3), 2)]);

    // Without a status the host gets everyone: seats, then the waitlist.
    let everyone = [
        going(id(0), 1),
        going(id(1), 2),
        waiting(id(2), 1),
        waiting(id(3), 2),
    ];
    let (status, page) = attendees(server, &s.event, &s.host, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(rows(page["items"].as_array().expect("items")), everyone);

    // One at a time, across the border between the lists, nobody twice.
    let path = format!("/api/v1/events/{}/attendees?", s.event);
    let paged = all_pages(server, &path, &s.host, 1).await;
    assert_eq!(rows(&paged), everyone);
    let path = format!("/api/v1/events/{}/attendees?status=waitlisted", s.event);
    let paged = all_pages(server, &path, &s.host, 1).await;
    assert_eq!(rows(&paged), [waiting(id(2), 1), waiting(id(3), 2)]);
}

async fn only_the_host_and_those_going_may_look(server: &TestServer) {
    let s = seated(server, "who", 3).await;
    let (going_token, going_id) = &s.guests[0];
    let (waiting_token, _) = &s.guests[2];
    let (stranger, _) = server.register("who_stranger").await;

    // A going attendee sees the seats, asked or not, and not the waitlist.
    for query in ["", "?status=going"] {
        let (status, page) = attendees(server, &s.event, going_token, query).await;
        assert_eq!(status, 200, "{query}: {page}");
        let items = page["items"].as_array().expect("items");
        assert_eq!(
            rows(items),
            [going(going_id, 1), going(&s.guests[1].1, 2)],
            "{query}"
        );
    }
    let (status, body) = attendees(server, &s.event, going_token, "?status=waitlisted").await;
    assert_error(status, &body, 403, "forbidden");

    for token in [waiting_token, &stranger] {
        for query in ["", "?status=going", "?status=waitlisted"] {
            let (status, body) = attendees(server, &s.event, token, query).await;
            assert_error(status, &body, 403, "forbidden");
        }
    }
}

async fn attendee_queries_are_checked(server: &TestServer) {
    let s = seated(server, "bad", 1).await;
    for query in ["?status=maybe", "?status=", "?status=GOING"] {
        let (status, body) = attendees(server, &s.event, &s.host, query).await;
        assert_bad_field(status, &body, "status");
    }
    for query in ["?limit=0", "?limit=101"] {
        let (status, body) = attendees(server, &s.event, &s.host, query).await;
        assert_bad_field(status, &body, "limit");
    }
    let (status, body) = attendees(server, &s.event, &s.host, "?cursor=nonsense!").await;
    assert_bad_field(status, &body, "cursor");

    for event in ["424242", "0", "abc"] {
        let (status, body) = attendees(server, event, &s.host, "").await;
        assert_error(status, &body, 404, "not_found");
    }
}

/// Someone going leaves between two pages of the waitlist: the first in
/// line moves up to a seat, and the next page goes on from the cursor
/// without skipping whoever is now first in line.
async fn leaving_promotes_the_waitlist_and_pages_hold(server: &TestServer) {
    let s = seated(server, "prom", 5).await;
    let id = |n: usize| s.guests[n].1.as_str();

    let path = format!(
        "/api/v1/events/{}/attendees?status=waitlisted&limit=1",
        s.event
    );
    let (first, cursor) = server.page(&path, &s.host).await;
    assert_eq!(rows(&first), [waiting(id(2), 1)]);
    let cursor = cursor.expect("more of the waitlist");

    leave_event(server, &s.event, &s.guests[0].0).await;

    let (second, cursor) = server
        .page(&format!("{path}&cursor={cursor}"), &s.host)
        .await;
    assert_eq!(rows(&second), [waiting(id(3), 1)], "guest 3 now leads");
    let (third, end) = server
        .page(&format!("{path}&cursor={}", cursor.expect("more")), &s.host)
        .await;
    assert_eq!(rows(&third), [waiting(id(4), 2)]);
    assert_eq!(end, None);

    let (status, page) = attendees(server, &s.event, &s.host, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        rows(page["items"].as_array().expect("items")),
        [
            going(id(1), 1),
            going(id(2), 2),
            waiting(id(3), 1),
            waiting(id(4), 2)
        ]
    );
    // The promoted guest now sees the seats; the one who left sees nothing.
    let (status, page) = attendees(server, &s.event, &s.guests[2].0, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        rows(page["items"].as_array().expect("items")),
        [going(id(1), 1), going(id(2), 2)]
    );
    let (status, body) = attendees(server, &s.event, &s.guests[0].0, "").await;
    assert_error(status, &body, 403, "forbidden");
}

/// GET /communities/{id}/members with this query string (may be empty).
async fn members(server: &TestServer, community: &str, token: &str, query: &str) -> (u16, Value) {
    server
        .get(
            &format!("/api/v1/communities/{community}/members{query}"),
            Some(token),
        )
        .await
}

fn member_ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|m| text_of(&m["user"]["id"])).collect()
}

async fn members_in_join_order_for_members(server: &TestServer) {
    let (owner, owner_id) = server.register("club_owner").await;
    let community = new_community(server, &owner, json!({"name": "Noodle club"})).await;
    let community = text_of(&community["id"]);
    let mut joined = vec![owner_id.clone()];
    let mut tokens = Vec::new();
    for n in 0..3 {
        let (token, id) = server.register(&format!("club_m{n}")).await;
        join_community(server, &community, &token).await;
        joined.push(id);
        tokens.push(token);
    }

    let (status, page) = members(server, &community, &tokens[0], "").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(member_ids(items), joined, "join order, owner first");
    assert_eq!(keys(&items[0]), ["joined_at", "user"]);
    assert_eq!(items[0]["user"]["handle"], "club_owner");
    let times: Vec<_> = items.iter().map(|m| parse_time(&m["joined_at"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{page}");

    // Page by two; someone leaving between pages moves nobody else.
    let path = format!("/api/v1/communities/{community}/members?limit=2");
    let (first, cursor) = server.page(&path, &owner).await;
    assert_eq!(member_ids(&first), joined[..2]);
    let (status, body) = server
        .delete(
            &format!("/api/v1/communities/{community}/membership"),
            &tokens[0],
        )
        .await;
    assert_eq!(status, 204, "leave: {body}");
    let (second, end) = server
        .page(
            &format!("{path}&cursor={}", cursor.expect("a second page")),
            &owner,
        )
        .await;
    assert_eq!(member_ids(&second), joined[2..]);
    assert_eq!(end, None);

    // Those outside, including one who just left, may not look.
    let (stranger, _) = server.register("club_stranger").await;
    for token in [&stranger, &tokens[0]] {
        let (status, body) = members(server, &community, token, "").await;
        assert_error(status, &body, 403, "forbidden");
    }
    for query in ["?limit=0", "?limit=500"] {
        let (status, body) = members(server, &community, &owner, query).await;
        assert_bad_field(status, &body, "limit");
    }
    let (status, body) = members(server, &community, &owner, "?cursor=%%%").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = members(server, &community, &owner, "?cursor=bm9wZQ").await;
    assert_bad_field(status, &body, "cursor");
    let (status, body) = members(server, "424242", &owner, "").await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn host_sees_both_lists_in_order_on_sqlite() {
    host_sees_both_lists_in_order(&TestServer::start().await).await;
}

#[tokio::test]
async fn host_sees_both_lists_in_order_on_postgres() {
    host_sees_both_lists_in_order(&TestServer::start_on_postgres(|_| {}).await).await;
}

#[tokio::test]
async fn only_the_host_and_those_going_may_look_on_sqlite() {
    only_the_host_and_those_going_may_look(&TestServer::start().await).await;
}

#[tokio::test]
async fn only_the_host_and_those_going_may_look_on_postgres() {
    only_the_host_and_those_going_may_look(&TestServer::start_on_postgres(|_| {}).await).await;
}

#[tokio::test]
async fn attendee_queries_are_checked_on_sqlite() {
    attendee_queries_are_checked(&TestServer::start().await).await;
}

#[tokio::test]
async fn attendee_queries_are_checked_on_postgres() {
    attendee_queries_are_checked(&TestServer::start_on_postgres(|_| {}).await).await;
}

#[tokio::test]
async fn leaving_promotes_the_waitlist_and_pages_hold_on_sqlite() {
    leaving_promotes_the_waitlist_and_pages_hold(&TestServer::start().await).await;
}

#[tokio::test]
async fn leaving_promotes_the_waitlist_and_pages_hold_on_postgres() {
    leaving_promotes_the_waitlist_and_pages_hold(&TestServer::start_on_postgres(|_| {}).await)
        .await;
}

#[tokio::test]
async fn members_in_join_order_for_members_on_sqlite() {
    members_in_join_order_for_members(&TestServer::start().await).await;
}

#[tokio::test]
async fn members_in_join_order_for_members_on_postgres() {
    members_in_join_order_for_members(&TestServer::start_on_postgres(|_| {}).await).await;
}
