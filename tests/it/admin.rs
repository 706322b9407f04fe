//! Roles, moderation and the audit log against the real server: admins
//! change roles, moderators close rooms for everyone inside (over real
//! sockets), every such action is audited, and everyone else is refused.

use std::time::Duration;

use crate::common::api::send;
use crate::common::json::{assert_error, keys, parse_time};
use crate::common::postgres::fresh_database;
use crate::common::{binary, test_config, TestServer};
use meshi::config::Config;
use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

const ADMIN: &str = "root_admin";

async fn set_role(server: &TestServer, token: &str, user_id: &str, body: Value) -> (u16, Value) {
    server
        .put_json(&format!("/api/v1/admin/users/{user_id}/role"), token, body)
        .await
}

async fn close_room(server: &TestServer, token: &str, room_id: &str) -> (u16, Value) {
    server
        .delete(&format!("/api/v1/admin/rooms/{room_id}"), token)
        .await
}

/// Every audit entry, newest first, walking the pages `limit` at a time.
async fn whole_audit(server: &TestServer, token: &str, limit: u32) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/v1/admin/audit?limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = server.get(&path, Some(token)).await;
        assert_eq!(status, 200, "audit page answered {page}");
        let items = page["items"].as_array().expect("items is an array");
        assert!(items.len() <= limit as usize, "page over its limit: {page}");
        entries.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(page["next_cursor"].is_null(), "next_cursor: {page}");
                return entries;
            }
        }
    }
    panic!("the audit log never ended");
}

/// Asserts the shape every audit entry has.
fn assert_entry_shape(entry: &Value) {
    assert_eq!(
        keys(entry),
        ["action", "actor_id", "created_at", "data", "id", "target"],
        "entry fields in {entry}"
    );
    assert!(
        entry["id"]
            .as_str()
            .is_some_and(|id| id.parse::<i64>().is_ok()),
        "{entry}"
    );
    assert!(
        entry["actor_id"].is_null() || entry["actor_id"].is_string(),
        "{entry}"
    );
    assert!(entry["data"].is_object(), "data is an object: {entry}");
    let created = parse_time(&entry["created_at"]);
    let age = OffsetDateTime::now_utc() - created;
    assert!(
        age < time::Duration::minutes(5) && age > -time::Duration::minutes(1),
        "{entry}"
    );
}

async fn admin_server() -> TestServer {
    TestServer::start_with(|config| config.admin_handles = vec![ADMIN.into()]).await
}

fn config_on(database_url: String, admin_handles: &[&str]) -> Config {
    let mut config = test_config(database_url);
    config.admin_handles = admin_handles.iter().map(|h| h.to_string()).collect();
    config
}

async fn role_of(server: &TestServer, token: &str) -> String {
    let (status, me) = server.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, 200, "me answered {me}");
    me["role"].as_str().expect("role").to_owned()
}

