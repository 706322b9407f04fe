//! Communities over REST against the real server: creating, finding,
//! paging, joining and leaving, and the errors of each. The last test runs
//! the core flow on Postgres; it needs the shared server (see
//! `crate::common::postgres`) and fails, saying how to start it, when it is down.

use std::collections::HashSet;

use crate::common::json::{assert_bad_field, assert_error, keys, parse_time};
use crate::common::platform::new_community;
use crate::common::TestServer;
use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

async fn create(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    server.post("/api/v1/communities", Some(token), body).await
}

/// Creates a community that must succeed; returns it.
async fn create_ok(server: &TestServer, token: &str, name: &str, tags: &[&str]) -> Value {
    new_community(
        server,
        token,
        json!({"name": name, "description": format!("about {name}"), "tags": tags}),
    )
    .await
}

async fn get_one(server: &TestServer, token: &str, id: &str) -> Value {
    let (status, body) = server
        .get(&format!("/api/v1/communities/{id}"), Some(token))
        .await;
    assert_eq!(status, 200, "get {id} answered {body}");
    body
}

/// Query parameters as name-value pairs.
type Query<'a> = [(&'a str, &'a str)];

/// `GET /communities` with query parameters, URL-encoded.
async fn list(server: &TestServer, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
    server.get_query("/api/v1/communities", token, query).await
}

/// A list that must succeed; returns the item names and the next cursor.
async fn list_names(
    server: &TestServer,
    token: &str,
    query: &[(&str, &str)],
) -> (Vec<String>, Option<String>) {
    let (status, body) = list(server, token, query).await;
    assert_eq!(status, 200, "list {query:?} answered {body}");
    let names = body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items is an array: {body}"))
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect();
    (names, body["next_cursor"].as_str().map(str::to_owned))
}

async fn membership(server: &TestServer, method: Method, token: &str, id: &str) -> (u16, Value) {
    server
        .call(
            method,
            &format!("/api/v1/communities/{id}/membership"),
            Some(token),
            None,
        )
        .await
}

#[tokio::test]
async fn create_get_and_list_show_the_community() {
    let server = TestServer::start().await;
    let (alice, alice_id) = server.register("alice").await;
    let (bob, _) = server.register("bob").await;
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);

    let (status, created) = create(
        &server,
        &alice,
        json!({"name": "  Rustaceans  ", "description": "Rust in production", "tags": [" rust", "async", "rust"]}),
    )
    .await;
    assert_eq!(status, 201, "create answered {created}");
    assert_eq!(
        keys(&created),
        [
            "created_at",
            "description",
            "id",
            "is_member",
            "member_count",
            "name",
            "owner_id",
            "room_id",
            "tags"
        ]
    );
    let id = created["id"].as_str().expect("id is a string").to_owned();
    assert!(id.parse::<i64>().is_ok_and(|n| n > 0), "id {id}");
    assert_eq!(created["name"], "Rustaceans", "the name is trimmed");
    assert_eq!(created["description"], "Rust in production");
    assert_eq!(created["tags"], json!(["rust", "async"]), "tags cleaned");
    assert_eq!(created["owner_id"], alice_id.as_str());
    assert_eq!(created["member_count"], 1, "the creator is a member");
    assert_eq!(created["is_member"], true);
    assert_eq!(created["room_id"], format!("community:{id}"));
    let at = parse_time(&created["created_at"]);
    assert!(at >= before && at <= OffsetDateTime::now_utc(), "{at}");

    let mine = get_one(&server, &alice, &id).await;
    assert_eq!(mine, created, "GET answers what POST did, for the creator");
    let theirs = get_one(&server, &bob, &id).await;
    assert_eq!(theirs["is_member"], false, "bob has not joined: {theirs}");
    assert_eq!(theirs["member_count"], 1);

    let (status, page) = list(&server, &bob, &[]).await;
    assert_eq!(status, 200, "list answered {page}");
    assert_eq!(keys(&page), ["items", "next_cursor"]);
    assert_eq!(page["next_cursor"], Value::Null);
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(
        keys(&items[0]),
        [
            "created_at",
            "description",
            "id",
            "member_count",
            "name",
            "owner_id",
            "room_id",
            "tags"
        ],
        "listings carry member_count and no per-caller field"
    );
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["member_count"], 1);
    assert_eq!(items[0]["room_id"], format!("community:{id}"));

    // Description and tags are optional.
    let (status, bare) = create(&server, &bob, json!({"name": "Bare"})).await;
    assert_eq!(status, 201, "create answered {bare}");
    assert_eq!(bare["description"], "");
    assert_eq!(bare["tags"], json!([]));
}

