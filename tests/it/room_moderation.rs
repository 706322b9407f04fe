//! Kicking, banning and closing rooms from the socket (SAFETY-v1, "Rooms:
//! kick, ban, close"): a drop-in room's host over their own room on one
//! node and across two, moderators over any room, and everyone else
//! refused. Each action is audited.

use std::time::Duration;

use crate::common::chat::{create_room, join, say};
use crate::common::place::{Place, RoomKnobs};
use crate::common::TestServer;
use crate::room_contract;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(400);

fn kick(room_id: &str, user_id: &str, ban_secs: Option<u64>) -> Value {
    let mut frame = json!({"type": "room.kick", "room_id": room_id, "user_id": user_id});
    if let Some(secs) = ban_secs {
        frame["ban_secs"] = json!(secs);
    }
    frame
}

async fn a_host_kicks_and_bans_and_the_room_goes_on(server: Place) {
    let (mut alice, _, _) = server.person("alice").await;
    let (mut bob, _, bob_id) = server.person("bob").await;
    let (mut carol, _, carol_id) = server.person("carol").await;
    let room_id = create_room(&mut alice, "kicks").await;
    join(&mut bob, &room_id).await;
    join(&mut carol, &room_id).await;

    let data = alice.ok(kick(&room_id, &bob_id, Some(3600))).await;
    assert_eq!(data, json!({}));
    let removed = bob.next_of("room.removed").await;
    assert_eq!(removed["room_id"], room_id.as_str(), "{removed}");
    assert_eq!(removed["reason"], "kicked", "{removed}");
    assert!(
        removed["until"].is_string(),
        "a ban says when it ends: {removed}"
    );
    for stays in [&mut alice, &mut carol] {
        let left = stays.next_of("room.member_left").await;
        assert_eq!(left["user_id"], bob_id.as_str(), "{left}");
    }

    say(&mut alice, &room_id, "after the kick").await;
    carol.next_of("room.message").await;
    bob.assert_no("room.message", QUIET).await;
    bob.err(
        json!({"type": "room.join", "room_id": room_id}),
        "forbidden",
    )
    .await;
    bob.err(
        json!({"type": "room.send", "room_id": room_id, "text": "let me back"}),
        "forbidden",
    )
    .await;

    // Without a ban, a kicked user may come back.
    alice.ok(kick(&room_id, &carol_id, None)).await;
    let removed = carol.next_of("room.removed").await;
    assert!(removed.get("until").is_none(), "no ban, no end: {removed}");
    join(&mut carol, &room_id).await;
    server.shutdown().await;
}

async fn only_the_host_kicks_or_closes_and_input_is_checked(server: Place) {
    let (mut alice, _, alice_id) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let (mut carol, _, carol_id) = server.person("carol").await;
    let room_id = create_room(&mut alice, "mine").await;
    join(&mut bob, &room_id).await;
    join(&mut carol, &room_id).await;

    bob.err(kick(&room_id, &carol_id, None), "forbidden").await;
    bob.err(
        json!({"type": "room.close", "room_id": room_id}),
        "forbidden",
    )
    .await;
    alice
        .err(kick(&room_id, &carol_id, Some(0)), "bad_request")
        .await;
    alice
        .err(kick(&room_id, &carol_id, Some(2_592_001)), "bad_request")
        .await;
    alice
        .err(kick(&room_id, "not-a-user", None), "bad_request")
        .await;
    alice
        .err(kick(&room_id, &alice_id, None), "bad_request")
        .await;
    alice
        .err(kick("r_missing", &carol_id, None), "not_found")
        .await;
    carol.assert_no("room.removed", QUIET).await;

    alice
        .ok(json!({"type": "room.close", "room_id": room_id}))
        .await;
    for member in [&mut alice, &mut bob, &mut carol] {
        let closed = member.next_of("room.closed").await;
        assert_eq!(
            closed,
            json!({"type": "room.closed", "room_id": room_id, "reason": "host"})
        );
    }
    bob.err(
        json!({"type": "room.join", "room_id": room_id}),
        "not_found",
    )
    .await;
    server.shutdown().await;
}

/// A closed room ends its sockets' membership on every node: it no longer
/// counts among the rooms a socket is in.
async fn a_closed_room_no_longer_counts_against_the_sockets_cap(server: Place) {
    let (mut alice, _, _) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let room_id = create_room(&mut alice, "only one").await;
    join(&mut bob, &room_id).await;
    bob.err(
        json!({"type": "room.create", "name": "a second"}),
        "conflict",
    )
    .await;

    alice
        .ok(json!({"type": "room.close", "room_id": room_id}))
        .await;
    bob.next_of("room.closed").await;
    let next = create_room(&mut bob, "bob's next").await;
    join(&mut alice, &next).await;
    server.shutdown().await;
}

room_contract! {
    a_host_kicks_and_bans_and_the_room_goes_on: RoomKnobs::default(),
    only_the_host_kicks_or_closes_and_input_is_checked: RoomKnobs::default(),
    a_closed_room_no_longer_counts_against_the_sockets_cap: RoomKnobs { max_rooms_per_socket: Some(1), ..RoomKnobs::default() },
}

#[tokio::test]
async fn moderators_kick_and_close_any_room_and_hosts_cannot_kick_them() {
    const ADMIN: &str = "root_admin";
    let server = TestServer::start_with(|config| config.admin_handles = vec![ADMIN.into()]).await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (mut moderator, mod_token, mod_id) = server.user("mod_mia").await;
    server.set_role(&admin_token, &mod_id, "moderator").await;
    // The role is read with the token, so a fresh socket carries it.
    drop(moderator);
    moderator = server.client(&mod_token).await;

    let (mut alice, _, _) = server.user("alice").await;
    let (mut bob, _, bob_id) = server.user("bob").await;
    let room_id = create_room(&mut alice, "watched").await;
    join(&mut bob, &room_id).await;
    join(&mut moderator, &room_id).await;

    alice.err(kick(&room_id, &mod_id, None), "forbidden").await;
    moderator.ok(kick(&room_id, &bob_id, Some(60))).await;
    let removed = bob.next_of("room.removed").await;
    assert_eq!(removed["reason"], "kicked");
    bob.err(
        json!({"type": "room.join", "room_id": room_id}),
        "forbidden",
    )
    .await;

    moderator
        .ok(json!({"type": "room.close", "room_id": room_id}))
        .await;
    let closed = alice.next_of("room.closed").await;
    assert_eq!(closed["reason"], "moderator", "{closed}");

    let (status, page) = server
        .get("/api/v1/admin/audit?limit=50", Some(&admin_token))
        .await;
    assert_eq!(status, 200, "{page}");
    let entries = page["items"].as_array().expect("items");
    let kicked = entries
        .iter()
        .find(|e| e["action"] == "room.kick")
        .expect("the kick is audited");
    assert_eq!(kicked["target"], format!("user:{bob_id}"));
    assert_eq!(kicked["actor_id"], mod_id.as_str(), "{kicked}");
    let closed = entries
        .iter()
        .find(|e| e["action"] == "room.close" && e["target"] == format!("room:{room_id}"))
        .expect("the close is audited");
    assert_eq!(closed["actor_id"], mod_id.as_str(), "{closed}");
    server.shutdown().await;
}
