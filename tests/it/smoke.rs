//! The README's story end to end: two users, one room, a chat.

use crate::common::TestServer;
use serde_json::json;

#[tokio::test]
async fn two_users_create_join_chat_and_leave() {
    let server = TestServer::start().await;
    let (mut alice, _, alice_id) = server.user("alice").await;
    let (mut bob, _, bob_id) = server.user("bob").await;

    let created = alice
        .ok(json!({"type": "room.create", "name": "lunch talk", "topic": "rust"}))
        .await;
    let room_id = created["room"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["room"]["kind"], "drop_in");
    assert_eq!(created["room"]["member_count"], 1);
    assert_eq!(created["room"]["capacity"], 50);
    assert_eq!(created["room"]["host_id"], alice_id.as_str());

    let joined = bob
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    assert_eq!(joined["room"]["member_count"], 2);
    assert_eq!(joined["last_seq"], 0);
    assert_eq!(joined["recovered"], false);
    let joined_push = alice.next_of("room.member_joined").await;
    assert_eq!(joined_push["user"]["id"], bob_id.as_str());

    let sent = bob
        .ok(json!({"type": "room.send", "room_id": room_id, "text": "hi alice"}))
        .await;
    assert_eq!(sent["seq"], 1);
    for client in [&mut alice, &mut bob] {
        let message = client.next_of("room.message").await;
        assert_eq!(message["text"], "hi alice");
        assert_eq!(message["seq"], 1);
        assert_eq!(message["from"]["id"], bob_id.as_str());
        assert_eq!(message["message_id"], sent["message_id"]);
    }

    bob.ok(json!({"type": "room.leave", "room_id": room_id}))
        .await;
    let left = alice.next_of("room.member_left").await;
    assert_eq!(left["user_id"], bob_id.as_str());
    server.shutdown().await;
}