#[tokio::test]
async fn duplicate_names_conflict_whatever_their_case() {
    let server = TestServer::start().await;
    let (alice, _) = server.register("alice").await;
    let (bob, _) = server.register("bob").await;
    create_ok(&server, &alice, "Rustaceans", &[]).await;
    create_ok(&server, &alice, "Über Café", &[]).await;

    for clash in [
        "Rustaceans",
        "rustaceans",
        "RUSTACEANS",
        " rUsTaCeAnS ",
        "über café",
    ] {
        let (status, body) = create(&server, &bob, json!({"name": clash, "tags": ["x"]})).await;
        let message = assert_error(status, &body, 409, "conflict");
        assert!(message.contains("name"), "{clash:?}: {message}");
    }
    let (names, _) = list_names(&server, &bob, &[]).await;
    assert_eq!(names, ["Rustaceans", "Über Café"], "nothing was added");
    let (tagged, _) = list_names(&server, &bob, &[("tag", "x")]).await;
    assert!(tagged.is_empty(), "a refused create leaves no tags");

    create_ok(&server, &bob, "Rustaceans Tokyo", &[]).await;
}

#[tokio::test]
async fn invalid_input_is_refused_naming_the_field() {
    let server = TestServer::start().await;
    let (alice, _) = server.register("alice").await;
    let too_many: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    let ten: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let cases = [
        (json!({"name": "ab"}), "name"),
        (json!({"name": "   ab   "}), "name"),
        (json!({"name": "x".repeat(61)}), "name"),
        (json!({"name": "tab\there"}), "name"),
        (
            json!({"name": "Fine", "description": "d".repeat(1001)}),
            "description",
        ),
        (json!({"name": "Fine", "tags": too_many}), "tags"),
        (json!({"name": "Fine", "tags": ["t".repeat(31)]}), "tags"),
        (json!({"name": "Fine", "tags": [" "]}), "tags"),
    ];
    for (body, field) in cases {
        let (status, answer) = create(&server, &alice, body.clone()).await;
        assert_eq!(status, 400, "{body} answered {answer}");
        assert_bad_field(status, &answer, field);
    }
    let (status, answer) = create(&server, &alice, json!({"description": "no name"})).await;
    let message = assert_error(status, &answer, 400, "bad_request");
    assert!(message.contains("name"), "missing name is named: {message}");

    let (names, _) = list_names(&server, &alice, &[]).await;
    assert!(names.is_empty(), "bad input changed nothing: {names:?}");

    // The bounds themselves are accepted.
    create_ok(&server, &alice, "abc", &[]).await;
    let longest = "y".repeat(60);
    let (status, body) = create(
        &server,
        &alice,
        json!({"name": longest, "description": "d".repeat(1000), "tags": ten}),
    )
    .await;
    assert_eq!(status, 201, "limits are inclusive: {body}");
    assert_eq!(body["tags"].as_array().map(Vec::len), Some(10));
}

#[tokio::test]
async fn every_route_needs_a_session() {
    let server = TestServer::start().await;
    let (alice, _) = server.register("alice").await;
    let id = create_ok(&server, &alice, "Rustaceans", &[]).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let one = format!("/api/v1/communities/{id}");
    let member = format!("/api/v1/communities/{id}/membership");
    let routes = [
        (
            Method::POST,
            "/api/v1/communities",
            Some(json!({"name": "Other"})),
        ),
        (Method::GET, "/api/v1/communities", None),
        (Method::GET, one.as_str(), None),
        (Method::PUT, member.as_str(), None),
        (Method::DELETE, member.as_str(), None),
    ];
    for (method, path, body) in routes {
        for token in [None, Some("not-a-real-token")] {
            let (status, answer) = server.call(method.clone(), path, token, body.clone()).await;
            assert_error(status, &answer, 401, "unauthenticated");
        }
    }
    let (names, _) = list_names(&server, &alice, &[]).await;
    assert_eq!(names, ["Rustaceans"]);
    assert_eq!(get_one(&server, &alice, &id).await["member_count"], 1);
}

