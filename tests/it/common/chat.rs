//! Rooms, conversations and presence over the socket, the way the tests
//! drive them: each step must succeed, and what others receive is waited
//! for with [`super::wait::wait_for`].

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::json::{seq_of, text_of};
use super::wait::{assert_quiet, wait_for};
use super::{WsClient, RECV_TIMEOUT};

pub async fn create_room(client: &mut WsClient, name: &str) -> String {
    let created = client
        .ok(json!({"type": "room.create", "name": name}))
        .await;
    text_of(&created["room"]["id"])
}

pub async fn join(client: &mut WsClient, room_id: &str) -> Value {
    client
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await
}

pub async fn join_since(client: &mut WsClient, room_id: &str, since_seq: u64) -> Value {
    client
        .ok(json!({"type": "room.join", "room_id": room_id, "since_seq": since_seq}))
        .await
}

pub async fn leave(client: &mut WsClient, room_id: &str) {
    let data = client
        .ok(json!({"type": "room.leave", "room_id": room_id}))
        .await;
    assert_eq!(data, json!({}));
}

/// Sends `text` to the room; returns the acknowledged `(message_id, seq)`.
pub async fn say(client: &mut WsClient, room_id: &str, text: &str) -> (String, u64) {
    let sent = client
        .ok(json!({"type": "room.send", "room_id": room_id, "text": text}))
        .await;
    (text_of(&sent["message_id"]), seq_of(&sent))
}

/// `from` says `text` in the room; waits for every one of `to` to receive
/// it with the acknowledged seq. Returns that seq.
pub async fn relay(
    from: &mut WsClient,
    to: &mut [(&str, &mut WsClient)],
    room_id: &str,
    text: &str,
) -> u64 {
    let (message_id, seq) = say(from, room_id, text).await;
    for (who, client) in to.iter_mut() {
        let got = wait_for(
            client,
            RECV_TIMEOUT,
            &format!("{who} waits for `{text}` in {room_id}"),
            |f| is_message_of(f, room_id) && f["message_id"] == message_id.as_str(),
        )
        .await;
        assert_eq!(seq_of(&got), seq, "{who}: {got}");
        assert_eq!(got["text"], text, "{who}: {got}");
    }
    seq
}

/// Waits for `room.member_joined` of `user_id` in `room_id`.
pub async fn sees_joined(client: &mut WsClient, room_id: &str, user_id: &str, who: &str) {
    let frame = wait_for(
        client,
        RECV_TIMEOUT,
        &format!("{who} waits for room.member_joined of user {user_id}"),
        |f| {
            f["type"] == "room.member_joined"
                && f["room_id"] == room_id
                && f["user"]["id"] == user_id
        },
    )
    .await;
    assert!(frame["user"]["handle"].is_string(), "{frame}");
}

pub fn is_message_of(frame: &Value, room_id: &str) -> bool {
    frame["type"] == "room.message" && frame["room_id"] == room_id
}

/// The rooms of `room.list` on this socket.
pub async fn room_list(client: &mut WsClient) -> Vec<Value> {
    let data = client.ok(json!({"type": "room.list"})).await;
    data["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("rooms in {data}"))
        .clone()
}

pub fn find_room(rooms: &[Value], room_id: &str) -> Option<Value> {
    rooms.iter().find(|r| r["id"] == room_id).cloned()
}

/// Asserts the socket is alive: nothing closes it for a moment and a ping
/// still round-trips.
pub async fn assert_alive(client: &mut WsClient, who: &str) {
    assert_quiet(
        client,
        Duration::from_millis(500),
        &format!("{who} (should stay open)"),
        |f| f["type"] == "error",
    )
    .await;
    let pong = client.ok(json!({"type": "ping"})).await;
    assert!(
        pong["server_time"].is_string(),
        "{who}: ping answered {pong}"
    );
}

/// `presence.query` for `user_ids`: each one's status by id.
pub async fn presence_statuses(
    client: &mut WsClient,
    user_ids: &[&str],
) -> HashMap<String, String> {
    let answer = client
        .ok(json!({"type": "presence.query", "user_ids": user_ids}))
        .await;
    answer["presence"]
        .as_array()
        .unwrap_or_else(|| panic!("presence in {answer}"))
        .iter()
        .map(|p| (text_of(&p["user_id"]), text_of(&p["status"])))
        .collect()
}

/// What one socket of a [`burst`] saw.
pub struct Burst {
    pub client: WsClient,
    /// `(message_id, seq)` acknowledged for each send, in send order.
    pub acked: Vec<(String, u64)>,
    /// Every push of the burst's type, in arrival order.
    pub pushes: Vec<Value>,
}

/// Sends all of `frames` without waiting between them, the `i`th with the
/// ref `{tag}-{i}`; then reads until each has its reply and `total`
/// pushes of type `push` are in, and asserts no more of them come within
/// `quiet`.
pub async fn burst(
    mut client: WsClient,
    tag: &str,
    frames: Vec<Value>,
    push: &str,
    total: usize,
    quiet: Duration,
) -> Burst {
    let sent = frames.len();
    for (i, mut frame) in frames.into_iter().enumerate() {
        frame["ref"] = json!(format!("{tag}-{i}"));
        client.send(frame).await;
    }
    let mut replies: HashMap<String, (String, u64)> = HashMap::new();
    let mut pushes = Vec::new();
    while replies.len() < sent || pushes.len() < total {
        let frame = wait_for(
            &mut client,
            RECV_TIMEOUT,
            &format!(
                "{tag} (has {} of {sent} replies and {} of {total} pushes)",
                replies.len(),
                pushes.len()
            ),
            |_| true,
        )
        .await;
        match frame["type"].as_str() {
            Some("ok") => {
                let message_id = text_of(&frame["data"]["message_id"]);
                assert!(!message_id.is_empty(), "message_id in {frame}");
                let acked = (message_id, seq_of(&frame["data"]));
                assert!(
                    replies.insert(text_of(&frame["ref"]), acked).is_none(),
                    "two replies to one ref: {frame}"
                );
            }
            Some("error") => panic!("{tag}: a send failed: {frame}"),
            Some(kind) if kind == push => {
                assert!(frame.get("ref").is_none(), "a push carries no ref: {frame}");
                pushes.push(frame);
            }
            // Presence and the like are not what a burst is about.
            _ => {}
        }
    }
    assert_quiet(&mut client, quiet, tag, |f| f["type"] == push).await;
    let acked = (0..sent)
        .map(|i| replies[&format!("{tag}-{i}")].clone())
        .collect();
    Burst {
        client,
        acked,
        pushes,
    }
}
