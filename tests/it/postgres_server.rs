//! The whole server on Postgres, the `meshi migrate` command on both
//! backends, and the production-mode refusal of the built binary.
//!
//! The Postgres tests need the shared server (see `crate::common::postgres`) and
//! fail, saying how to start it, when it is down.

use std::path::Path;
use std::process::Command;

use crate::common::postgres::fresh_database;
use crate::common::{binary, test_config, TestServer};
use meshi::store::Store;
use serde_json::json;

/// Runs `meshi migrate` on `url` and asserts it succeeds.
async fn migrate_with_binary(dir: &Path, url: &str) {
    let mut command = binary::command(dir, &["migrate"]);
    command.env("MESHI_DATABASE_URL", url);
    let done = tokio::task::spawn_blocking(move || binary::run_with_timeout(command))
        .await
        .expect("the runner thread");
    assert!(
        done.status.success(),
        "`meshi migrate` failed with {}\nstdout:\n{}\nstderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
}

/// Asserts the schema is in place without migrating: a lookup and a write
/// through a store that never ran `migrate`.
async fn assert_schema_present(url: &str) {
    let store = Store::connect(url).await.expect("connect");
    let found = store
        .user_with_password("nobody")
        .await
        .expect("the users table exists after `meshi migrate`");
    assert!(found.is_none());
    store.close().await;
}

/// Starts a server on `url`, registers a user and checks it can log in.
async fn assert_server_runs_on(url: String, dir: tempfile::TempDir) {
    let server = TestServer::start_on(test_config(url), dir).await;
    let (status, ready) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "readyz answered {ready}");
    let (token, id) = server.register("after_migrate").await;
    let (status, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "me answered {me}");
    assert_eq!(me["id"], id.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn the_whole_server_runs_on_postgres() {
    let server = TestServer::start_on_postgres(|_| {}).await;

    let (status, ready) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "readyz answered {ready}");
    assert_eq!(ready["database"], "ok", "readyz body {ready}");

    let (mut alice, alice_token, alice_id) = server.user("alice").await;
    let (mut bob, _, bob_id) = server.user("bob").await;
    assert_ne!(alice_id, bob_id);

    // Accounts behave on Postgres as on SQLite.
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            None,
            json!({"handle": "alice", "password": "password123", "display_name": "again"}),
        )
        .await;
    assert_eq!(status, 409, "duplicate handle answered {body}");
    assert_eq!(body["error"]["code"], "conflict");
    let (status, body) = server.login_with("bob", "password123").await;
    assert_eq!(status, 200, "login answered {body}");
    assert_eq!(body["user"]["id"], bob_id.as_str());
    let (status, me) = server.get("/api/v1/me", Some(&alice_token)).await;
    assert_eq!(status, 200, "me answered {me}");
    assert_eq!(me["handle"], "alice");

    let created = alice
        .ok(json!({"type": "room.create", "name": "pg lunch", "topic": "sql"}))
        .await;
    let room_id = created["room"]["id"]
        .as_str()
        .expect("room id is a string")
        .to_owned();
    assert_eq!(created["room"]["member_count"], 1);
    assert_eq!(created["room"]["host_id"], alice_id.as_str());

    let joined = bob
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    assert_eq!(joined["room"]["member_count"], 2);
    let pushed = alice.next_of("room.member_joined").await;
    assert_eq!(pushed["user"]["id"], bob_id.as_str());

    let sent = alice
        .ok(json!({"type": "room.send", "room_id": room_id, "text": "hello from postgres"}))
        .await;
    assert_eq!(sent["seq"], 1);
    for client in [&mut alice, &mut bob] {
        let message = client.next_of("room.message").await;
        assert_eq!(message["text"], "hello from postgres");
        assert_eq!(message["seq"], 1);
        assert_eq!(message["from"]["id"], alice_id.as_str());
    }

    let (status, ready) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "still ready: {ready}");
    assert_eq!(ready["database"], "ok");
    alice.close().await;
    bob.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn meshi_migrate_prepares_a_postgres_database() {
    let url = fresh_database().await;
    let dir = tempfile::tempdir().expect("temp dir");
    migrate_with_binary(dir.path(), &url).await;
    assert_schema_present(&url).await;
    // Again on a migrated database: nothing to do, still a success.
    migrate_with_binary(dir.path(), &url).await;
    assert_server_runs_on(url, dir).await;
}

#[tokio::test]
async fn meshi_migrate_prepares_a_sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("migrated.db");
    let url = format!("sqlite://{}", file.display());
    migrate_with_binary(dir.path(), &url).await;
    assert!(file.exists(), "`meshi migrate` created {}", file.display());
    assert_schema_present(&url).await;
    migrate_with_binary(dir.path(), &url).await;
    assert_server_runs_on(url, dir).await;
}

/// Runs the binary as configured and asserts it refuses to start, quickly,
/// naming `MESHI_DATABASE_URL`.
fn assert_refuses_without_database_url(mut command: Command, dir: &Path) {
    command.env("MESHI_ADDR", "127.0.0.1:0");
    binary::assert_refused(command, &["MESHI_DATABASE_URL"], &[]);
    assert!(
        !dir.join("meshi.db").exists(),
        "a refused start touches no default database"
    );
}

#[test]
fn production_flag_refuses_to_start_without_database_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let command = binary::command(dir.path(), &["serve", "--production"]);
    assert_refuses_without_database_url(command, dir.path());
}

#[test]
fn production_env_refuses_to_start_without_database_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = binary::command(dir.path(), &["serve"]);
    command.env("MESHI_ENV", "production");
    assert_refuses_without_database_url(command, dir.path());
}

#[test]
fn production_env_refuses_bare_start_without_database_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = binary::command(dir.path(), &[]);
    command.env("MESHI_ENV", "production");
    assert_refuses_without_database_url(command, dir.path());
}