#[tokio::test]
async fn join_and_leave_are_idempotent_and_counted() {
    let server = TestServer::start().await;
    let (alice, _) = server.register("alice").await;
    let (bob, _) = server.register("bob").await;
    let (carol, _) = server.register("carol").await;
    let id = create_ok(&server, &alice, "Rustaceans", &[]).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let count_in_list = || async {
        let (status, page) = list(&server, &carol, &[]).await;
        assert_eq!(status, 200, "list answered {page}");
        page["items"][0]["member_count"].clone()
    };

    for _ in 0..2 {
        let (status, body) = membership(&server, Method::PUT, &bob, &id).await;
        assert_eq!(status, 204, "join answered {body}");
        assert_eq!(body, Value::Null, "204 has no body");
        let seen = get_one(&server, &bob, &id).await;
        assert_eq!(seen["member_count"], 2, "joining twice counts once");
        assert_eq!(seen["is_member"], true);
        assert_eq!(count_in_list().await, 2);
    }
    let (status, _) = membership(&server, Method::PUT, &carol, &id).await;
    assert_eq!(status, 204);
    assert_eq!(get_one(&server, &carol, &id).await["member_count"], 3);

    for _ in 0..2 {
        let (status, body) = membership(&server, Method::DELETE, &bob, &id).await;
        assert_eq!(status, 204, "leave answered {body}");
        let seen = get_one(&server, &bob, &id).await;
        assert_eq!(seen["member_count"], 2, "leaving twice counts once");
        assert_eq!(seen["is_member"], false);
        assert_eq!(count_in_list().await, 2);
    }
    // Leaving without ever joining is just as quiet.
    let (dave, _) = server.register("dave").await;
    let (status, _) = membership(&server, Method::DELETE, &dave, &id).await;
    assert_eq!(status, 204);
    assert_eq!(get_one(&server, &dave, &id).await["member_count"], 2);
}

#[tokio::test]
async fn unknown_communities_are_not_found() {
    let server = TestServer::start().await;
    let (alice, _) = server.register("alice").await;
    let real = create_ok(&server, &alice, "Rustaceans", &[]).await["id"]
        .as_str()
        .expect("id")
        .parse::<i64>()
        .expect("numeric id");
    let missing = (real + 1000).to_string();
    for id in [missing.as_str(), "0", "-3", "abc", "99999999999999999999"] {
        let (status, body) = server
            .get(&format!("/api/v1/communities/{id}"), Some(&alice))
            .await;
        assert_error(status, &body, 404, "not_found");
        for method in [Method::PUT, Method::DELETE] {
            let (status, body) = membership(&server, method.clone(), &alice, id).await;
            assert_error(status, &body, 404, "not_found");
        }
    }
}

#[tokio::test]
async fn text_and_tag_filters_narrow_the_list() {
    let server = TestServer::start().await;
    let (alice, _) = server.register("alice").await;
    for (name, description, tags) in [
        ("Rust Tokyo", "Async RUST meetups", vec!["rust", "tokyo"]),
        ("Gophers", "We like rust too", vec!["go"]),
        ("100% Uptime", "ops_people", vec!["ops", "rust"]),
        ("1000 Uptimes", "opsXpeople", vec!["ops"]),
    ] {
        let (status, body) = create(
            &server,
            &alice,
            json!({"name": name, "description": description, "tags": tags}),
        )
        .await;
        assert_eq!(status, 201, "create {name} answered {body}");
    }
    let cases: [(&Query, &[&str]); 9] = [
        (&[("q", "RuSt")], &["Gophers", "Rust Tokyo"]),
        (&[("q", "  tokyo ")], &["Rust Tokyo"]),
        (&[("q", "100%")], &["100% Uptime"]),
        (&[("q", "ops_")], &["100% Uptime"]),
        // `%` sorts before `0`: names order by code point, ignoring case.
        (
            &[("q", "")],
            &["100% Uptime", "1000 Uptimes", "Gophers", "Rust Tokyo"],
        ),
        (&[("tag", "rust")], &["100% Uptime", "Rust Tokyo"]),
        (&[("tag", "ops"), ("q", "uptimes")], &["1000 Uptimes"]),
        (&[("tag", "go"), ("q", "tokyo")], &[]),
        (&[("tag", "nobody")], &[]),
    ];
    for (query, want) in cases {
        let (names, cursor) = list_names(&server, &alice, query).await;
        assert_eq!(names, want, "query {query:?}");
        assert_eq!(cursor, None, "query {query:?}");
    }
    let long_q = "q".repeat(101);
    let (status, body) = list(&server, &alice, &[("q", &long_q)]).await;
    assert_bad_field(status, &body, "q");
    let long_tag = "t".repeat(31);
    let (status, body) = list(&server, &alice, &[("tag", &long_tag)]).await;
    assert_bad_field(status, &body, "tag");
}

