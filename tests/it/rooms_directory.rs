//! The REST room directory pages like every other list.

use serde_json::json;
use std::collections::HashSet;

async fn rest_room_directory_pages_with_a_cursor(server: Place) {
    let (mut host, token, _) = server.user("host").await;
    for i in 0..5 {
        host.ok(json!({"type": "room.create", "name": format!("room {i}")}))
            .await;
    }

    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/rooms?limit=2&cursor={c}"),
            None => "/api/v1/rooms?limit=2".to_owned(),
        };
        let (status, body) = server.api().get(&path, Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        for room in items {
            assert!(
                seen.insert(room["id"].as_str().unwrap().to_owned()),
                "duplicate {room}"
            );
        }
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(pages, 3);

    let (status, body) = server
        .api()
        .get("/api/v1/rooms?limit=101", Some(&token))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, body) = server
        .api()
        .get("/api/v1/rooms?cursor=%21%21", Some(&token))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
}

use crate::common::place::{Place, RoomKnobs};
use crate::room_contract;

room_contract! {
    rest_room_directory_pages_with_a_cursor: RoomKnobs::default(),
}
