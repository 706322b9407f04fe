//! Event and community rooms: who may enter, and where they are listed.

use crate::common::chat::room_list;
use crate::common::json::{ids, text_of};
use crate::common::platform::{join_community, new_community, new_event, rsvp};
use serde_json::json;

async fn an_event_room_admits_the_host_and_going_attendees_only(server: Place) {
    let (host_token, host_id) = server.api().register("host").await;
    let (guest_token, guest_id) = server.api().register("guest").await;
    let (late_token, _) = server.api().register("late").await;
    let (stranger_token, _) = server.api().register("stranger").await;
    let event = new_event(
        server.api(),
        &host_token,
        json!({"title": "ramen night", "description": "", "starts_at": "2030-01-01T19:00:00Z",
               "venue": "station ramen", "capacity": 1}),
    )
    .await;
    let event_id = text_of(&event["id"]);
    let room_id = format!("event:{event_id}");
    rsvp(server.api(), &event_id, &guest_token).await;
    rsvp(server.api(), &event_id, &late_token).await;

    let mut host = server.socket(&host_token).await;
    let mut guest = server.socket(&guest_token).await;
    let mut late = server.socket(&late_token).await;
    let mut stranger = server.socket(&stranger_token).await;

    let listed = room_list(&mut host).await;
    assert!(ids(&listed).contains(&room_id), "{listed:?}");
    let listed = room_list(&mut stranger).await;
    assert!(!ids(&listed).contains(&room_id), "{listed:?}");
    let listed = room_list(&mut late).await;
    assert!(!ids(&listed).contains(&room_id), "waitlisted: {listed:?}");

    let joined = host
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    assert_eq!(joined["room"]["kind"], "event");
    assert_eq!(joined["room"]["id"], room_id.as_str());
    assert_eq!(joined["room"]["name"], room_id.as_str());
    assert_eq!(joined["room"]["topic"], "ramen night");
    assert_eq!(joined["room"]["host_id"], host_id.as_str());
    guest
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    let arrived = host.next_of("room.member_joined").await;
    assert_eq!(arrived["user"]["id"], guest_id.as_str());
    late.err(
        json!({"type": "room.join", "room_id": room_id}),
        "forbidden",
    )
    .await;
    stranger
        .err(
            json!({"type": "room.join", "room_id": room_id}),
            "forbidden",
        )
        .await;
    stranger
        .err(
            json!({"type": "room.join", "room_id": "event:999999"}),
            "not_found",
        )
        .await;
    stranger
        .err(
            json!({"type": "room.join", "room_id": "event:abc"}),
            "not_found",
        )
        .await;

    guest
        .ok(json!({"type": "room.send", "room_id": room_id, "text": "see you there"}))
        .await;
    assert_eq!(host.next_of("room.message").await["text"], "see you there");

    // Cancelling the event closes its room for everyone inside.
    let (status, body) = server
        .api()
        .delete(&format!("/api/v1/events/{event_id}"), &host_token)
        .await;
    assert_eq!(status, 204, "{body}");
    let closed = guest.next_of("room.closed").await;
    assert_eq!(closed["room_id"], room_id.as_str());
    assert_eq!(closed["reason"], "host");
    guest
        .err(
            json!({"type": "room.join", "room_id": room_id}),
            "not_found",
        )
        .await;
}

async fn a_community_room_is_for_members(server: Place) {
    let (owner_token, _) = server.api().register("owner").await;
    let (member_token, _) = server.api().register("member").await;
    let (outsider_token, _) = server.api().register("outsider").await;
    let community = new_community(
        server.api(),
        &owner_token,
        json!({"name": "rustaceans", "description": "crabs"}),
    )
    .await;
    let community_id = text_of(&community["id"]);
    let room_id = format!("community:{community_id}");
    join_community(server.api(), &community_id, &member_token).await;

    let mut member = server.socket(&member_token).await;
    let mut outsider = server.socket(&outsider_token).await;
    let listed = room_list(&mut member).await;
    assert!(ids(&listed).contains(&room_id), "{listed:?}");
    let joined = member
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    assert_eq!(joined["room"]["kind"], "community");
    assert_eq!(joined["room"]["name"], room_id.as_str());
    assert_eq!(joined["room"]["topic"], "rustaceans");
    let listed = room_list(&mut outsider).await;
    assert!(!ids(&listed).contains(&room_id), "{listed:?}");
    outsider
        .err(
            json!({"type": "room.join", "room_id": room_id}),
            "forbidden",
        )
        .await;

    // A standing room stays open when its last member leaves.
    member
        .ok(json!({"type": "room.leave", "room_id": room_id}))
        .await;
    let rejoined = member
        .ok(json!({"type": "room.join", "room_id": room_id}))
        .await;
    assert_eq!(rejoined["room"]["id"], room_id.as_str());
}

use crate::common::place::{Place, RoomKnobs};
use crate::room_contract;

room_contract! {
    an_event_room_admits_the_host_and_going_attendees_only: RoomKnobs::default(),
    a_community_room_is_for_members: RoomKnobs::default(),
}
