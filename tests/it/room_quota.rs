//! What one user may open (SAFETY-v1, "Abuse limits"): drop-in rooms
//! hosted at once (`MESHI_MAX_HOSTED_ROOMS`, refused with `conflict`) and
//! rooms created per minute (`MESHI_ROOM_CREATE_PER_MIN`, refused with
//! `rate_limited`), on one node and counted across a cluster's nodes.

use std::time::Duration;

use crate::common::cluster::{Cluster, NodeKind, Settings};
use crate::common::services::shared_redis;
use crate::common::{TestServer, WsClient};
use serde_json::{json, Value};

async fn create(socket: &mut WsClient, name: &str) -> Value {
    socket
        .request(json!({"type": "room.create", "name": name}))
        .await
}

fn room_id(reply: &Value) -> String {
    reply["data"]["room"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("room.create failed: {reply}"))
        .to_owned()
}

fn assert_refused(reply: &Value, code: &str, names: &str) {
    assert_eq!(reply["error"]["code"], code, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(names),
        "the message names {names}: {reply}"
    );
}

/// Creates rooms until one is let through (a closed room gives its place
/// back as soon as every node has heard it closed), and returns its id.
async fn create_once_a_place_is_free(host: &mut WsClient) -> String {
    let mut last = Value::Null;
    for attempt in 0..50 {
        last = create(host, &format!("again {attempt}")).await;
        if let Some(id) = last["data"]["room"]["id"].as_str() {
            return id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no place came free within 5 s; last answer: {last}");
}

#[tokio::test]
async fn a_user_hosts_at_most_their_room_cap_on_one_node() {
    let server = TestServer::start_with(|c| {
        c.max_hosted_rooms = 2;
        c.room_empty_grace_secs = 0;
    })
    .await;
    let (mut host, _, _) = server.user("hostess").await;
    let (mut other, _, _) = server.user("bystander").await;
    let first = room_id(&create(&mut host, "one").await);
    room_id(&create(&mut host, "two").await);
    assert_refused(
        &create(&mut host, "three").await,
        "conflict",
        "MESHI_MAX_HOSTED_ROOMS",
    );
    // The cap is the host's own; another user is not held back by it.
    room_id(&create(&mut other, "theirs").await);
    host.ok(json!({"type": "room.leave", "room_id": first}))
        .await;
    create_once_a_place_is_free(&mut host).await;
    assert_refused(
        &create(&mut host, "four").await,
        "conflict",
        "MESHI_MAX_HOSTED_ROOMS",
    );
}

#[tokio::test]
async fn room_create_is_rate_limited_per_user_on_one_node() {
    let server = TestServer::start_with(|c| c.room_create_per_min = 3).await;
    let (mut host, _, _) = server.user("speedy").await;
    for name in ["a", "b", "c"] {
        room_id(&create(&mut host, name).await);
    }
    let refused = create(&mut host, "d").await;
    assert_refused(&refused, "rate_limited", "MESHI_ROOM_CREATE_PER_MIN");
    let retry = refused["error"]["retry_after_ms"].as_u64().expect("retry");
    assert!((1..=60_000).contains(&retry), "{refused}");
    // A refusal costs nothing: refused again, with no longer a wait.
    let again = create(&mut host, "e").await;
    assert_refused(&again, "rate_limited", "MESHI_ROOM_CREATE_PER_MIN");
    assert!(again["error"]["retry_after_ms"].as_u64().unwrap() <= retry);
    let (mut other, _, _) = server.user("patient").await;
    room_id(&create(&mut other, "theirs").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_room_cap_counts_every_node() {
    let settings = Settings {
        max_hosted_rooms: 2,
        room_empty_grace_secs: 0,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, shared_redis().await, settings).await;
    let (one, two) = (cluster.node(1), cluster.node(2));
    let (token, _) = one.register("roamer").await;
    let mut on_one = one.client(&token).await;
    let mut on_two = two.client(&token).await;
    let first = room_id(&create(&mut on_one, "here").await);
    room_id(&create(&mut on_two, "there").await);
    assert_refused(
        &create(&mut on_two, "everywhere").await,
        "conflict",
        "MESHI_MAX_HOSTED_ROOMS",
    );
    assert_refused(
        &create(&mut on_one, "everywhere").await,
        "conflict",
        "MESHI_MAX_HOSTED_ROOMS",
    );
    // The room closed on node one frees a place node two can use.
    on_one
        .ok(json!({"type": "room.leave", "room_id": first}))
        .await;
    create_once_a_place_is_free(&mut on_two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_create_rate_counts_every_node() {
    let settings = Settings {
        room_create_per_min: 3,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, shared_redis().await, settings).await;
    let (one, two) = (cluster.node(1), cluster.node(2));
    let (token, _) = one.register("hopper").await;
    let mut on_one = one.client(&token).await;
    let mut on_two = two.client(&token).await;
    room_id(&create(&mut on_one, "a").await);
    room_id(&create(&mut on_two, "b").await);
    room_id(&create(&mut on_one, "c").await);
    let refused = create(&mut on_two, "d").await;
    assert_refused(&refused, "rate_limited", "MESHI_ROOM_CREATE_PER_MIN");
    let retry = refused["error"]["retry_after_ms"].as_u64().expect("retry");
    assert!((1..=60_000).contains(&retry), "{refused}");
}
