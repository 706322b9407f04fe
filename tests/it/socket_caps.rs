//! Caps on what one address or one user holds (SAFETY-v1, "Abuse limits"):
//! sockets per address (429 before the upgrade), sockets per user (refused
//! at hello), rooms per socket, and the bound on a `room.list` answer.

use std::time::Duration;

use crate::common::{Ended, TestServer, WsClient};
use serde_json::json;

#[tokio::test]
async fn an_address_over_its_socket_cap_gets_429_before_the_upgrade() {
    let server = TestServer::start_with(|c| c.max_sockets_per_addr = 2).await;
    let first = WsClient::connect(&server).await;
    let _second = WsClient::connect(&server).await;
    let refused = tokio_tungstenite::connect_async(server.ws_url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        other => panic!("a third socket from one address: {other:?}"),
    }
    // A slot freed is a slot again.
    first.close().await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(server.ws_url()).await {
            again = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the freed slot was never given back");
}

#[tokio::test]
async fn a_user_over_their_socket_cap_is_refused_at_hello() {
    let server = TestServer::start_with(|c| c.max_sockets_per_user = 2).await;
    let (token, _) = server.register("tabby").await;
    let _one = WsClient::hello(&server, &token).await;
    let _two = WsClient::hello(&server, &token).await;
    let mut three = WsClient::connect(&server).await;
    let reply = three
        .request(json!({"type": "hello", "token": token}))
        .await;
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    assert!(
        reply["error"]["retry_after_ms"].as_u64().is_some(),
        "{reply}"
    );
    assert_eq!(
        three.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4008)
    );
}

async fn a_socket_joins_at_most_its_room_cap(server: Place) {
    let (mut host, _, _) = server.user("hoster").await;
    let (mut guest, _, _) = server.user("joiner").await;
    let mut rooms = Vec::new();
    for name in ["one", "two", "three"] {
        let created = host.ok(json!({"type": "room.create", "name": name})).await;
        rooms.push(created["room"]["id"].as_str().unwrap().to_owned());
        if rooms.len() == 2 {
            break;
        }
    }
    let refused = host
        .request(json!({"type": "room.create", "name": "three"}))
        .await;
    assert_eq!(refused["error"]["code"], "conflict", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MESHI_MAX_ROOMS_PER_SOCKET"),
        "{refused}"
    );
    for room in &rooms {
        guest
            .ok(json!({"type": "room.join", "room_id": room}))
            .await;
    }
    host.ok(json!({"type": "room.leave", "room_id": rooms[0]}))
        .await;
    host.ok(json!({"type": "room.create", "name": "three"}))
        .await;
}

async fn room_list_answers_at_most_its_bound(server: Place) {
    for i in 0..5 {
        let (mut host, _, _) = server.user(&format!("host_{i}")).await;
        host.ok(json!({"type": "room.create", "name": format!("room {i}")}))
            .await;
        std::mem::forget(host);
    }
    let (mut reader, _, _) = server.user("reader").await;
    let listed = reader.ok(json!({"type": "room.list"})).await;
    assert_eq!(listed["rooms"].as_array().unwrap().len(), 3, "{listed}");
    let watched = reader.ok(json!({"type": "rooms.watch"})).await;
    assert_eq!(watched["rooms"].as_array().unwrap().len(), 3, "{watched}");
}

use crate::common::place::{Place, RoomKnobs};
use crate::room_contract;

room_contract! {
    a_socket_joins_at_most_its_room_cap: RoomKnobs {
        max_rooms_per_socket: Some(2),
        ..RoomKnobs::default()
    },
    room_list_answers_at_most_its_bound: RoomKnobs {
        room_list_max: Some(3),
        ..RoomKnobs::default()
    },
}
