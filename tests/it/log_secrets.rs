//! The logs of a whole session, at the most verbose filter there is, carry
//! none of the passwords or tokens used in it, and, written to a file, no
//! colour codes.

use std::time::Duration;

use crate::common::binary::{self, Running};
use crate::common::WsClient;
use serde_json::json;

async fn a_whole_session_leaves_no_secret_in_logs_at(filter: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = binary::command(dir.path(), &["serve"]);
    command.env("MESHI_LOG", filter).env(
        "MESHI_DATABASE_URL",
        format!("sqlite://{}", dir.path().join("logs.db").display()),
    );
    let running = Running::start(command, dir.path()).await;
    let passwords = ["Correct-Horse-41", "Battery-Staple-77"];
    let mut tokens = Vec::new();
    for (handle, password) in ["aiko", "bruno"].iter().zip(passwords) {
        let (status, made) = running.register_with(handle, password).await;
        assert_eq!(status, 201, "{made}");
        tokens.push(made["token"].as_str().expect("token").to_owned());
        let (status, again) = running.login_with(handle, password).await;
        assert_eq!(status, 200, "{again}");
        tokens.push(again["token"].as_str().expect("token").to_owned());
    }
    let mut aiko = WsClient::hello(&running, &tokens[1]).await;
    let mut bruno = WsClient::hello(&running, &tokens[3]).await;
    let created = aiko
        .ok(json!({"type": "room.create", "name": "log check"}))
        .await;
    let room_id = created["room"]["id"].as_str().expect("room id").to_owned();
    bruno
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    aiko.ok(json!({"type": "room.send", "room_id": room_id, "text": "hello there"}))
        .await;
    bruno
        .ok(json!({"type": "auth.refresh", "token": tokens[2]}))
        .await;
    // A bad token is logged about, but not shown either.
    let wrong = format!("{}x", tokens[0]);
    let mut stranger = WsClient::connect(&running).await;
    stranger
        .send(json!({"type": "hello", "ref": 1, "token": wrong}))
        .await;
    let _ = stranger.closed_with(Duration::from_secs(5)).await;
    running.logout(&tokens[1]).await;
    let _ = aiko.closed_with(Duration::from_secs(5)).await;
    bruno.close().await;

    let logs = running.stop();
    assert!(
        logs.contains("DEBUG") && logs.contains("socket closed"),
        "the filter {filter} logged the session verbosely:\n{logs}"
    );
    for secret in passwords
        .iter()
        .map(|p| p.to_string())
        .chain(tokens)
        .chain([wrong])
    {
        assert!(
            !logs.contains(&secret),
            "a secret is in the logs at {filter}: {}…",
            &secret[..6]
        );
    }
    assert!(
        !logs.contains('\u{1b}'),
        "logs written to a file carry no colour codes:\n{logs}"
    );
    eprintln!("{filter}: {} log lines, no secret", logs.lines().count());
}

#[tokio::test]
async fn no_secret_in_logs_at_trace() {
    a_whole_session_leaves_no_secret_in_logs_at("trace").await;
}

#[tokio::test]
async fn no_secret_in_logs_when_socket_and_http_crates_are_asked_for_trace() {
    a_whole_session_leaves_no_secret_in_logs_at(
        "debug,tungstenite=trace,tokio_tungstenite=trace,hyper=trace,hyper_util=trace,axum=trace,tower_http=trace,sqlx=trace",
    )
    .await;
}
