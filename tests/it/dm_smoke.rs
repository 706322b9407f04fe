//! Two matched users talk over the socket.

use crate::common::platform::match_pair;
use crate::common::TestServer;
use serde_json::{json, Value};

#[tokio::test]
async fn matched_users_chat_with_history_receipts_typing_and_presence() {
    let server = TestServer::start_with(|c| c.presence_grace_ms = 200).await;
    let (a_token, a_id) = server.register("alice").await;
    let (b_token, b_id) = server.register("bobby").await;
    let conversation = match_pair(&server, &a_token, &server, &b_token, &b_id).await;

    let mut alice = crate::common::WsClient::hello(&server, &a_token).await;
    let mut bob = crate::common::WsClient::hello(&server, &b_token).await;
    let online = alice.next_of("presence").await;
    assert_eq!(online["user_id"], b_id.as_str());
    assert_eq!(online["status"], "online");

    let sent = alice
        .ok(json!({"type": "dm.send", "conversation_id": conversation, "text": "hi", "client_msg_id": "c1"}))
        .await;
    assert_eq!(sent["seq"], 1);
    let again = alice
        .ok(json!({"type": "dm.send", "conversation_id": conversation, "text": "hi", "client_msg_id": "c1"}))
        .await;
    assert_eq!(
        again, sent,
        "a repeated client_msg_id answers the first result"
    );
    for client in [&mut alice, &mut bob] {
        let message = client.next_of("dm.message").await;
        assert_eq!(message["seq"], 1);
        assert_eq!(message["from"]["id"], a_id.as_str());
    }
    bob.ok(json!({"type": "dm.send", "conversation_id": conversation, "text": "hello"}))
        .await;
    let history = bob
        .ok(json!({"type": "dm.history", "conversation_id": conversation}))
        .await;
    let seqs: Vec<u64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2]);

    let (_, list) = server.get("/api/v1/conversations", Some(&b_token)).await;
    assert_eq!(
        list["items"][0]["unread_count"], 0,
        "replying reads what came before"
    );
    assert_eq!(list["items"][0]["last_message"]["text"], "hello");
    let (_, list) = server.get("/api/v1/conversations", Some(&a_token)).await;
    assert_eq!(list["items"][0]["unread_count"], 1);
    alice
        .ok(json!({"type": "dm.read", "conversation_id": conversation, "seq": 2}))
        .await;
    let read = bob.next_of("dm.read").await;
    assert_eq!(read["seq"], 2);
    assert_eq!(read["user_id"], a_id.as_str());
    let (_, list) = server.get("/api/v1/conversations", Some(&a_token)).await;
    assert_eq!(list["items"][0]["unread_count"], 0);

    bob.ok(json!({"type": "dm.typing", "conversation_id": conversation}))
        .await;
    let typing = alice.next_of("dm.typing").await;
    assert_eq!(typing["user_id"], b_id.as_str());

    let presence = alice
        .ok(json!({"type": "presence.query", "user_ids": [b_id, "999999"]}))
        .await;
    let presence: &Vec<Value> = presence["presence"].as_array().unwrap();
    assert_eq!(presence.len(), 1, "strangers are left out: {presence:?}");
    assert_eq!(presence[0]["status"], "online");

    let (status, messages) = server
        .get(
            &format!("/api/v1/conversations/{conversation}/messages?after_seq=1"),
            Some(&a_token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(messages["items"].as_array().unwrap().len(), 1);

    bob.close().await;
    let offline = alice.next_of("presence").await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen_at"].is_string());

    let (eve_token, _) = server.register("eve").await;
    let mut eve = crate::common::WsClient::hello(&server, &eve_token).await;
    eve.err(
        json!({"type": "dm.send", "conversation_id": conversation, "text": "x"}),
        "forbidden",
    )
    .await;
    eve.err(
        json!({"type": "dm.history", "conversation_id": conversation}),
        "forbidden",
    )
    .await;
    let (status, _) = server
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&eve_token),
        )
        .await;
    assert_eq!(status, 403);
}
