//! Suspending accounts against the real server, on SQLite and Postgres:
//! staff suspend users within their rank, the suspended user's sockets
//! close with 4010 (on the other node of a cluster too), their tokens and
//! logins answer 403 until the suspension ends or is lifted, and every
//! suspension is audited. Staff list users by name, role and suspension.

use std::time::Duration;

use crate::common::cluster::{Cluster, NodeKind, Settings};
use crate::common::json::{assert_bad_field, assert_error, keys, parse_time};
use crate::common::services::shared_redis;
use crate::common::{Api, Ended, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const ADMIN: &str = "root_admin";

fn in_secs(secs: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&Rfc3339)
        .expect("format a time")
}

async fn suspend(api: &Api, token: &str, user_id: &str, body: Value) -> (u16, Value) {
    api.post(
        &format!("/api/v1/admin/users/{user_id}/suspend"),
        Some(token),
        body,
    )
    .await
}

async fn unsuspend(api: &Api, token: &str, user_id: &str) -> (u16, Value) {
    api.delete(&format!("/api/v1/admin/users/{user_id}/suspend"), token)
        .await
}

/// The newest audit entries, newest first.
async fn audit(api: &Api, admin: &str) -> Vec<Value> {
    let (items, _) = api.page("/api/v1/admin/audit?limit=100", admin).await;
    items
}

/// The listed profile of `user_id` per GET /admin/users.
async fn listed(api: &Api, token: &str, user_id: &str) -> Value {
    let (items, _) = api.page("/api/v1/admin/users?limit=100", token).await;
    items
        .into_iter()
        .find(|u| u["id"] == user_id)
        .unwrap_or_else(|| panic!("user {user_id} is listed"))
}

/// Staff, a member with an open socket, the suspension and everything it
/// does, then lifting it.
async fn suspension_round_trip(server: &TestServer) {
    let (admin, _) = server.admin(ADMIN).await;
    let (moderator, mod_id) = server.register("mod_mia").await;
    server.set_role(&admin, &mod_id, "moderator").await;
    let (mut socket, old_token, alice_id) = server.user("alice").await;
    let second_token = server.login("alice").await;

    let until = in_secs(3600);
    let (status, body) = suspend(
        server,
        &moderator,
        &alice_id,
        json!({"until": until, "reason": "spam in three rooms"}),
    )
    .await;
    assert_eq!(status, 204, "suspend: {body}");
    assert_eq!(
        socket.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4010)
    );

    for token in [&old_token, &second_token] {
        let (status, body) = server.get("/api/v1/me", Some(token)).await;
        let message = assert_error(status, &body, 403, "forbidden");
        assert!(message.starts_with("suspended until "), "{message}");
    }
    let (status, body) = server
        .login_with("alice", crate::common::api::PASSWORD)
        .await;
    let message = assert_error(status, &body, 403, "forbidden");
    let shown = message
        .strip_prefix("suspended until ")
        .unwrap_or_else(|| panic!("the end is named: {message}"));
    let shown = OffsetDateTime::parse(shown, &Rfc3339).expect("an RFC 3339 end");
    let wanted = OffsetDateTime::parse(&until, &Rfc3339).unwrap();
    assert!(
        (shown - wanted).abs() < time::Duration::seconds(1),
        "{message}"
    );
    // A wrong password is told as wrong, not as suspended.
    let (status, body) = server.login_with("alice", "not the password").await;
    assert_error(status, &body, 401, "unauthenticated");

    let shown = listed(server, &moderator, &alice_id).await;
    assert_eq!(
        keys(&shown),
        [
            "bio",
            "created_at",
            "display_name",
            "handle",
            "id",
            "role",
            "suspended_until",
            "tags"
        ]
    );
    let listed_until = parse_time(&shown["suspended_until"]);
    assert!((listed_until - wanted).abs() < time::Duration::seconds(1));
    assert!(listed(server, &moderator, &mod_id).await["suspended_until"].is_null());

    let entries = audit(server, &admin).await;
    let entry = &entries[0];
    assert_eq!(entry["action"], "user.suspend", "{entries:?}");
    assert_eq!(entry["actor_id"], json!(mod_id));
    assert_eq!(entry["target"], json!(format!("user:{alice_id}")));
    assert_eq!(entry["data"]["reason"], "spam in three rooms");
    let audited = parse_time(&entry["data"]["until"]);
    assert!((audited - wanted).abs() < time::Duration::seconds(1));

    let (status, body) = unsuspend(server, &moderator, &alice_id).await;
    assert_eq!(status, 204, "lift: {body}");
    // The ended sessions stay ended: alice logs in again.
    let (status, body) = server.get("/api/v1/me", Some(&old_token)).await;
    assert_error(status, &body, 401, "unauthenticated");
    let fresh = server.login("alice").await;
    let mut socket = server.client(&fresh).await;
    socket.ok(json!({"type": "ping"})).await;
    assert!(listed(server, &moderator, &alice_id).await["suspended_until"].is_null());
    let entries = audit(server, &admin).await;
    assert_eq!(entries[0]["action"], "user.unsuspend");
    assert_eq!(entries[0]["actor_id"], json!(mod_id));
    assert_eq!(entries[0]["target"], json!(format!("user:{alice_id}")));
    socket.close().await;
}

