//! What the cluster's Lua scripts publish are the protocol's frames: a test
//! listens on the Redis channels of a cluster while a room opens, is
//! joined and left and closes, and decodes every frame a script published
//! with the protocol crate.

use std::time::Duration;

use futures_util::StreamExt;
use meshi_protocol::{RoomClosedReason, ServerFrame};
use serde_json::json;

use crate::common::cluster::{Cluster, NodeKind, Settings};
use crate::common::services::shared_redis;
use crate::common::WsClient;

/// A payload a script published: an empty origin after the kind, then
/// `<position>:<n> ` and the frame (see `bus::redis::codec`).
fn script_frame(payload: &[u8]) -> Option<ServerFrame> {
    let [1, kind, 0, rest @ ..] = payload else {
        return None;
    };
    assert!(
        matches!(kind, b'P' | b'X' | b'R'),
        "a script-published payload of kind {}",
        *kind as char
    );
    let space = rest.iter().position(|b| *b == b' ').expect("a position");
    let frame = &rest[space + 1..];
    Some(serde_json::from_slice(frame).unwrap_or_else(|error| {
        panic!(
            "a script published a frame the protocol cannot read ({error}): {}",
            String::from_utf8_lossy(frame)
        )
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_scripts_publish_decodes_as_protocol_frames() {
    let settings = Settings {
        room_empty_grace_secs: 0,
        ..Settings::default()
    };
    let redis_url = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 1, redis_url.clone(), settings).await;
    let client = redis::Client::open(redis_url.as_str()).expect("Redis URL");
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .expect("a pub/sub connection");
    pubsub
        .psubscribe(format!("{}:*", cluster.prefix))
        .await
        .expect("psubscribe");

    let node = cluster.node(1);
    let (host_token, _) = node.register("scripted_host").await;
    let (guest_token, guest_id) = node.register("scripted_guest").await;
    let mut host = WsClient::hello(node, &host_token).await;
    let mut guest = WsClient::hello(node, &guest_token).await;
    let created = host
        .ok(json!({"type": "room.create", "name": "on \"the\" record", "topic": "ü|\"q\""}))
        .await;
    let room_id = created["room"]["id"].as_str().unwrap().to_owned();
    guest
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    guest
        .ok(json!({"type": "room.leave", "room_id": room_id}))
        .await;
    host.ok(json!({"type": "room.leave", "room_id": room_id}))
        .await;

    let mut frames = Vec::new();
    let mut messages = pubsub.on_message();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.next()).await {
        let Some(frame) = script_frame(message.get_payload_bytes()) else {
            continue;
        };
        let closed = matches!(frame, ServerFrame::RoomClosed { .. });
        frames.push(frame);
        if closed {
            break;
        }
    }
    let seen = |what: &dyn Fn(&ServerFrame) -> bool| frames.iter().any(what);
    assert!(
        seen(&|f| matches!(f, ServerFrame::RoomMemberJoined { room_id: r, .. } if *r == room_id)),
        "{frames:?}"
    );
    assert!(
        seen(&|f| matches!(
            f,
            ServerFrame::RoomMemberLeft { room_id: r, user_id } if *r == room_id && *user_id == guest_id
        )),
        "{frames:?}"
    );
    assert!(
        seen(&|f| matches!(
            f,
            ServerFrame::RoomClosed { room_id: r, reason: RoomClosedReason::Empty } if *r == room_id
        )),
        "{frames:?}"
    );
    let directory: Vec<&ServerFrame> = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::RoomsChanged(_)))
        .collect();
    assert!(
        directory.len() >= 3,
        "the directory heard the room open, change and close: {frames:?}"
    );
}
