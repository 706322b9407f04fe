//! Talk-topic cards over REST on the default (SQLite) server: creating,
//! validating, listing with filters and cursor paging, reading, editing,
//! closing and deleting, and who may do which.

use std::collections::HashSet;

use crate::common::json::{
    assert_bad_field, assert_error, assert_error_naming, ids, parse_time, text_of,
};
use crate::common::platform::new_card;
use crate::common::TestServer;
use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Lists cards with this query string; the answer must be a page.
async fn list(server: &TestServer, token: &str, query: &str) -> (Vec<Value>, Option<String>) {
    server.page(&format!("/api/v1/cards{query}"), token).await
}

fn titles(cards: &[Value]) -> Vec<String> {
    cards
        .iter()
        .map(|c| c["title"].as_str().expect("title").to_owned())
        .collect()
}

/// Percent-encodes a query value (enough for the characters used here).
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn create_card_answers_201_with_the_full_card() {
    let server = TestServer::start().await;
    let (token, owner_id) = server.register("card_owner").await;
    let before = OffsetDateTime::now_utc();
    let (status, card) = server
        .post(
            "/api/v1/cards",
            Some(&token),
            json!({"title": "Async Rust in production", "body": "Let's talk tokio.", "tags": ["rust", "async"]}),
        )
        .await;
    assert_eq!(status, 201, "create answered {card}");

    let id = text_of(&card["id"]);
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "card id is a numeric string: {id}"
    );
    assert_eq!(card["owner_id"], owner_id.as_str(), "owner_id in {card}");
    assert_eq!(card["owner"]["id"], owner_id.as_str(), "owner in {card}");
    assert_eq!(card["owner"]["handle"], "card_owner", "owner in {card}");
    assert_eq!(
        card["owner"]["display_name"], "card_owner",
        "owner in {card}"
    );
    assert_eq!(card["title"], "Async Rust in production");
    assert_eq!(card["body"], "Let's talk tokio.");
    assert_eq!(card["tags"], json!(["rust", "async"]));
    assert_eq!(card["status"], "open", "a new card is open: {card}");
    let created = parse_time(&card["created_at"]);
    let updated = parse_time(&card["updated_at"]);
    let slack = time::Duration::seconds(5);
    assert!(
        created >= before - slack && created <= OffsetDateTime::now_utc() + slack,
        "created_at {created} is about now"
    );
    assert_eq!(created, updated, "a new card was never updated: {card}");

    // Reading it back gives the same card, to anyone signed in.
    let (reader, _) = server.register("card_reader").await;
    let (status, read) = server
        .get(&format!("/api/v1/cards/{id}"), Some(&reader))
        .await;
    assert_eq!(status, 200, "GET answered {read}");
    assert_eq!(read, card, "GET /cards/{{id}} shows the created card");

    // A second card gets its own id.
    let second = new_card(&server, &token, "Second", "", &[]).await;
    assert_ne!(text_of(&second["id"]), id);
    assert_eq!(second["body"], "", "body defaults to empty");
    assert_eq!(second["tags"], json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn create_card_validation_names_the_field_and_changes_nothing() {
    let server = TestServer::start().await;
    let (token, _) = server.register("validator").await;
    let six_tags: Vec<String> = (0..6).map(|i| format!("tag{i}")).collect();
    let cases = [
        (json!({"title": "", "body": "b", "tags": []}), "title"),
        (json!({"title": "   ", "body": "b", "tags": []}), "title"),
        (
            json!({"title": "t".repeat(81), "body": "b", "tags": []}),
            "title",
        ),
        (
            json!({"title": "ok", "body": "b".repeat(1001), "tags": []}),
            "body",
        ),
        (json!({"title": "ok", "body": "", "tags": six_tags}), "tags"),
        (
            json!({"title": "ok", "body": "", "tags": ["x".repeat(31)]}),
            "tags",
        ),
        (json!({"title": "ok", "body": "", "tags": [""]}), "tags"),
        (json!({"body": "no title", "tags": []}), "title"),
    ];
    for (body, field) in cases {
        let (status, answer) = server.post("/api/v1/cards", Some(&token), body).await;
        assert_error_naming(status, &answer, 400, "bad_request", field);
    }
    let (items, _) = list(&server, &token, "").await;
    assert!(items.is_empty(), "refused cards were not stored: {items:?}");

    // The limits themselves are allowed.
    let five_tags: Vec<String> = (0..5).map(|i| format!("tag{i}")).collect();
    let (status, card) = server
        .post(
            "/api/v1/cards",
            Some(&token),
            json!({"title": "t".repeat(80), "body": "b".repeat(1000), "tags": five_tags}),
        )
        .await;
    assert_eq!(status, 201, "80/1000/5 are within bounds: {card}");
    let (status, card) = server
        .post(
            "/api/v1/cards",
            Some(&token),
            json!({"title": "x", "tags": ["y".repeat(30)]}),
        )
        .await;
    assert_eq!(status, 201, "a 30-character tag is allowed: {card}");
    let (items, _) = list(&server, &token, "").await;
    assert_eq!(items.len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn cards_are_listed_newest_first() {
    let server = TestServer::start().await;
    let (alice, _) = server.register("lister_a").await;
    let (bob, _) = server.register("lister_b").await;
    new_card(&server, &alice, "first", "", &[]).await;
    new_card(&server, &bob, "second", "", &[]).await;
    new_card(&server, &alice, "third", "", &[]).await;

    let (items, cursor) = list(&server, &bob, "").await;
    assert_eq!(titles(&items), ["third", "second", "first"]);
    assert_eq!(cursor, None, "everything fits on one page");
    for card in &items {
        assert_eq!(card["status"], "open");
        assert!(card["owner"]["handle"].is_string(), "owner in {card}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn tag_filter_keeps_cards_with_that_tag() {
    let server = TestServer::start().await;
    let (token, _) = server.register("tagger").await;
    new_card(&server, &token, "rust one", "", &["rust"]).await;
    new_card(&server, &token, "go one", "", &["go"]).await;
    new_card(&server, &token, "both", "", &["go", "rust"]).await;
    new_card(&server, &token, "none", "", &[]).await;

    let (items, _) = list(&server, &token, "?tag=rust").await;
    assert_eq!(titles(&items), ["both", "rust one"]);
    let (items, _) = list(&server, &token, "?tag=go").await;
    assert_eq!(titles(&items), ["both", "go one"]);
    let (items, _) = list(&server, &token, "?tag=haskell").await;
    assert!(items.is_empty(), "no card has that tag: {items:?}");
    let (items, _) = list(&server, &token, "?tag=ru").await;
    assert!(
        items.is_empty(),
        "tags match whole, not by prefix: {items:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn text_search_is_case_insensitive_on_title_and_body() {
    let server = TestServer::start().await;
    let (token, _) = server.register("searcher").await;
    new_card(&server, &token, "Kubernetes at scale", "clusters", &[]).await;
    new_card(
        &server,
        &token,
        "Weekend hacking",
        "I run KUBERNETES at home",
        &[],
    )
    .await;
    new_card(&server, &token, "Gardening", "tomatoes", &[]).await;

    let (items, _) = list(&server, &token, "?q=kubernetes").await;
    assert_eq!(titles(&items), ["Weekend hacking", "Kubernetes at scale"]);
    let (items, _) = list(&server, &token, "?q=KuBeRnEtEs").await;
    assert_eq!(titles(&items), ["Weekend hacking", "Kubernetes at scale"]);
    let (items, _) = list(&server, &token, "?q=TOMATO").await;
    assert_eq!(titles(&items), ["Gardening"], "body matches too");
    let (items, _) = list(&server, &token, &format!("?q={}", enc("at home"))).await;
    assert_eq!(titles(&items), ["Weekend hacking"]);
    let (items, _) = list(&server, &token, "?q=nothing-like-this").await;
    assert!(items.is_empty(), "{items:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn text_search_matches_percent_and_underscore_literally() {
    let server = TestServer::start().await;
    let (token, _) = server.register("literal").await;
    new_card(&server, &token, "100% rust", "", &[]).await;
    new_card(&server, &token, "100 percent go", "", &[]).await;
    new_card(&server, &token, "snake_case names", "", &[]).await;
    new_card(&server, &token, "snakeXcase names", "", &[]).await;
    new_card(&server, &token, "plain", "a back\\slash", &[]).await;

    let (items, _) = list(&server, &token, &format!("?q={}", enc("%"))).await;
    assert_eq!(titles(&items), ["100% rust"], "`%` is a literal percent");
    let (items, _) = list(&server, &token, &format!("?q={}", enc("100%"))).await;
    assert_eq!(titles(&items), ["100% rust"]);
    let (items, _) = list(&server, &token, &format!("?q={}", enc("_"))).await;
    assert_eq!(titles(&items), ["snake_case names"], "`_` is literal");
    let (items, _) = list(&server, &token, &format!("?q={}", enc("e_c"))).await;
    assert_eq!(
        titles(&items),
        ["snake_case names"],
        "`_` does not match any one character"
    );
    let (items, _) = list(&server, &token, &format!("?q={}", enc("k\\s"))).await;
    assert_eq!(titles(&items), ["plain"], "a backslash is literal too");
    server.shutdown().await;
}

#[tokio::test]
async fn owner_filter_shows_closed_cards_that_the_plain_list_hides() {
    let server = TestServer::start().await;
    let (alice, alice_id) = server.register("closer_a").await;
    let (bob, bob_id) = server.register("closer_b").await;
    let kept = new_card(&server, &alice, "alice open", "", &["t"]).await;
    let closed = new_card(&server, &alice, "alice closed", "", &["t"]).await;
    new_card(&server, &bob, "bob open", "", &["t"]).await;
    let (status, body) = server
        .patch(
            &format!("/api/v1/cards/{}", text_of(&closed["id"])),
            &alice,
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(status, 200, "closing answered {body}");
    assert_eq!(body["status"], "closed");

    let (items, _) = list(&server, &bob, "").await;
    assert_eq!(
        titles(&items),
        ["bob open", "alice open"],
        "closed is hidden"
    );
    let (items, _) = list(&server, &bob, "?tag=t").await;
    assert_eq!(titles(&items), ["bob open", "alice open"]);

    let (items, _) = list(&server, &bob, &format!("?owner_id={alice_id}")).await;
    assert_eq!(
        titles(&items),
        ["alice closed", "alice open"],
        "the owner's page shows closed cards too"
    );
    assert_eq!(items[0]["status"], "closed");
    assert_eq!(items[1]["status"], "open");
    assert_eq!(text_of(&items[1]["id"]), text_of(&kept["id"]));
    for card in &items {
        assert_eq!(card["owner_id"], alice_id.as_str());
    }

    let (items, _) = list(&server, &alice, &format!("?owner_id={bob_id}")).await;
    assert_eq!(titles(&items), ["bob open"], "only that owner's cards");

    let (status, body) = server
        .get("/api/v1/cards?owner_id=not-an-id", Some(&alice))
        .await;
    assert_bad_field(status, &body, "owner_id");
    server.shutdown().await;
}

#[tokio::test]
async fn paging_walks_three_pages_without_duplicates_or_gaps_while_cards_arrive() {
    let server = TestServer::start().await;
    let (token, _) = server.register("pager").await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(text_of(
            &new_card(&server, &token, &format!("card {i}"), "", &[]).await["id"],
        ));
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let (page1, cursor1) = list(&server, &token, "?limit=3").await;
    assert_eq!(ids(&page1), newest_first[0..3]);
    let cursor1 = cursor1.expect("more cards follow the first page");

    // New cards between fetches must not shift what the cursor points at.
    new_card(&server, &token, "late 1", "", &[]).await;
    new_card(&server, &token, "late 2", "", &[]).await;

    let (page2, cursor2) = list(&server, &token, &format!("?limit=3&cursor={cursor1}")).await;
    assert_eq!(ids(&page2), newest_first[3..6]);
    let cursor2 = cursor2.expect("more cards follow the second page");

    new_card(&server, &token, "late 3", "", &[]).await;

    let (page3, cursor3) = list(&server, &token, &format!("?limit=3&cursor={cursor2}")).await;
    assert_eq!(ids(&page3), newest_first[6..7]);
    assert_eq!(cursor3, None, "the last page has no cursor");

    let mut seen = HashSet::new();
    for id in ids(&page1)
        .into_iter()
        .chain(ids(&page2))
        .chain(ids(&page3))
    {
        assert!(seen.insert(id.clone()), "card {id} was served twice");
    }
    assert_eq!(seen.len(), 7, "every original card was served once");

    // The first page now starts with the late cards.
    let (fresh, _) = list(&server, &token, "?limit=3").await;
    assert_eq!(titles(&fresh), ["late 3", "late 2", "late 1"]);

    // Paging also composes with a filter.
    let (all, cursor) = list(&server, &token, &format!("?q={}&limit=2", enc("card"))).await;
    assert_eq!(titles(&all), ["card 6", "card 5"]);
    let cursor = cursor.expect("more matching cards");
    let (next, _) = list(&server, &token, &format!("?q=card&limit=2&cursor={cursor}")).await;
    assert_eq!(titles(&next), ["card 4", "card 3"]);
    server.shutdown().await;
}

#[tokio::test]
async fn limit_must_be_1_to_100() {
    let server = TestServer::start().await;
    let (token, _) = server.register("limiter").await;
    new_card(&server, &token, "one", "", &[]).await;
    for bad in ["0", "101", "-1", "many"] {
        let (status, body) = server
            .get(&format!("/api/v1/cards?limit={bad}"), Some(&token))
            .await;
        assert_error(status, &body, 400, "bad_request");
        if bad == "0" || bad == "101" {
            assert_bad_field(status, &body, "limit");
        }
    }
    for good in ["1", "100"] {
        let (items, _) = list(&server, &token, &format!("?limit={good}")).await;
        assert_eq!(items.len(), 1, "limit={good}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_cursor_the_server_did_not_make_is_400() {
    let server = TestServer::start().await;
    let (token, _) = server.register("cursed").await;
    new_card(&server, &token, "one", "", &[]).await;
    // Not base64; base64 of text; base64 of two numbers where one is due.
    for bad in ["garbage!!", "Z2FyYmFnZQ", "MS4y", "%20"] {
        let (status, body) = server
            .get(&format!("/api/v1/cards?cursor={bad}"), Some(&token))
            .await;
        assert_bad_field(status, &body, "cursor");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn get_card_finds_it_and_unknown_or_garbage_ids_are_404() {
    let server = TestServer::start().await;
    let (token, _) = server.register("getter").await;
    let card = new_card(&server, &token, "findable", "body", &["x"]).await;
    let id = text_of(&card["id"]);
    let (status, body) = server
        .get(&format!("/api/v1/cards/{id}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["title"], "findable");
    assert_eq!(body["id"], id.as_str());

    let unknown = id.parse::<i64>().expect("numeric id") + 1_000;
    for bad in [unknown.to_string(), "abc".into(), "0".into(), "-1".into()] {
        let (status, body) = server
            .get(&format!("/api/v1/cards/{bad}"), Some(&token))
            .await;
        assert_error(status, &body, 404, "not_found");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_owner_edits_title_tags_and_status() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("editor").await;
    let card = new_card(&server, &owner, "before", "the body", &["old"]).await;
    let id = text_of(&card["id"]);
    let path = format!("/api/v1/cards/{id}");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let (status, edited) = server
        .patch(
            &path,
            &owner,
            json!({"title": "after", "tags": ["new", "fresh"]}),
        )
        .await;
    assert_eq!(status, 200, "PATCH answered {edited}");
    assert_eq!(edited["id"], id.as_str());
    assert_eq!(edited["title"], "after");
    assert_eq!(edited["body"], "the body", "an absent field is kept");
    assert_eq!(edited["tags"], json!(["new", "fresh"]));
    assert_eq!(edited["status"], "open");
    assert_eq!(edited["created_at"], card["created_at"]);
    assert!(
        parse_time(&edited["updated_at"]) > parse_time(&card["updated_at"]),
        "updated_at moves forward: {card} then {edited}"
    );
    let (_, read) = server.get(&path, Some(&owner)).await;
    assert_eq!(read, edited, "GET shows the edit");

    // The tag filter follows the new tags.
    let (items, _) = list(&server, &owner, "?tag=new").await;
    assert_eq!(ids(&items), std::slice::from_ref(&id));
    let (items, _) = list(&server, &owner, "?tag=old").await;
    assert!(items.is_empty(), "the old tag is gone: {items:?}");

    let (status, closed) = server
        .patch(&path, &owner, json!({"status": "closed"}))
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["title"], "after");
    let (items, _) = list(&server, &owner, "").await;
    assert!(items.is_empty(), "a closed card leaves the list: {items:?}");
    let (status, read) = server.get(&path, Some(&owner)).await;
    assert_eq!(status, 200, "a closed card can still be read");
    assert_eq!(read["status"], "closed");

    let (status, reopened) = server.patch(&path, &owner, json!({"status": "open"})).await;
    assert_eq!(status, 200, "{reopened}");
    assert_eq!(reopened["status"], "open");
    let (items, _) = list(&server, &owner, "").await;
    assert_eq!(
        ids(&items),
        std::slice::from_ref(&id),
        "reopened, it is listed again"
    );

    // Bad edits name the field and change nothing.
    let (status, body) = server
        .patch(&path, &owner, json!({"title": "t".repeat(81)}))
        .await;
    assert_bad_field(status, &body, "title");
    let (status, body) = server
        .patch(&path, &owner, json!({"status": "archived"}))
        .await;
    assert_bad_field(status, &body, "status");
    let (status, body) = server
        .patch(
            &path,
            &owner,
            json!({"title": "sneaky", "tags": ["a", "b", "c", "d", "e", "f"]}),
        )
        .await;
    assert_bad_field(status, &body, "tags");
    let (_, read) = server.get(&path, Some(&owner)).await;
    assert_eq!(read["title"], "after", "refused edits changed nothing");
    assert_eq!(read["tags"], json!(["new", "fresh"]));
    server.shutdown().await;
}

#[tokio::test]
async fn someone_else_may_not_edit_a_card() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("real_owner").await;
    let (intruder, _) = server.register("intruder").await;
    let card = new_card(&server, &owner, "mine", "", &["t"]).await;
    let path = format!("/api/v1/cards/{}", text_of(&card["id"]));
    for change in [
        json!({"title": "theirs"}),
        json!({"status": "closed"}),
        json!({"tags": ["hijack"]}),
    ] {
        let (status, body) = server.patch(&path, &intruder, change).await;
        assert_error(status, &body, 403, "forbidden");
    }
    let (_, read) = server.get(&path, Some(&owner)).await;
    assert_eq!(read, card, "nothing changed");

    let (status, body) = server
        .patch("/api/v1/cards/999999", &owner, json!({"title": "x"}))
        .await;
    assert_error(status, &body, 404, "not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn the_owner_deletes_a_card_and_others_may_not() {
    let server = TestServer::start().await;
    let (owner, _) = server.register("deleter").await;
    let (other, _) = server.register("bystander").await;
    let card = new_card(&server, &owner, "short-lived", "", &[]).await;
    let path = format!("/api/v1/cards/{}", text_of(&card["id"]));

    let (status, body) = server.delete(&path, &other).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, _) = server.get(&path, Some(&owner)).await;
    assert_eq!(status, 200, "a refused delete keeps the card");

    let (status, body) = server.delete(&path, &owner).await;
    assert_eq!(status, 204, "delete answered {body}");
    assert_eq!(body, Value::Null, "204 has no body");
    let (status, body) = server.get(&path, Some(&owner)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server.delete(&path, &owner).await;
    assert_error(status, &body, 404, "not_found");
    let (items, _) = list(&server, &owner, "").await;
    assert!(
        items.is_empty(),
        "the deleted card is not listed: {items:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cards_need_a_signed_in_caller() {
    let server = TestServer::start().await;
    let (token, _) = server.register("signed_in").await;
    let card = new_card(&server, &token, "guarded", "", &[]).await;
    let path = format!("/api/v1/cards/{}", text_of(&card["id"]));
    let requests = [
        (
            Method::POST,
            "/api/v1/cards".to_owned(),
            Some(json!({"title": "x"})),
        ),
        (Method::GET, "/api/v1/cards".to_owned(), None),
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"title": "x"}))),
        (Method::DELETE, path.clone(), None),
    ];
    for (method, path, body) in requests {
        let (status, answer) = server.call(method.clone(), &path, None, body.clone()).await;
        assert_error(status, &answer, 401, "unauthenticated");
        let (status, answer) = server.call(method, &path, Some("not-a-token"), body).await;
        assert_error(status, &answer, 401, "unauthenticated");
    }
    let (_, read) = server.get(&path, Some(&token)).await;
    assert_eq!(read, card, "nothing changed");
    let (items, _) = list(&server, &token, "").await;
    assert_eq!(items.len(), 1, "no card was created without a caller");
    server.shutdown().await;
}