#[tokio::test]
async fn a_suspension_ends_sessions_closes_sockets_and_refuses_logins_until_lifted() {
    let server = TestServer::start().await;
    suspension_round_trip(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_suspension_ends_sessions_closes_sockets_and_refuses_logins_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    suspension_round_trip(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_suspension_without_an_end_says_suspended_and_lists_the_last_time() {
    let server = TestServer::start().await;
    let (admin, _) = server.admin(ADMIN).await;
    let (token, bob_id) = server.register("bob").await;
    let (status, body) = suspend(&server, &admin, &bob_id, json!({"reason": "threats"})).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.login_with("bob", crate::common::api::PASSWORD).await;
    assert_eq!(assert_error(status, &body, 403, "forbidden"), "suspended");
    let (status, body) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(assert_error(status, &body, 403, "forbidden"), "suspended");
    assert_eq!(
        listed(&server, &admin, &bob_id).await["suspended_until"],
        "9999-12-31T23:59:59.999Z"
    );
    assert!(audit(&server, &admin).await[0]["data"]["until"].is_null());
    // A hello with the old token is refused and the socket closed.
    let mut socket = crate::common::WsClient::connect(&server).await;
    socket
        .send(json!({"type": "hello", "ref": "h", "token": token}))
        .await;
    assert_eq!(
        socket.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4010)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_suspension_that_has_run_out_lets_the_user_back() {
    let server = TestServer::start().await;
    let (admin, _) = server.admin(ADMIN).await;
    let (_, carol_id) = server.register("carol").await;
    let (status, body) = suspend(
        &server,
        &admin,
        &carol_id,
        json!({"until": in_secs(2), "reason": "cool off"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = server
        .login_with("carol", crate::common::api::PASSWORD)
        .await;
    assert_eq!(status, 403);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    server.login("carol").await;
    assert!(listed(&server, &admin, &carol_id).await["suspended_until"].is_null());
    server.shutdown().await;
}

async fn who_may_suspend_whom(server: &TestServer) {
    let (admin, admin_id) = server.admin(ADMIN).await;
    let (moderator, mod_id) = server.register("mod_mia").await;
    let (other_mod, other_mod_id) = server.register("mod_max").await;
    server.set_role(&admin, &mod_id, "moderator").await;
    server.set_role(&admin, &other_mod_id, "moderator").await;
    let (member, member_id) = server.register("dave").await;
    let (_, erin_id) = server.register("erin").await;
    let body = || json!({"reason": "testing the rules"});

    // Members may do none of it.
    for (status, body) in [
        suspend(server, &member, &erin_id, body()).await,
        unsuspend(server, &member, &erin_id).await,
        server.get("/api/v1/admin/users", Some(&member)).await,
    ] {
        assert_error(status, &body, 403, "forbidden");
    }
    // Moderators suspend members only, and never themselves.
    for target in [&other_mod_id, &admin_id, &mod_id] {
        let (status, answer) = suspend(server, &moderator, target, body()).await;
        assert_error(status, &answer, 403, "forbidden");
    }
    let (status, answer) = unsuspend(server, &moderator, &other_mod_id).await;
    assert_error(status, &answer, 403, "forbidden");
    // Admins suspend moderators too, but no admin and not themselves.
    let (status, answer) = suspend(server, &admin, &admin_id, body()).await;
    assert_error(status, &answer, 403, "forbidden");
    let (status, answer) = suspend(server, &admin, &other_mod_id, body()).await;
    assert_eq!(status, 204, "{answer}");
    let (status, answer) = server.get("/api/v1/me", Some(&other_mod)).await;
    assert_error(status, &answer, 403, "forbidden");
    let (status, answer) = suspend(server, &moderator, &member_id, body()).await;
    assert_eq!(status, 204, "{answer}");

    // Unknown users, and ids that cannot be users.
    for id in ["424242", "nope", "0"] {
        let (status, answer) = suspend(server, &moderator, id, body()).await;
        assert_error(status, &answer, 404, "not_found");
        let (status, answer) = unsuspend(server, &moderator, id).await;
        assert_error(status, &answer, 404, "not_found");
    }

    // Bad input names its field.
    for (bad, field) in [
        (json!({"until": in_secs(-60), "reason": "x"}), "until"),
        (json!({"until": "next week", "reason": "x"}), "until"),
        (
            json!({"until": "+10000-01-01T00:00:00Z", "reason": "x"}),
            "until",
        ),
        (json!({"reason": ""}), "reason"),
        (json!({"reason": "   "}), "reason"),
        (json!({"reason": "x".repeat(501)}), "reason"),
    ] {
        let (status, answer) = suspend(server, &admin, &erin_id, bad.clone()).await;
        assert_bad_field(status, &answer, field);
    }
    let (status, answer) = suspend(server, &admin, &erin_id, json!({"until": in_secs(60)})).await;
    assert_error(status, &answer, 400, "bad_request");
    // Erin was never suspended by any of that.
    server.login("erin").await;
}

#[tokio::test]
async fn staff_suspend_within_their_rank_and_bad_input_is_refused() {
    let server = TestServer::start().await;
    who_may_suspend_whom(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn staff_suspend_within_their_rank_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    who_may_suspend_whom(&server).await;
    server.shutdown().await;
}

async fn handles(api: &Api, token: &str, query: &[(&str, &str)]) -> Vec<String> {
    let (status, page) = api.get_query("/api/v1/admin/users", token, query).await;
    assert_eq!(status, 200, "{query:?}: {page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["handle"].as_str().expect("handle").to_owned())
        .collect()
}

async fn listing_filters(server: &TestServer) {
    let (admin, _) = server.admin(ADMIN).await;
    let (moderator, mod_id) = server.register("mod_mia").await;
    server.set_role(&admin, &mod_id, "moderator").await;
    let (_, ramen_id) = server.register("ramen_fan").await;
    server.register("ramen_cook").await;
    let (status, renamed) = server
        .patch(
            "/api/v1/me",
            &server.login("ramen_cook").await,
            json!({"display_name": "Noodle Master"}),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    server.register("sushi_fan").await;
    let (status, body) = suspend(
        server,
        &moderator,
        &ramen_id,
        json!({"reason": "spam", "until": in_secs(600)}),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    assert_eq!(
        handles(server, &moderator, &[]).await,
        ["sushi_fan", "ramen_cook", "ramen_fan", "mod_mia", ADMIN],
        "newest account first"
    );
    assert_eq!(
        handles(server, &moderator, &[("q", "RAMEN")]).await,
        ["ramen_cook", "ramen_fan"]
    );
    assert_eq!(
        handles(server, &moderator, &[("q", "noodle")]).await,
        ["ramen_cook"],
        "display names match too"
    );
    assert_eq!(
        handles(server, &moderator, &[("q", "_fan")]).await,
        ["sushi_fan", "ramen_fan"],
        "`_` matches itself only"
    );
    assert!(handles(server, &moderator, &[("q", "%")]).await.is_empty());
    assert_eq!(
        handles(server, &moderator, &[("role", "moderator")]).await,
        ["mod_mia"]
    );
    assert_eq!(
        handles(server, &moderator, &[("role", "admin")]).await,
        [ADMIN]
    );
    assert_eq!(
        handles(server, &moderator, &[("suspended", "true")]).await,
        ["ramen_fan"]
    );
    assert_eq!(
        handles(server, &moderator, &[("suspended", "false"), ("q", "fan")]).await,
        ["sushi_fan"]
    );

    // Pages of two walk the same list.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "2".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, page) = server
            .get_query("/api/v1/admin/users", &moderator, &pairs)
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        walked.extend(items.iter().map(|u| u["handle"].clone()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        walked,
        ["sushi_fan", "ramen_cook", "ramen_fan", "mod_mia", ADMIN]
    );

    let long = "x".repeat(65);
    for (query, field) in [
        (vec![("role", "root")], "role"),
        (vec![("suspended", "yes")], "suspended"),
        (vec![("q", long.as_str())], "q"),
        (vec![("limit", "0")], "limit"),
        (vec![("cursor", "!!")], "cursor"),
    ] {
        let (status, body) = server
            .get_query("/api/v1/admin/users", &moderator, &query)
            .await;
        assert_bad_field(status, &body, field);
    }
    let (status, body) = server
        .call(Method::GET, "/api/v1/admin/users", None, None)
        .await;
    assert_error(status, &body, 401, "unauthenticated");
}

#[tokio::test]
async fn staff_list_users_by_name_role_and_suspension() {
    let server = TestServer::start().await;
    listing_filters(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn staff_list_users_by_name_role_and_suspension_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;
    listing_filters(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_closes_the_users_socket_on_the_other_node() {
    // No sweep within the test: the bus carries the close.
    let settings = Settings {
        revocation_check_secs: 3_600,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, shared_redis().await, settings).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (admin, _) = n1.admin(ADMIN).await;
    let (token, frank_id) = n2.register("frank").await;
    let mut far = n2.client(&token).await;
    let mut near = n1.client(&token).await;

    let (status, body) = suspend(n1, &admin, &frank_id, json!({"reason": "raids"})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        far.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4010)
    );
    assert_eq!(
        near.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4010)
    );
    let (status, body) = n2.login_with("frank", crate::common::api::PASSWORD).await;
    assert_eq!(assert_error(status, &body, 403, "forbidden"), "suspended");
}

const JWT_SECRET: &str = "hs256-test-secret-that-is-long-enough-for-rfc7518";

/// A server that trusts HS256 JWTs signed with [`JWT_SECRET`], sweeping
/// for revocations every second.
async fn sso_server() -> TestServer {
    TestServer::start_with(|config| {
        config.jwt_secret = Some(meshi::config::Secret::new(JWT_SECRET));
        config.revocation_check_secs = 1;
    })
    .await
}

fn jwt(sub: &str) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "iat": now, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).expect("an HMAC key"),
    )
    .expect("sign HS256")
}

/// The id of the user a JWT signs in, created on first sight.
async fn jwt_user(server: &TestServer, token: &str) -> String {
    let (status, me) = server.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    me["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_jwt_answers_403_while_its_user_is_suspended_and_works_once_lifted() {
    let server = sso_server().await;
    let (admin, _) = server.admin(ADMIN).await;
    let token = jwt("idp|grace");
    let user_id = jwt_user(&server, &token).await;
    let mut socket = server.client(&token).await;

    let (status, body) = suspend(
        &server,
        &admin,
        &user_id,
        json!({"until": in_secs(600), "reason": "spam"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        socket.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4010)
    );
    let (status, body) = server.get("/api/v1/me", Some(&token)).await;
    let message = assert_error(status, &body, 403, "forbidden");
    assert!(message.starts_with("suspended until "), "{message}");

    let (status, body) = unsuspend(&server, &admin, &user_id).await;
    assert_eq!(status, 204, "{body}");
    // Nothing was stored for the JWT, so nothing of it was revoked.
    assert_eq!(jwt_user(&server, &token).await, user_id);
    server.shutdown().await;
}

#[tokio::test]
async fn the_sweep_closes_sockets_of_a_suspension_no_bus_message_announced() {
    let server = sso_server().await;
    let token = jwt("idp|quiet");
    let user_id: i64 = jwt_user(&server, &token).await.parse().expect("numeric id");
    let mut socket = server.client(&token).await;
    socket.ok(json!({"type": "ping"})).await;

    // Written straight to the database, as if the node that took the
    // suspension had published to a bus this node never heard. A JWT
    // socket has no session for the session sweep to find.
    let store = meshi::store::Store::connect(&server.config.database_url)
        .await
        .expect("open the server's database");
    let target = format!("user:{user_id}");
    let now = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let suspended = store
        .suspend_user(
            user_id,
            "member",
            now + 600_000,
            "quietly",
            meshi::store::NewAudit {
                actor_id: None,
                action: "user.suspend",
                target: &target,
                data: "{}",
                now,
            },
        )
        .await
        .expect("suspend");
    assert!(
        matches!(suspended, meshi::store::Suspension::Done(_)),
        "{suspended:?}"
    );
    store.close().await;
    assert_eq!(
        socket.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4010)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_suspension_judged_by_a_role_the_user_no_longer_has_writes_nothing() {
    let server = TestServer::start().await;
    let (token, user_id) = server.register("henry").await;
    let store = meshi::store::Store::connect(&server.config.database_url)
        .await
        .expect("open the server's database");
    let user_id: i64 = user_id.parse().expect("numeric id");
    let target = format!("user:{user_id}");
    let now = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let audit = meshi::store::NewAudit {
        actor_id: None,
        action: "user.suspend",
        target: &target,
        data: "{}",
        now,
    };
    // Judged while henry was taken for a moderator; he is a member.
    let outcome = store
        .suspend_user(user_id, "moderator", now + 600_000, "raced", audit)
        .await
        .expect("suspend");
    assert!(
        matches!(outcome, meshi::store::Suspension::RoleChanged),
        "{outcome:?}"
    );
    let outcome = store
        .suspend_user(424_242, "member", now + 600_000, "nobody", audit)
        .await
        .expect("suspend");
    assert!(
        matches!(outcome, meshi::store::Suspension::NoSuchUser),
        "{outcome:?}"
    );
    store.close().await;
    let (status, body) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "henry's session still works: {body}");
    server.shutdown().await;
}
