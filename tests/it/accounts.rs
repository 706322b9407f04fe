//! Accounts over REST against the real server: register, login, the
//! caller's profile, logout, and the error shape every failure shares.

use crate::common::api::send;
use crate::common::json::{assert_error, keys, parse_time};
use crate::common::TestServer;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use time::OffsetDateTime;

async fn register(server: &TestServer, body: Value) -> (u16, Value) {
    server.post("/api/v1/auth/register", None, body).await
}

fn valid(handle: &str) -> Value {
    json!({"handle": handle, "password": "password123", "display_name": "Valid Name"})
}

#[tokio::test]
async fn register_answers_201_with_token_and_full_profile() {
    let server = TestServer::start().await;
    let before = OffsetDateTime::now_utc();
    let (status, body) = register(
        &server,
        json!({"handle": "alice_01", "password": "password123", "display_name": "Alice A."}),
    )
    .await;
    assert_eq!(status, 201, "register answered {body}");

    assert_eq!(keys(&body), ["token", "user"], "register body {body}");
    let token = body["token"].as_str().expect("token is a string");
    assert!(token.len() >= 32, "token looks random enough: {token}");

    assert_eq!(
        keys(&body["user"]),
        [
            "bio",
            "created_at",
            "display_name",
            "handle",
            "id",
            "role",
            "tags"
        ],
        "user fields in {body}"
    );
    let id = body["user"]["id"].as_str().expect("id is a string");
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "id is a numeric string: {id}"
    );
    assert_eq!(body["user"]["handle"], "alice_01");
    assert_eq!(body["user"]["display_name"], "Alice A.");
    assert_eq!(body["user"]["bio"], "");
    assert_eq!(body["user"]["tags"], json!([]));
    assert_eq!(body["user"]["role"], "member");
    let created = parse_time(&body["user"]["created_at"]);
    let slack = time::Duration::seconds(5);
    assert!(
        created >= before - slack && created <= OffsetDateTime::now_utc() + slack,
        "created_at {created} is about now"
    );

    let (status, me) = server.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, 200, "the new token works: {me}");
    assert_eq!(me, body["user"], "/me shows the registered profile");

    let (_, second) = register(&server, valid("bob_02")).await;
    let second_id = second["user"]["id"].as_str().expect("id");
    assert_ne!(second_id, id, "each user has their own id");
    assert_ne!(second["token"], body["token"], "each token is new");
    server.shutdown().await;
}

#[tokio::test]
async fn duplicate_handle_is_409_conflict() {
    let server = TestServer::start().await;
    let (status, _) = register(&server, valid("dupe")).await;
    assert_eq!(status, 201);
    let (status, body) = register(
        &server,
        json!({"handle": "dupe", "password": "another-password", "display_name": "Other"}),
    )
    .await;
    assert_error(status, &body, 409, "conflict");

    // The first owner keeps the handle and the password.
    let (status, body) = server.login_with("dupe", "password123").await;
    assert_eq!(status, 200, "login as the first owner: {body}");
    assert_eq!(body["user"]["display_name"], "Valid Name");
    server.shutdown().await;
}