#[tokio::test]
async fn paging_by_name_survives_inserts_between_pages() {
    let server = TestServer::start().await;
    let (alice, _) = server.register("alice").await;
    let originals = [
        "kilo", "Bravo", "juliet", "Alpha", "hotel", "echo", "Golf", "delta", "Charlie", "india",
    ];
    for name in originals {
        create_ok(&server, &alice, name, &[]).await;
    }

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "3")];
        if let Some(cursor) = cursor.as_deref() {
            query.push(("cursor", cursor));
        }
        let (names, next) = list_names(&server, &alice, &query).await;
        assert!(names.len() <= 3, "page {pages}: {names:?}");
        seen.extend(names);
        pages += 1;
        // After the first page: one name sorting before the cursor (never
        // shown, as it belongs to pages already served) and one after it
        // (shown once, in its place).
        if pages == 1 {
            create_ok(&server, &alice, "Aardvark", &[]).await;
            create_ok(&server, &alice, "Falcon", &[]).await;
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(
        seen,
        [
            "Alpha", "Bravo", "Charlie", "delta", "echo", "Falcon", "Golf", "hotel", "india",
            "juliet", "kilo"
        ],
        "every community once, in name order, across {pages} pages"
    );
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    assert_eq!(pages, 4);

    let (all, none) = list_names(&server, &alice, &[("limit", "100")]).await;
    assert_eq!(all.len(), 12);
    assert_eq!(all[0], "Aardvark");
    assert_eq!(none, None);

    for (query, field) in [
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "101")], "limit"),
        (vec![("cursor", "not a cursor")], "cursor"),
        (vec![("cursor", "MTIz")], "cursor"),
    ] {
        let (status, body) = list(&server, &alice, &query).await;
        assert_bad_field(status, &body, field);
    }
}

#[tokio::test]
async fn the_core_flow_runs_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    let (alice, alice_id) = server.register("alice").await;
    let (bob, _) = server.register("bob").await;

    let created = create_ok(&server, &alice, "Rustaceans", &["rust"]).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["owner_id"], alice_id.as_str());
    assert_eq!(created["member_count"], 1);
    assert_eq!(created["room_id"], format!("community:{id}"));
    create_ok(&server, &bob, "Über Café", &["coffee"]).await;
    create_ok(&server, &bob, "gophers", &["go"]).await;

    for clash in ["Rustaceans", "RUSTACEANS", "über CAFÉ"] {
        let (status, body) = create(&server, &bob, json!({"name": clash})).await;
        assert_error(status, &body, 409, "conflict");
    }

    for _ in 0..2 {
        let (status, body) = membership(&server, Method::PUT, &bob, &id).await;
        assert_eq!(status, 204, "join answered {body}");
    }
    let seen = get_one(&server, &bob, &id).await;
    assert_eq!(seen["member_count"], 2);
    assert_eq!(seen["is_member"], true);
    for _ in 0..2 {
        let (status, body) = membership(&server, Method::DELETE, &bob, &id).await;
        assert_eq!(status, 204, "leave answered {body}");
    }
    let seen = get_one(&server, &bob, &id).await;
    assert_eq!(seen["member_count"], 1);
    assert_eq!(seen["is_member"], false);
    let (status, body) = membership(&server, Method::PUT, &bob, "424242").await;
    assert_error(status, &body, 404, "not_found");

    let (first, cursor) = list_names(&server, &bob, &[("limit", "2")]).await;
    assert_eq!(first, ["gophers", "Rustaceans"]);
    let cursor = cursor.expect("a second page");
    let (rest, end) = list_names(&server, &bob, &[("limit", "2"), ("cursor", &cursor)]).await;
    assert_eq!(rest, ["Über Café"]);
    assert_eq!(end, None);
    let (found, _) = list_names(&server, &bob, &[("q", "RUST"), ("tag", "rust")]).await;
    assert_eq!(found, ["Rustaceans"]);
    server.shutdown().await;
}