/// Runs `meshi admin ...` on the database at `url`, with `stdin` piped
/// in; returns its exit status, stdout and stderr.
fn meshi_admin(url: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = binary::command(std::path::Path::new("."), &["admin"])
        .args(args)
        .env("MESHI_DATABASE_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshi admin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("meshi admin finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_listed_admin_handle_cannot_be_registered_and_the_command_line_makes_it() {
    // No configuration, no admin: not even a handle that says so.
    let bare = TestServer::start().await;
    for handle in ["admin", "root", "root_admin"] {
        let (token, _) = bare.register(handle).await;
        assert_eq!(role_of(&bare, &token).await, "member", "{handle}");
    }
    bare.shutdown().await;

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("meshi.db").display());
    let server = TestServer::start_on(
        config_on(url.clone(), &[ADMIN]),
        tempfile::tempdir().expect("temp dir"),
    )
    .await;
    // The attacker who comes first gets nothing.
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            None,
            json!({"handle": ADMIN, "password": "attacker-pass", "display_name": "Root"}),
        )
        .await;
    let message = assert_error(status, &body, 409, "conflict");
    assert!(message.contains("reserved"), "{message}");
    let (status, _) = server.login_with(ADMIN, "attacker-pass").await;
    assert_eq!(status, 401, "no account was made");

    // The operator makes it, the password from a file.
    let password_file = dir.path().join("admin-password");
    std::fs::write(&password_file, "operator-secret-1\n").expect("write the password file");
    let password_path = password_file.display().to_string();
    let (ok, out, err) = meshi_admin(
        &url,
        &[
            "create",
            ADMIN,
            "--password-file",
            &password_path,
            "--display-name",
            "Root",
        ],
        "",
    );
    assert!(ok, "meshi admin create succeeds: {out}{err}");
    assert!(out.contains("created admin root_admin"), "{out}");
    assert!(!out.contains("operator-secret-1") && !err.contains("operator-secret-1"));
    let (status, body) = server.login_with(ADMIN, "operator-secret-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["user"]["display_name"], "Root");
    let admin_token = body["token"].as_str().expect("token").to_owned();
    let admin_id = body["user"]["id"].as_str().expect("id").to_owned();

    // Creating it again is refused, and says what to do instead.
    let (ok, _, err) = meshi_admin(&url, &["create", ADMIN], "another-password\n");
    assert!(!ok, "a taken handle is not created twice");
    assert!(err.contains("meshi admin promote"), "{err}");

    // The promotion is on the record, by no person.
    let entries = whole_audit(&server, &admin_token, 50).await;
    assert_eq!(entries.len(), 1, "one entry: {entries:?}");
    let entry = &entries[0];
    assert_entry_shape(entry);
    assert_eq!(entry["action"], "role.change");
    assert_eq!(entry["actor_id"], Value::Null);
    assert_eq!(entry["target"], format!("user:{admin_id}"));
    assert_eq!(
        entry["data"],
        json!({"from": "member", "to": "admin", "source": "command line"})
    );
    let (token, _) = server.register("carol").await;
    assert_eq!(role_of(&server, &token).await, "member");
    server.shutdown().await;
}

#[tokio::test]
async fn the_command_line_reads_the_password_from_stdin_and_promotes_existing_accounts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("meshi.db").display());
    let server = TestServer::start_on(
        config_on(url.clone(), &[]),
        tempfile::tempdir().expect("temp dir"),
    )
    .await;
    let (ok, out, err) = meshi_admin(&url, &["create", "night_admin"], "from-stdin-pw\r\n");
    assert!(ok, "{out}{err}");
    let (status, body) = server.login_with("night_admin", "from-stdin-pw").await;
    assert_eq!(
        status, 200,
        "the first line of stdin, without its line end: {body}"
    );
    assert_eq!(body["user"]["role"], "admin");

    // A too-short password is refused and makes nothing.
    let (ok, _, err) = meshi_admin(&url, &["create", "weak_admin"], "short\n");
    assert!(!ok && err.contains("password"), "{err}");
    let (status, _) = server.login_with("weak_admin", "short").await;
    assert_eq!(status, 401);

    let (token, id) = server.register("late_admin").await;
    assert_eq!(role_of(&server, &token).await, "member");
    let (ok, out, err) = meshi_admin(&url, &["promote", "late_admin"], "");
    assert!(ok, "{out}{err}");
    assert!(out.contains("now an admin"), "{out}");
    // Roles are read per request: the same token is now an admin's.
    assert_eq!(role_of(&server, &token).await, "admin");
    let (ok, out, _) = meshi_admin(&url, &["promote", "late_admin"], "");
    assert!(ok && out.contains("already"), "{out}");
    let (ok, _, err) = meshi_admin(&url, &["promote", "nobody_here"], "");
    assert!(!ok && err.contains("not found"), "{err}");

    let entries = whole_audit(&server, &token, 50).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries
        .iter()
        .any(|e| e["target"] == format!("user:{id}") && e["data"]["source"] == "command line"));
    server.shutdown().await;
}