#[tokio::test]
async fn register_validation_names_the_field() {
    let server = TestServer::start().await;
    let long_password = "p".repeat(129);
    let long_name = "n".repeat(51);
    let long_handle = "h".repeat(33);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "handle of 2 chars",
            json!({"handle": "ab", "password": "password123", "display_name": "X"}),
            "handle",
        ),
        (
            "handle of 33 chars",
            json!({"handle": long_handle, "password": "password123", "display_name": "X"}),
            "handle",
        ),
        (
            "handle with uppercase",
            json!({"handle": "Alice", "password": "password123", "display_name": "X"}),
            "handle",
        ),
        (
            "handle with a dash",
            json!({"handle": "al-ice", "password": "password123", "display_name": "X"}),
            "handle",
        ),
        (
            "handle with a space",
            json!({"handle": "al ice", "password": "password123", "display_name": "X"}),
            "handle",
        ),
        (
            "handle with non-ASCII",
            json!({"handle": "alicé", "password": "password123", "display_name": "X"}),
            "handle",
        ),
        (
            "empty handle",
            json!({"handle": "", "password": "password123", "display_name": "X"}),
            "handle",
        ),
        (
            "password of 7 chars",
            json!({"handle": "valid_one", "password": "1234567", "display_name": "X"}),
            "password",
        ),
        (
            "password of 129 chars",
            json!({"handle": "valid_one", "password": long_password, "display_name": "X"}),
            "password",
        ),
        (
            "empty display_name",
            json!({"handle": "valid_one", "password": "password123", "display_name": ""}),
            "display_name",
        ),
        (
            "blank display_name",
            json!({"handle": "valid_one", "password": "password123", "display_name": "   "}),
            "display_name",
        ),
        (
            "display_name of 51 chars",
            json!({"handle": "valid_one", "password": "password123", "display_name": long_name}),
            "display_name",
        ),
        (
            "missing handle",
            json!({"password": "password123", "display_name": "X"}),
            "handle",
        ),
        (
            "missing password",
            json!({"handle": "valid_one", "display_name": "X"}),
            "password",
        ),
        (
            "missing display_name",
            json!({"handle": "valid_one", "password": "password123"}),
            "display_name",
        ),
    ];
    for (case, body, field) in cases {
        let (status, answer) = register(&server, body).await;
        let message = assert_error(status, &answer, 400, "bad_request");
        assert!(
            message.contains(field),
            "{case}: the message `{message}` names `{field}`"
        );
    }

    // Nothing was created by the refused requests: the handle is still free.
    let (status, body) = register(&server, valid("valid_one")).await;
    assert_eq!(status, 201, "valid_one is still free: {body}");

    // The edges of each range are accepted.
    let edges = [
        json!({"handle": "abc", "password": "12345678", "display_name": "Y"}),
        json!({"handle": "a".repeat(32), "password": "p".repeat(128), "display_name": "d".repeat(50)}),
        json!({"handle": "under_score_9", "password": "password123", "display_name": "Émile 🍜"}),
    ];
    for body in edges {
        let (status, answer) = register(&server, body.clone()).await;
        assert_eq!(status, 201, "{body} is valid, answered {answer}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_field_type_is_400_naming_the_field() {
    let server = TestServer::start().await;
    let (status, body) = register(
        &server,
        json!({"handle": 12345, "password": "password123", "display_name": "X"}),
    )
    .await;
    let message = assert_error(status, &body, 400, "bad_request");
    assert!(
        message.contains("handle"),
        "the message `{message}` names `handle`"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_json_is_400_bad_request() {
    let server = TestServer::start().await;
    for raw in [
        "{\"handle\": \"alice\",",
        "not json at all",
        "",
        "[1, 2, 3]",
    ] {
        let (status, body) = send(
            server
                .http
                .post(server.url("/api/v1/auth/register"))
                .header(CONTENT_TYPE, "application/json")
                .body(raw),
        )
        .await;
        assert_error(status, &body, 400, "bad_request");
    }
    let (status, body) = send(
        server
            .http
            .post(server.url("/api/v1/auth/login"))
            .header(CONTENT_TYPE, "application/json")
            .body("{oops"),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    server.shutdown().await;
}

#[tokio::test]
async fn non_json_content_type_is_400_bad_request() {
    let server = TestServer::start().await;
    let valid_json = valid("typed").to_string();
    let (status, body) = send(
        server
            .http
            .post(server.url("/api/v1/auth/register"))
            .header(CONTENT_TYPE, "text/plain")
            .body(valid_json.clone()),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = send(
        server
            .http
            .post(server.url("/api/v1/auth/register"))
            .body(valid_json),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = send(
        server
            .http
            .post(server.url("/api/v1/auth/register"))
            .form(&[("handle", "typed"), ("password", "password123")]),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");

    // None of them registered anything.
    let (status, body) = register(&server, valid("typed")).await;
    assert_eq!(status, 201, "typed is still free: {body}");
    server.shutdown().await;
}

#[tokio::test]
async fn non_json_content_type_message_names_the_content_type() {
    let server = TestServer::start().await;
    let (status, body) = send(
        server
            .http
            .post(server.url("/api/v1/auth/register"))
            .header(CONTENT_TYPE, "text/plain")
            .body(valid("typed").to_string()),
    )
    .await;
    let message = assert_error(status, &body, 400, "bad_request");
    assert!(
        message.to_ascii_lowercase().contains("content-type"),
        "the message `{message}` names the Content-Type header"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn login_issues_a_new_token() {
    let server = TestServer::start().await;
    let (first_token, id) = server.register("carol").await;
    let (status, body) = server.login_with("carol", "password123").await;
    assert_eq!(status, 200, "login answered {body}");
    let token = body["token"].as_str().expect("token");
    assert_ne!(token, first_token, "login issues a new token");
    assert_eq!(body["user"]["id"], id.as_str());
    assert_eq!(body["user"]["handle"], "carol");
    assert_eq!(body["user"]["role"], "member");

    for token in [token, first_token.as_str()] {
        let (status, me) = server.get("/api/v1/me", Some(token)).await;
        assert_eq!(status, 200, "both tokens work: {me}");
        assert_eq!(me["id"], id.as_str());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn login_refuses_wrong_password_and_unknown_handle_alike() {
    let server = TestServer::start().await;
    server.register("dave").await;
    let (status, body) = server.login_with("dave", "wrong-password").await;
    let wrong_password = assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = server.login_with("nobody_here", "password123").await;
    let unknown_handle = assert_error(status, &body, 401, "unauthenticated");
    assert_eq!(
        wrong_password, unknown_handle,
        "the answers do not tell which handles exist"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn me_needs_a_valid_bearer_token() {
    let server = TestServer::start().await;
    let (token, id) = server.register("erin").await;
    let (status, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "me answered {me}");
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["handle"], "erin");
    assert_eq!(me["display_name"], "erin");
    assert_eq!(me["bio"], "");
    assert_eq!(me["tags"], json!([]));
    assert_eq!(me["role"], "member");
    assert!(me["created_at"].is_string(), "created_at in {me}");

    let (status, body) = server.get("/api/v1/me", None).await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = server.get("/api/v1/me", Some("not-a-real-token")).await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = server.get("/api/v1/me", Some(&format!("{token}x"))).await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = send(
        server
            .http
            .get(server.url("/api/v1/me"))
            .header("Authorization", format!("Basic {token}")),
    )
    .await;
    assert_error(status, &body, 401, "unauthenticated");
    server.shutdown().await;
}

#[tokio::test]
async fn logout_ends_only_that_token() {
    let server = TestServer::start().await;
    let (first, id) = server.register("frank").await;
    let second = server.login("frank").await;

    let resp = server
        .http
        .post(server.url("/api/v1/auth/logout"))
        .bearer_auth(&first)
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status().as_u16(), 204);
    assert!(
        resp.bytes().await.expect("logout body").is_empty(),
        "204 has no body"
    );

    let (status, body) = server.get("/api/v1/me", Some(&first)).await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, me) = server.get("/api/v1/me", Some(&second)).await;
    assert_eq!(status, 200, "the other token still works: {me}");
    assert_eq!(me["id"], id.as_str());

    // Logging out again with the dead token is refused.
    let (status, body) = server
        .post("/api/v1/auth/logout", Some(&first), json!({}))
        .await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = server.post("/api/v1/auth/logout", None, json!({})).await;
    assert_error(status, &body, 401, "unauthenticated");
    server.shutdown().await;
}

#[tokio::test]
async fn body_over_64_kib_is_413_too_large() {
    let server = TestServer::start().await;
    let huge = "x".repeat(64 * 1024 + 1);
    let body = json!({"handle": "big_body", "password": "password123", "display_name": huge});
    for path in ["/api/v1/auth/register", "/api/v1/auth/login"] {
        let (status, answer) = server.post(path, None, body.clone()).await;
        assert_error(status, &answer, 413, "too_large");
    }
    let (status, answer) = register(&server, valid("big_body")).await;
    assert_eq!(status, 201, "nothing was created: {answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_route_is_404_not_found() {
    let server = TestServer::start().await;
    for path in ["/api/v1/nothing_here", "/nothing_here", "/api/v2/me"] {
        let (status, body) = server.get(path, None).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = server.post("/api/v1/auth/nothing", None, json!({})).await;
    assert_error(status, &body, 404, "not_found");
    server.shutdown().await;
}

/// The codes the contract lets an error body carry.
const CONTRACT_CODES: [&str; 9] = [
    "bad_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "conflict",
    "too_large",
    "rate_limited",
    "unavailable",
    "internal",
];

#[tokio::test]
async fn wrong_method_answers_in_the_error_shape() {
    let server = TestServer::start().await;
    let (status, body) = send(server.http.get(server.url("/api/v1/auth/register"))).await;
    assert_eq!(status, 405, "GET on a POST route (body {body})");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        CONTRACT_CODES.contains(&code.as_str()),
        "405 answers a contract code, got body {body}"
    );
    assert_error(status, &body, 405, &code);
    let (status, body) = send(server.http.put(server.url("/api/v1/me"))).await;
    assert_eq!(status, 405, "PUT on a route without it (body {body})");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        CONTRACT_CODES.contains(&code.as_str()),
        "405 answers a contract code, got body {body}"
    );
    assert_error(status, &body, 405, &code);
    server.shutdown().await;
}

#[tokio::test]
async fn listed_admin_handles_cannot_be_registered() {
    let server =
        TestServer::start_with(|config| config.admin_handles = vec!["root_admin".into()]).await;
    let (status, body) = register(&server, valid("root_admin")).await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = register(&server, valid("plain_user")).await;
    assert_eq!(status, 201, "register answered {body}");
    assert_eq!(body["user"]["role"], "member");
    // A handle that merely contains the admin handle is no admin, and free.
    let (status, body) = register(&server, valid("root_admin2")).await;
    assert_eq!(status, 201, "register answered {body}");
    assert_eq!(body["user"]["role"], "member");
    server.shutdown().await;
}