#[tokio::test]
async fn admins_change_roles_and_each_change_is_audited() {
    let server = admin_server().await;
    let (admin_token, admin_id) = server.admin(ADMIN).await;
    let (carol_token, carol_id) = server.register("carol").await;

    let (status, body) = set_role(
        &server,
        &admin_token,
        &carol_id,
        json!({"role": "moderator"}),
    )
    .await;
    assert_eq!(status, 204, "promotion answered {body}");
    assert_eq!(body, Value::Null, "204 has no body");
    assert_eq!(role_of(&server, &carol_token).await, "moderator");
    let (_, public) = server
        .get(&format!("/api/v1/users/{carol_id}"), Some(&admin_token))
        .await;
    assert_eq!(public["role"], "moderator", "public profile {public}");

    let (status, _) = set_role(&server, &admin_token, &carol_id, json!({"role": "admin"})).await;
    assert_eq!(status, 204);
    assert_eq!(role_of(&server, &carol_token).await, "admin");
    // The new admin can act as one at once.
    let (status, _) = server.get("/api/v1/admin/audit", Some(&carol_token)).await;
    assert_eq!(status, 200);

    let (status, _) = set_role(&server, &carol_token, &carol_id, json!({"role": "member"})).await;
    assert_eq!(status, 204, "an admin may step down");
    assert_eq!(role_of(&server, &carol_token).await, "member");
    let (status, body) = server.get("/api/v1/admin/audit", Some(&carol_token)).await;
    assert_error(status, &body, 403, "forbidden");

    let entries = whole_audit(&server, &admin_token, 50).await;
    assert_eq!(
        entries.len(),
        4,
        "configured admin + three changes: {entries:?}"
    );
    for entry in &entries {
        assert_entry_shape(entry);
        assert_eq!(entry["action"], "role.change");
    }
    let changes: Vec<(Value, Value, Value)> = entries[..3]
        .iter()
        .map(|e| {
            (
                e["actor_id"].clone(),
                e["data"]["from"].clone(),
                e["data"]["to"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (json!(carol_id), json!("admin"), json!("member")),
            (json!(admin_id), json!("moderator"), json!("admin")),
            (json!(admin_id), json!("member"), json!("moderator")),
        ],
        "newest first, each with who did it and what it replaced"
    );
    for entry in &entries[..3] {
        assert_eq!(entry["target"], format!("user:{carol_id}"));
    }
    let ids: Vec<i64> = entries
        .iter()
        .map(|e| e["id"].as_str().expect("id").parse().expect("numeric id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn only_admins_change_roles() {
    let server = admin_server().await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (mod_token, mod_id) = server.register("mod_mia").await;
    let (member_token, member_id) = server.register("member_max").await;
    let (status, _) = set_role(&server, &admin_token, &mod_id, json!({"role": "moderator"})).await;
    assert_eq!(status, 204);
    let audit_before = whole_audit(&server, &admin_token, 100).await.len();

    for (who, token) in [("member", &member_token), ("moderator", &mod_token)] {
        for (target, role) in [
            (&member_id, "admin"),
            (&mod_id, "admin"),
            (&member_id, "moderator"),
        ] {
            let (status, body) = set_role(&server, token, target, json!({"role": role})).await;
            let message = assert_error(status, &body, 403, "forbidden");
            assert!(message.contains("role"), "{who}: {message}");
        }
    }
    assert_eq!(role_of(&server, &member_token).await, "member");
    assert_eq!(role_of(&server, &mod_token).await, "moderator");
    assert_eq!(
        whole_audit(&server, &admin_token, 100).await.len(),
        audit_before,
        "refused attempts change nothing"
    );

    let (status, body) = server
        .call(
            Method::PUT,
            &format!("/api/v1/admin/users/{member_id}/role"),
            None,
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) =
        set_role(&server, "not-a-token", &member_id, json!({"role": "admin"})).await;
    assert_error(status, &body, 401, "unauthenticated");
    assert_eq!(role_of(&server, &member_token).await, "member");
    server.shutdown().await;
}

#[tokio::test]
async fn role_changes_are_validated_and_unknown_users_are_404() {
    let server = admin_server().await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (member_token, member_id) = server.register("member_max").await;

    for bad in [
        json!({"role": "root"}),
        json!({"role": "Admin"}),
        json!({"role": ""}),
        json!({"role": " moderator"}),
    ] {
        let (status, body) = set_role(&server, &admin_token, &member_id, bad.clone()).await;
        let message = assert_error(status, &body, 400, "bad_request");
        assert!(message.contains("role"), "{bad} answered `{message}`");
    }
    for bad in [json!({}), json!({"role": 3}), json!({"role": null})] {
        let (status, body) = set_role(&server, &admin_token, &member_id, bad.clone()).await;
        let message = assert_error(status, &body, 400, "bad_request");
        assert!(message.contains("role"), "{bad} answered `{message}`");
    }
    let (status, body) = send(
        server
            .http
            .put(server.url(&format!("/api/v1/admin/users/{member_id}/role")))
            .bearer_auth(&admin_token)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    assert_eq!(
        role_of(&server, &member_token).await,
        "member",
        "nothing changed"
    );

    for unknown in ["999999", "0", "-4", "abc"] {
        let (status, body) =
            set_role(&server, &admin_token, unknown, json!({"role": "moderator"})).await;
        let message = assert_error(status, &body, 404, "not_found");
        assert!(message.contains("user"), "{unknown}: {message}");
    }
    let entries = whole_audit(&server, &admin_token, 100).await;
    assert_eq!(
        entries.len(),
        1,
        "only the admin made at start: {entries:?}"
    );

    // The route takes PUT only.
    let (status, body) = server
        .post(
            &format!("/api/v1/admin/users/{member_id}/role"),
            Some(&admin_token),
            json!({"role": "moderator"}),
        )
        .await;
    assert_error(status, &body, 405, "bad_request");
    server.shutdown().await;
}

#[tokio::test]
async fn moderators_close_rooms_for_everyone_inside() {
    let server = admin_server().await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (mod_token, mod_id) = server.register("mod_mia").await;
    let (status, _) = set_role(&server, &admin_token, &mod_id, json!({"role": "moderator"})).await;
    assert_eq!(status, 204);

    let (mut alice, _, alice_id) = server.user("alice").await;
    let (mut bob, _, _) = server.user("bob").await;
    let (mut watcher, _, _) = server.user("watcher").await;
    let created = alice
        .ok(json!({"type": "room.create", "name": "late ramen", "topic": "noodles"}))
        .await;
    let room_id = created["room"]["id"].as_str().expect("room id").to_owned();
    bob.ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    alice.next_of("room.member_joined").await;
    watcher.ok(json!({"type": "rooms.watch"})).await;

    let (status, body) = close_room(&server, &mod_token, &room_id).await;
    assert_eq!(status, 204, "close answered {body}");

    for (who, client) in [("host", &mut alice), ("member", &mut bob)] {
        let closed = client.next_of("room.closed").await;
        assert_eq!(
            closed,
            json!({"type": "room.closed", "room_id": room_id, "reason": "moderator"}),
            "{who} sees why"
        );
    }
    let changed = watcher
        .next_matching(|f| f["type"] == "rooms.changed" && f["closed"] == true)
        .await;
    assert_eq!(changed["room_id"], room_id.as_str(), "{changed}");

    let (status, rooms) = server.get("/api/v1/rooms", Some(&mod_token)).await;
    assert_eq!(status, 200);
    assert!(
        !rooms["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|r| r["id"] == room_id.as_str()),
        "the closed room is gone from {rooms}"
    );
    alice
        .err(
            json!({"type": "room.send", "room_id": room_id, "text": "still here?"}),
            "not_found",
        )
        .await;
    bob.err(
        json!({"type": "room.join", "room_id": room_id}),
        "not_found",
    )
    .await;
    let (status, body) = close_room(&server, &mod_token, &room_id).await;
    assert_error(status, &body, 404, "not_found");

    // Admins hold every moderator permission.
    let second = alice
        .ok(json!({"type": "room.create", "name": "second"}))
        .await;
    let second_id = second["room"]["id"].as_str().expect("room id").to_owned();
    let (status, _) = close_room(&server, &admin_token, &second_id).await;
    assert_eq!(status, 204);
    let closed = alice.next_of("room.closed").await;
    assert_eq!(closed["room_id"], second_id.as_str());
    assert_eq!(closed["reason"], "moderator");

    let entries = whole_audit(&server, &admin_token, 50).await;
    let closes: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "room.close")
        .collect();
    assert_eq!(closes.len(), 2, "two closes recorded: {entries:?}");
    for entry in &closes {
        assert_entry_shape(entry);
    }
    assert_eq!(closes[0]["target"], format!("room:{second_id}"));
    assert_eq!(closes[1]["target"], format!("room:{room_id}"));
    assert_eq!(closes[1]["actor_id"], mod_id.as_str());
    assert_eq!(closes[1]["data"]["name"], "late ramen");
    assert_eq!(closes[1]["data"]["member_count"], 2);
    assert_eq!(closes[1]["data"]["host_id"], alice_id.as_str());
    assert_eq!(closes[1]["data"]["kind"], "drop_in");

    // The sockets live on after their room is gone.
    alice.ok(json!({"type": "ping"})).await;
    bob.ok(json!({"type": "ping"})).await;
    alice.close().await;
    bob.close().await;
    watcher.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn members_cannot_close_rooms() {
    let server = admin_server().await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (mut alice, alice_token, _) = server.user("alice").await;
    let (mut bob, bob_token, _) = server.user("bob").await;
    let created = alice
        .ok(json!({"type": "room.create", "name": "mine"}))
        .await;
    let room_id = created["room"]["id"].as_str().expect("room id").to_owned();
    bob.ok(json!({"type": "room.join", "room_id": room_id}))
        .await;

    // Not even the host: closing for others is a moderator's power.
    for token in [&alice_token, &bob_token] {
        let (status, body) = close_room(&server, token, &room_id).await;
        let message = assert_error(status, &body, 403, "forbidden");
        assert!(message.contains("close rooms"), "{message}");
    }
    let (status, body) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/rooms/{room_id}"),
            None,
            None,
        )
        .await;
    assert_error(status, &body, 401, "unauthenticated");

    bob.assert_no("room.closed", Duration::from_millis(300))
        .await;
    let sent = bob
        .ok(json!({"type": "room.send", "room_id": room_id, "text": "still open"}))
        .await;
    assert_eq!(sent["seq"], 1);
    let entries = whole_audit(&server, &admin_token, 50).await;
    assert!(
        entries.iter().all(|e| e["action"] != "room.close"),
        "refusals are not closes: {entries:?}"
    );
    alice.close().await;
    bob.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn closing_an_unknown_room_is_404() {
    let server = admin_server().await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let long_id = "r".repeat(500);
    for room_id in ["r_no_such_room", "123", long_id.as_str()] {
        let (status, body) = close_room(&server, &admin_token, room_id).await;
        let message = assert_error(status, &body, 404, "not_found");
        assert!(message.contains("room"), "{message}");
    }
    let entries = whole_audit(&server, &admin_token, 50).await;
    assert!(
        entries.iter().all(|e| e["action"] != "room.close"),
        "{entries:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_audit_log_is_for_admins_and_pages_newest_first() {
    let server = admin_server().await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (mod_token, mod_id) = server.register("mod_mia").await;
    let (member_token, member_id) = server.register("member_max").await;
    let (status, _) = set_role(&server, &admin_token, &mod_id, json!({"role": "moderator"})).await;
    assert_eq!(status, 204);
    for role in [
        "moderator",
        "member",
        "moderator",
        "member",
        "admin",
        "member",
    ] {
        let (status, _) = set_role(&server, &admin_token, &member_id, json!({"role": role})).await;
        assert_eq!(status, 204);
    }
    // 1 configured admin + 1 + 6 changes.
    let all = whole_audit(&server, &admin_token, 100).await;
    assert_eq!(all.len(), 8, "{all:?}");
    for limit in [1, 3, 7, 8] {
        let paged = whole_audit(&server, &admin_token, limit).await;
        assert_eq!(paged, all, "pages of {limit} walk the same log");
    }
    let (status, page) = server
        .get("/api/v1/admin/audit?limit=3", Some(&admin_token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(3));
    assert!(page["next_cursor"].is_string(), "{page}");
    let (status, page) = server.get("/api/v1/admin/audit", Some(&admin_token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(8),
        "default limit covers 8"
    );
    assert!(page["next_cursor"].is_null());

    for query in ["limit=0", "limit=101", "cursor=not-a-cursor", "limit=x"] {
        let (status, body) = server
            .get(&format!("/api/v1/admin/audit?{query}"), Some(&admin_token))
            .await;
        assert_error(status, &body, 400, "bad_request");
    }
    for token in [&mod_token, &member_token] {
        let (status, body) = server.get("/api/v1/admin/audit", Some(token)).await;
        let message = assert_error(status, &body, 403, "forbidden");
        assert!(message.contains("audit"), "{message}");
    }
    let (status, body) = server.get("/api/v1/admin/audit", None).await;
    assert_error(status, &body, 401, "unauthenticated");
    server.shutdown().await;
}

#[tokio::test]
async fn roles_rooms_and_audit_work_on_postgres() {
    let url = fresh_database().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_on(config_on(url, &[ADMIN]), dir).await;
    let (admin_token, admin_id) = server.admin(ADMIN).await;
    assert_eq!(role_of(&server, &admin_token).await, "admin");
    let (mod_token, mod_id) = server.register("mod_mia").await;
    let (status, _) = set_role(&server, &admin_token, &mod_id, json!({"role": "moderator"})).await;
    assert_eq!(status, 204);
    let (status, body) = set_role(&server, &admin_token, "424242", json!({"role": "admin"})).await;
    assert_error(status, &body, 404, "not_found");

    let (mut alice, _, _) = server.user("alice").await;
    let created = alice
        .ok(json!({"type": "room.create", "name": "pg room"}))
        .await;
    let room_id = created["room"]["id"].as_str().expect("room id").to_owned();
    let (status, _) = close_room(&server, &mod_token, &room_id).await;
    assert_eq!(status, 204);
    let closed = alice.next_of("room.closed").await;
    assert_eq!(closed["reason"], "moderator");

    let all = whole_audit(&server, &admin_token, 100).await;
    let summary: Vec<(Value, Value, Value)> = all
        .iter()
        .map(|e| {
            (
                e["action"].clone(),
                e["actor_id"].clone(),
                e["target"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                json!("room.close"),
                json!(mod_id),
                json!(format!("room:{room_id}"))
            ),
            (
                json!("role.change"),
                json!(admin_id),
                json!(format!("user:{mod_id}"))
            ),
            (
                json!("role.change"),
                Value::Null,
                json!(format!("user:{admin_id}"))
            ),
        ]
    );
    for entry in &all {
        assert_entry_shape(entry);
    }
    assert_eq!(whole_audit(&server, &admin_token, 1).await, all);
    alice.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_role_changes_record_what_each_replaced() {
    let server = admin_server().await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (_, target_id) = server.register("contested").await;
    let roles = [
        "moderator",
        "admin",
        "member",
        "moderator",
        "admin",
        "member",
    ];
    let changes = roles
        .iter()
        .map(|role| set_role(&server, &admin_token, &target_id, json!({"role": role})));
    for (status, body) in futures_util::future::join_all(changes).await {
        assert_eq!(status, 204, "{body}");
    }
    // Read oldest first, each change's `from` is the previous one's `to`:
    // no two changes saw the same starting role.
    let mut entries = whole_audit(&server, &admin_token, 100).await;
    entries.retain(|e| e["target"] == format!("user:{target_id}"));
    entries.reverse();
    assert_eq!(entries.len(), roles.len());
    let mut current = json!("member");
    for entry in &entries {
        assert_eq!(entry["data"]["from"], current, "chain broken at {entry}");
        current = entry["data"]["to"].clone();
    }
    let (_, profile) = server
        .get(&format!("/api/v1/users/{target_id}"), Some(&admin_token))
        .await;
    assert_eq!(
        profile["role"], current,
        "the last recorded change is the role held"
    );
    server.shutdown().await;
}

/// Roles are read on every request, so a change needs no new token, and a
/// socket that said hello carries on.
#[tokio::test]
async fn role_changes_apply_to_the_next_request() {
    let server = admin_server().await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (mut mia, mia_token, mia_id) = server.user("mod_mia").await;
    let (mut alice, _, _) = server.user("alice").await;
    let created = alice.ok(json!({"type": "room.create", "name": "r"})).await;
    let room_id = created["room"]["id"].as_str().expect("room id").to_owned();

    let (status, _) = close_room(&server, &mia_token, &room_id).await;
    assert_eq!(status, 403);
    let (status, _) = set_role(&server, &admin_token, &mia_id, json!({"role": "moderator"})).await;
    assert_eq!(status, 204);
    let (status, _) = close_room(&server, &mia_token, &room_id).await;
    assert_eq!(status, 204, "the same token now carries the new role");
    assert_eq!(alice.next_of("room.closed").await["reason"], "moderator");
    mia.ok(json!({"type": "ping"})).await;

    let (status, _) = set_role(&server, &admin_token, &mia_id, json!({"role": "member"})).await;
    assert_eq!(status, 204);
    let again = alice.ok(json!({"type": "room.create", "name": "r2"})).await;
    let again_id = again["room"]["id"].as_str().expect("room id").to_owned();
    let (status, _) = close_room(&server, &mia_token, &again_id).await;
    assert_eq!(status, 403, "and loses it as soon as it is taken away");
    mia.close().await;
    alice.close().await;
    server.shutdown().await;
}
