//! Drop-in rooms against the contract (PROTOCOL-v1, "Rooms"; PRODUCT,
//! "Room"): creation rules, the directory (socket and REST), capacity,
//! errors, typing, `client_msg_id` dedupe, `since_seq` recovery, several
//! sockets of one user, closing when empty, `rooms.watch`, and ordered
//! fan-out to many members.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::chat::{burst, create_room, find_room, join, join_since, leave, room_list, say};
use crate::common::json::{seqs, text_of};
use crate::common::place::{Place, RoomKnobs};
use crate::common::wait::within;
use crate::common::WsClient;
use crate::room_contract;
use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::time::Instant;

/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);
/// Upper bound for a whole multi-client exchange on a loaded machine.
const GENEROUS: Duration = Duration::from_secs(90);

async fn create_room_with_capacity(client: &mut WsClient, name: &str, capacity: u32) -> String {
    let created = client
        .ok(json!({"type": "room.create", "name": name, "capacity": capacity}))
        .await;
    assert_eq!(created["room"]["capacity"], capacity);
    text_of(&created["room"]["id"])
}

/// The next `n` `room.message` pushes of one room, in arrival order.
async fn take_messages(client: &mut WsClient, room_id: &str, n: usize) -> Vec<Value> {
    let mut messages = Vec::with_capacity(n);
    for _ in 0..n {
        let room_id = room_id.to_owned();
        let message = client
            .next_matching(move |f| f["type"] == "room.message" && f["room_id"] == room_id.as_str())
            .await;
        assert!(
            message.get("ref").is_none(),
            "a push carries no ref: {message}"
        );
        messages.push(message);
    }
    messages
}

fn message_list(joined: &Value) -> Vec<Value> {
    joined["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages array in {joined}"))
        .clone()
}

fn member_ids(joined: &Value) -> Vec<String> {
    joined["members"]
        .as_array()
        .unwrap_or_else(|| panic!("members array in {joined}"))
        .iter()
        .map(|m| text_of(&m["id"]))
        .collect()
}

/// The room as `room.list` shows it to this client, if it is listed.
async fn listed(client: &mut WsClient, room_id: &str) -> Option<Value> {
    find_room(&room_list(client).await, room_id)
}

/// Polls `room.list` (bounded) until the room is gone; says whether it went.
async fn gone_within(client: &mut WsClient, room_id: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if listed(client, room_id).await.is_none() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Awaits `work` (an HTTP round trip or a whole exchange) under [`GENEROUS`].
async fn generously<T>(work: impl std::future::Future<Output = T>) -> T {
    within(GENEROUS, work)
        .await
        .expect("finished within the generous deadline")
}

/// Registers `n` users at once (password hashing is the slow part).
async fn users(server: &Place, prefix: &str, n: usize) -> Vec<(WsClient, String, String)> {
    join_all((0..n).map(|i| {
        let handle = format!("{prefix}_{i:02}");
        async move { server.person(&handle).await }
    }))
    .await
}

/// Reads the next `rooms.changed` about `room_id`.
async fn next_change(client: &mut WsClient, room_id: &str) -> Value {
    let room_id = room_id.to_owned();
    let change = client
        .next_matching(move |f| {
            f["type"] == "rooms.changed"
                && (f["room"]["id"] == room_id.as_str() || f["room_id"] == room_id.as_str())
        })
        .await;
    assert!(
        change.get("ref").is_none(),
        "a push carries no ref: {change}"
    );
    change
}

async fn room_create_validates_and_makes_the_creator_a_member_and_host(server: Place) {
    let (mut alice, _, alice_id) = server.person("alice").await;
    let (mut bob, _, bob_id) = server.person("bob").await;

    let long_name = "n".repeat(61);
    for name in ["", long_name.as_str(), "   ", " \t "] {
        let error = alice
            .err(json!({"type": "room.create", "name": name}), "bad_request")
            .await;
        assert!(
            error["message"].as_str().unwrap().contains("name"),
            "the error names the field: {error}"
        );
    }
    let error = alice
        .err(json!({"type": "room.create"}), "bad_request")
        .await;
    assert!(
        error["message"].as_str().unwrap().contains("name"),
        "a missing name is named: {error}"
    );
    for capacity in [0, 1, 501, 10_000] {
        let error = alice
            .err(
                json!({"type": "room.create", "name": "ok name", "capacity": capacity}),
                "bad_request",
            )
            .await;
        assert!(
            error["message"].as_str().unwrap().contains("capacity"),
            "the error names the field: {error}"
        );
    }
    // Bad input changes nothing: no room was opened by any of the above.
    let before = alice.ok(json!({"type": "room.list"})).await;
    assert_eq!(before["rooms"], json!([]), "{before}");

    // The bounds themselves are allowed (characters, not bytes).
    let sixty = "é".repeat(60);
    let created = alice
        .ok(json!({"type": "room.create", "name": sixty, "capacity": 2}))
        .await;
    assert_eq!(created["room"]["name"], sixty.as_str());
    assert_eq!(created["room"]["capacity"], 2);
    create_room_with_capacity(&mut alice, "big", 500).await;

    let created = alice
        .ok(json!({"type": "room.create", "name": "lunch", "topic": "rust"}))
        .await;
    let room = &created["room"];
    let room_id = text_of(&room["id"]);
    assert_eq!(room["kind"], "drop_in");
    assert_eq!(room["name"], "lunch");
    assert_eq!(room["topic"], "rust");
    assert_eq!(room["capacity"], 50, "default capacity");
    assert_eq!(room["member_count"], 1);
    assert_eq!(room["host_id"], alice_id.as_str());
    assert!(room["created_at"].is_string(), "{room}");

    // The creator is inside without joining: they can send and receive.
    let (sent_id, seq) = say(&mut alice, &room_id, "first").await;
    assert_eq!(seq, 1);
    let echoed = alice.next_of("room.message").await;
    assert_eq!(echoed["message_id"], sent_id.as_str());

    let joined = join(&mut bob, &room_id).await;
    assert_eq!(joined["room"]["host_id"], alice_id.as_str());
    assert_eq!(joined["room"]["member_count"], 2);
    let mut members = member_ids(&joined);
    members.sort();
    let mut expected = vec![alice_id.clone(), bob_id.clone()];
    expected.sort();
    assert_eq!(members, expected);

    let all = alice.ok(json!({"type": "room.list"})).await;
    assert_eq!(all["rooms"].as_array().unwrap().len(), 3, "{all}");
    server.shutdown().await;
}

async fn room_list_and_rest_directory_show_open_rooms_with_true_member_counts(server: Place) {
    let (mut alice, alice_token, _) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let (mut carol, _, _) = server.person("carol").await;
    let (mut dave, dave_token, _) = server.person("dave").await;

    let alpha = create_room(&mut alice, "alpha").await;
    let beta = create_room(&mut bob, "beta").await;
    join(&mut carol, &beta).await;
    join(&mut alice, &beta).await;
    // A second socket of alice in alpha is still one member.
    let mut alice_again = server.socket(&alice_token).await;
    join(&mut alice_again, &alpha).await;

    let expect_counts = |rooms: &Value, alpha_count: u64, beta_count: u64| {
        let rooms = rooms
            .as_array()
            .unwrap_or_else(|| panic!("an array of rooms: {rooms}"));
        assert_eq!(rooms.len(), 2, "{rooms:?}");
        let count = |id: &str| {
            let room = rooms
                .iter()
                .find(|r| r["id"] == id)
                .unwrap_or_else(|| panic!("{id} listed in {rooms:?}"));
            assert_eq!(room["kind"], "drop_in");
            room["member_count"].as_u64().unwrap()
        };
        assert_eq!(count(&alpha), alpha_count, "alpha in {rooms:?}");
        assert_eq!(count(&beta), beta_count, "beta in {rooms:?}");
    };

    let listed_now = dave.ok(json!({"type": "room.list"})).await;
    expect_counts(&listed_now["rooms"], 1, 3);

    let (status, body) = generously(server.api().get("/api/v1/rooms", Some(&dave_token))).await;
    assert_eq!(status, 200, "{body}");
    expect_counts(&body["items"], 1, 3);
    assert!(
        body.as_object().unwrap().contains_key("next_cursor"),
        "a page answers {{items, next_cursor}}: {body}"
    );
    assert!(body["next_cursor"].is_null(), "one page only: {body}");
    assert_eq!(body["items"], listed_now["rooms"], "REST and socket agree");

    let (status, body) = generously(server.api().get("/api/v1/rooms", None)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, body) =
        generously(server.api().get("/api/v1/rooms", Some("not-a-real-token"))).await;
    assert_eq!(status, 401, "{body}");

    leave(&mut carol, &beta).await;
    let listed_now = dave.ok(json!({"type": "room.list"})).await;
    expect_counts(&listed_now["rooms"], 1, 2);
    let (status, body) = generously(server.api().get("/api/v1/rooms", Some(&dave_token))).await;
    assert_eq!(status, 200, "{body}");
    expect_counts(&body["items"], 1, 2);
    server.shutdown().await;
}

async fn a_full_room_refuses_newcomers_until_someone_leaves(server: Place) {
    let (mut alice, alice_token, _) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let (mut carol, _, carol_id) = server.person("carol").await;
    let (mut dave, _, _) = server.person("dave").await;

    let room_id = create_room_with_capacity(&mut alice, "pair", 2).await;
    join(&mut bob, &room_id).await;
    carol
        .err(
            json!({"type": "room.join", "room_id": room_id}),
            "room_full",
        )
        .await;
    assert_eq!(
        listed(&mut alice, &room_id).await.unwrap()["member_count"],
        2
    );

    // A refused join subscribes nothing: carol hears no messages.
    say(&mut alice, &room_id, "just us").await;
    carol.assert_no("room.message", QUIET).await;

    // Another socket of a member is not a newcomer.
    let mut alice_again = server.socket(&alice_token).await;
    let joined = join(&mut alice_again, &room_id).await;
    assert_eq!(joined["room"]["member_count"], 2);

    leave(&mut bob, &room_id).await;
    let joined = join(&mut carol, &room_id).await;
    assert_eq!(joined["room"]["member_count"], 2);
    let joined_push = alice
        .next_matching(|f| {
            f["type"] == "room.member_joined" && f["user"]["id"] == carol_id.as_str()
        })
        .await;
    assert_eq!(joined_push["room_id"], room_id.as_str());
    dave.err(
        json!({"type": "room.join", "room_id": room_id}),
        "room_full",
    )
    .await;
    server.shutdown().await;
}

async fn unknown_rooms_are_not_found_and_non_members_are_forbidden(server: Place) {
    let (mut alice, _, _) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;

    let missing = "r_does_not_exist";
    alice
        .err(
            json!({"type": "room.join", "room_id": missing}),
            "not_found",
        )
        .await;
    alice
        .err(
            json!({"type": "room.join", "room_id": missing, "since_seq": 3}),
            "not_found",
        )
        .await;
    alice
        .err(
            json!({"type": "room.leave", "room_id": missing}),
            "not_found",
        )
        .await;
    alice
        .err(
            json!({"type": "room.send", "room_id": missing, "text": "hello?"}),
            "not_found",
        )
        .await;
    alice
        .err(
            json!({"type": "room.typing", "room_id": missing}),
            "not_found",
        )
        .await;

    let room_id = create_room(&mut bob, "bob's").await;
    alice
        .err(
            json!({"type": "room.send", "room_id": room_id, "text": "let me in"}),
            "forbidden",
        )
        .await;
    alice
        .err(
            json!({"type": "room.typing", "room_id": room_id}),
            "forbidden",
        )
        .await;
    bob.assert_no("room.message", QUIET).await;
    bob.assert_no("room.typing", Duration::ZERO).await;
    // The refused send did not take a seq.
    let (_, seq) = say(&mut bob, &room_id, "mine").await;
    assert_eq!(seq, 1);
    server.shutdown().await;
}

async fn room_send_validates_text_and_client_msg_id(server: Place) {
    let (mut alice, _, _) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let room_id = create_room(&mut alice, "texts").await;
    join(&mut bob, &room_id).await;

    let error = alice
        .err(
            json!({"type": "room.send", "room_id": room_id, "text": ""}),
            "bad_request",
        )
        .await;
    assert!(
        error["message"].as_str().unwrap().contains("text"),
        "{error}"
    );

    // 4001 characters: the contract allows `too_large` or `bad_request`;
    // this server answers `too_large`, and either is accepted here.
    let reply = alice
        .request(json!({"type": "room.send", "room_id": room_id, "text": "x".repeat(4001)}))
        .await;
    assert_eq!(reply["type"], "error", "{reply}");
    let code = reply["error"]["code"].as_str().unwrap();
    assert!(
        code == "too_large" || code == "bad_request",
        "4001 chars answered {code}"
    );
    assert!(reply["error"]["message"].as_str().unwrap().contains("text"));

    let error = alice
        .err(
            json!({"type": "room.send", "room_id": room_id, "text": "hi", "client_msg_id": "c".repeat(65)}),
            "bad_request",
        )
        .await;
    assert!(
        error["message"].as_str().unwrap().contains("client_msg_id"),
        "{error}"
    );
    alice
        .err(
            json!({"type": "room.send", "room_id": room_id}),
            "bad_request",
        )
        .await;

    // Nothing above was delivered or took a seq.
    bob.assert_no("room.message", QUIET).await;

    // The bounds are characters: 4000 two-byte characters are fine.
    let full = "é".repeat(4000);
    let sent = alice
        .ok(json!({"type": "room.send", "room_id": room_id, "text": full, "client_msg_id": "c".repeat(64)}))
        .await;
    assert_eq!(sent["seq"], 1);
    let message = bob.next_of("room.message").await;
    assert_eq!(message["text"], full.as_str());
    assert_eq!(message["seq"], 1);
    assert_eq!(message["client_msg_id"], "c".repeat(64));
    let (_, seq) = say(&mut alice, &room_id, &"y".repeat(4000)).await;
    assert_eq!(seq, 2);
    server.shutdown().await;
}

async fn typing_reaches_the_others_but_not_the_typist(server: Place) {
    let (mut alice, _, alice_id) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let (mut carol, _, _) = server.person("carol").await;
    let room_id = create_room(&mut alice, "typing").await;
    join(&mut bob, &room_id).await;
    join(&mut carol, &room_id).await;

    let data = alice
        .ok(json!({"type": "room.typing", "room_id": room_id}))
        .await;
    assert_eq!(data, json!({}));
    for other in [&mut bob, &mut carol] {
        let typing = other.next_of("room.typing").await;
        assert_eq!(typing["room_id"], room_id.as_str());
        assert_eq!(typing["user_id"], alice_id.as_str());
        assert!(typing.get("ref").is_none(), "{typing}");
    }
    alice.assert_no("room.typing", QUIET).await;
    bob.assert_no("room.typing", Duration::ZERO).await;
    server.shutdown().await;
}

async fn a_repeated_client_msg_id_is_delivered_once_per_user(server: Place) {
    let (mut alice, _, alice_id) = server.person("alice").await;
    let (mut bob, _, bob_id) = server.person("bob").await;
    let room_id = create_room(&mut alice, "dedupe").await;
    join(&mut bob, &room_id).await;

    let frame =
        json!({"type": "room.send", "room_id": room_id, "text": "once", "client_msg_id": "c-1"});
    let first = alice.ok(frame.clone()).await;
    let again = alice.ok(frame.clone()).await;
    assert_eq!(first, again, "the repeat answers the first send's result");
    assert_eq!(first["seq"], 1);

    for client in [&mut alice, &mut bob] {
        let message = client.next_of("room.message").await;
        assert_eq!(message["message_id"], first["message_id"]);
        assert_eq!(message["client_msg_id"], "c-1");
        assert_eq!(message["from"]["id"], alice_id.as_str());
        client.assert_no("room.message", QUIET).await;
    }

    // Another user's `c-1` is their own message.
    let bobs = bob
        .ok(json!({"type": "room.send", "room_id": room_id, "text": "mine", "client_msg_id": "c-1"}))
        .await;
    assert_ne!(bobs["message_id"], first["message_id"]);
    assert_eq!(bobs["seq"], 2);
    for client in [&mut alice, &mut bob] {
        let message = client.next_of("room.message").await;
        assert_eq!(message["message_id"], bobs["message_id"]);
        assert_eq!(message["from"]["id"], bob_id.as_str());
        assert_eq!(message["text"], "mine");
    }
    // And the repeat of alice's still answers her first send.
    assert_eq!(alice.ok(frame).await, first);
    let (_, seq) = say(&mut alice, &room_id, "after").await;
    assert_eq!(seq, 3, "repeats take no seq");
    for client in [&mut alice, &mut bob] {
        let message = client.next_of("room.message").await;
        assert_eq!(message["seq"], 3);
        client.assert_no("room.message", QUIET).await;
    }
    server.shutdown().await;
}

async fn join_since_seq_recovers_from_the_history_window(server: Place) {
    let (mut alice, _, alice_id) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let (mut carol, _, _) = server.person("carol").await;
    let room_id = create_room(&mut alice, "history").await;

    // A new room: since_seq 0 is fully recovered, with nothing in it.
    let joined = join_since(&mut carol, &room_id, 0).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["last_seq"], 0);
    assert_eq!(joined["messages"], json!([]));
    leave(&mut carol, &room_id).await;

    for i in 1..=30 {
        let (_, seq) = say(&mut alice, &room_id, &format!("m{i}")).await;
        assert_eq!(seq, i);
    }

    let joined = join_since(&mut bob, &room_id, 10).await;
    let messages = message_list(&joined);
    assert_eq!(seqs(&messages), (11..=30).collect::<Vec<_>>());
    for message in &messages {
        assert_eq!(message["room_id"], room_id.as_str());
        assert_eq!(message["from"]["id"], alice_id.as_str());
        assert_eq!(message["text"], format!("m{}", message["seq"]));
    }
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["last_seq"], 30);
    leave(&mut bob, &room_id).await;

    let joined = join_since(&mut bob, &room_id, 30).await;
    assert_eq!(joined["messages"], json!([]), "{joined}");
    assert_eq!(joined["recovered"], true);
    assert_eq!(joined["last_seq"], 30);
    leave(&mut bob, &room_id).await;

    let joined = join(&mut bob, &room_id).await;
    assert_eq!(
        seqs(&message_list(&joined)),
        (1..=30).collect::<Vec<_>>(),
        "a plain join returns the latest (up to 50)"
    );
    assert_eq!(joined["recovered"], false);
    assert_eq!(joined["last_seq"], 30);
    leave(&mut bob, &room_id).await;

    // A seq this room never reached cannot be recovered from.
    let joined = join_since(&mut bob, &room_id, 31).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["last_seq"], 30);
    let returned = seqs(&message_list(&joined));
    assert!(
        returned.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous: {returned:?}"
    );
    assert!(
        returned.last().is_none_or(|&last| last == 30),
        "ends at last_seq: {returned:?}"
    );
    leave(&mut bob, &room_id).await;

    for i in 31..=150 {
        say(&mut alice, &room_id, &format!("m{i}")).await;
    }

    // Seq 6.. fell out of a 100-message window: the latest, unrecovered.
    let joined = join_since(&mut bob, &room_id, 5).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["last_seq"], 150);
    let returned = seqs(&message_list(&joined));
    assert!(!returned.is_empty(), "the latest messages come back");
    assert!(
        returned.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous: {returned:?}"
    );
    assert_eq!(returned.last(), Some(&150), "ends at last_seq");
    leave(&mut bob, &room_id).await;

    // Exactly the window (51..=150) is still recoverable.
    let joined = join_since(&mut bob, &room_id, 50).await;
    assert_eq!(joined["recovered"], true, "the whole window is held");
    assert_eq!(seqs(&message_list(&joined)), (51..=150).collect::<Vec<_>>());
    leave(&mut bob, &room_id).await;

    let joined = join(&mut bob, &room_id).await;
    assert_eq!(joined["recovered"], false);
    assert_eq!(
        seqs(&message_list(&joined)),
        (101..=150).collect::<Vec<_>>(),
        "a plain join returns the 50 latest"
    );
    server.shutdown().await;
}

async fn leaving_and_rejoining_since_seq_recovers_exactly_what_was_missed(server: Place) {
    let (mut alice, _, _) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let room_id = create_room(&mut alice, "away").await;
    join(&mut bob, &room_id).await;

    for i in 1..=5 {
        say(&mut alice, &room_id, &format!("before {i}")).await;
    }
    let seen = take_messages(&mut bob, &room_id, 5).await;
    assert_eq!(seqs(&seen), vec![1, 2, 3, 4, 5]);
    let last_seen = 5;

    leave(&mut bob, &room_id).await;
    for i in 6..=12 {
        say(&mut alice, &room_id, &format!("while away {i}")).await;
    }
    bob.assert_no("room.message", QUIET).await;

    let joined = join_since(&mut bob, &room_id, last_seen).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["last_seq"], 12);
    let missed = message_list(&joined);
    assert_eq!(seqs(&missed), (6..=12).collect::<Vec<_>>());
    for message in &missed {
        assert_eq!(message["text"], format!("while away {}", message["seq"]));
    }

    // Live delivery resumes right after, with nothing doubled.
    say(&mut alice, &room_id, "back").await;
    let live = take_messages(&mut bob, &room_id, 1).await;
    assert_eq!(live[0]["seq"], 13);
    assert_eq!(live[0]["text"], "back");
    bob.assert_no("room.message", QUIET).await;
    server.shutdown().await;
}

async fn several_sockets_of_one_user_count_as_one_member(server: Place) {
    let (mut alice, alice_token, alice_id) = server.person("alice").await;
    let (mut bob, _, bob_id) = server.person("bob").await;
    let room_id = create_room(&mut alice, "two tabs").await;
    join(&mut bob, &room_id).await;
    let bob_joined = alice.next_of("room.member_joined").await;
    assert_eq!(bob_joined["user"]["id"], bob_id.as_str());

    let mut alice_tab = server.socket(&alice_token).await;
    let joined = join(&mut alice_tab, &room_id).await;
    assert_eq!(joined["room"]["member_count"], 2);
    let members = member_ids(&joined);
    assert_eq!(members.len(), 2, "alice is listed once: {members:?}");
    assert!(members.contains(&alice_id) && members.contains(&bob_id));
    bob.assert_no("room.member_joined", QUIET).await;
    alice.assert_no("room.member_joined", Duration::ZERO).await;

    // Messages reach both of alice's sockets.
    let (sent_id, _) = say(&mut bob, &room_id, "to both tabs").await;
    for client in [&mut alice, &mut alice_tab] {
        let message = client.next_of("room.message").await;
        assert_eq!(message["message_id"], sent_id.as_str());
    }

    // One socket leaving is not alice leaving.
    leave(&mut alice, &room_id).await;
    bob.assert_no("room.member_left", QUIET).await;
    assert_eq!(listed(&mut bob, &room_id).await.unwrap()["member_count"], 2);
    let (sent_id, _) = say(&mut bob, &room_id, "tab two only").await;
    let message = alice_tab.next_of("room.message").await;
    assert_eq!(message["message_id"], sent_id.as_str());
    alice.assert_no("room.message", QUIET).await;

    // Her last socket closing is.
    alice_tab.close().await;
    let left = bob.next_of("room.member_left").await;
    assert_eq!(left["room_id"], room_id.as_str());
    assert_eq!(left["user_id"], alice_id.as_str());
    assert_eq!(listed(&mut bob, &room_id).await.unwrap()["member_count"], 1);

    // Two sockets joining afresh: one announcement; closing the first is
    // silent, closing the second announces the leave.
    let mut tab_a = server.socket(&alice_token).await;
    let mut tab_b = server.socket(&alice_token).await;
    join(&mut tab_a, &room_id).await;
    let again = bob.next_of("room.member_joined").await;
    assert_eq!(again["user"]["id"], alice_id.as_str());
    join(&mut tab_b, &room_id).await;
    bob.assert_no("room.member_joined", QUIET).await;
    tab_a.close().await;
    bob.assert_no("room.member_left", QUIET).await;
    tab_b.close().await;
    let left = bob.next_of("room.member_left").await;
    assert_eq!(left["user_id"], alice_id.as_str());
    bob.assert_no("room.member_left", QUIET).await;
    server.shutdown().await;
}

async fn a_closed_socket_leaves_its_rooms(server: Place) {
    let (mut alice, _, _) = server.person("alice").await;
    let (mut bob, _, bob_id) = server.person("bob").await;
    let (mut carol, _, carol_id) = server.person("carol").await;
    let (mut dave, _, _) = server.person("dave").await;
    let room_id = create_room(&mut alice, "closing").await;
    let other_room = create_room(&mut dave, "other").await;
    join(&mut bob, &room_id).await;
    join(&mut bob, &other_room).await;
    join(&mut carol, &room_id).await;

    // A clean close.
    bob.close().await;
    for client in [&mut alice, &mut carol] {
        let left = client
            .next_matching(|f| f["type"] == "room.member_left" && f["user_id"] == bob_id.as_str())
            .await;
        assert_eq!(left["room_id"], room_id.as_str());
    }
    let left = dave.next_of("room.member_left").await;
    assert_eq!(left["room_id"], other_room.as_str());
    assert_eq!(left["user_id"], bob_id.as_str());

    // A dropped connection, without a close frame.
    drop(carol);
    let left = alice
        .next_matching(|f| f["type"] == "room.member_left" && f["user_id"] == carol_id.as_str())
        .await;
    assert_eq!(left["room_id"], room_id.as_str());
    assert_eq!(
        listed(&mut alice, &room_id).await.unwrap()["member_count"],
        1
    );
    assert_eq!(
        listed(&mut dave, &other_room).await.unwrap()["member_count"],
        1
    );
    server.shutdown().await;
}

async fn with_no_grace_an_empty_room_closes_at_once(server: Place) {
    let (mut alice, _, _) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let (mut watcher, _, _) = server.person("watcher").await;
    watcher.ok(json!({"type": "rooms.watch"})).await;

    let room_id = create_room(&mut alice, "brief").await;
    join(&mut bob, &room_id).await;
    leave(&mut bob, &room_id).await;
    assert!(
        listed(&mut bob, &room_id).await.is_some(),
        "alice is still in"
    );

    leave(&mut alice, &room_id).await;
    assert!(
        listed(&mut bob, &room_id).await.is_none(),
        "gone as soon as the last member left"
    );
    let closed = watcher
        .next_matching(|f| f["type"] == "rooms.changed" && f["closed"] == true)
        .await;
    assert_eq!(closed["room_id"], room_id.as_str());
    bob.err(
        json!({"type": "room.join", "room_id": room_id}),
        "not_found",
    )
    .await;
    server.shutdown().await;
}

async fn within_the_grace_an_empty_room_stays_open_and_a_join_keeps_it(server: Place) {
    let (mut alice, _, _) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let (mut watcher, _, _) = server.person("watcher").await;
    watcher.ok(json!({"type": "rooms.watch"})).await;

    let room_id = create_room(&mut alice, "lingering").await;
    leave(&mut alice, &room_id).await;
    let still = listed(&mut alice, &room_id).await;
    let still = still.expect("listed right after it empties");
    assert_eq!(still["member_count"], 0);

    let joined = join(&mut bob, &room_id).await;
    assert_eq!(joined["room"]["member_count"], 1);

    // Well past the first grace: the join kept it open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let kept = listed(&mut alice, &room_id).await;
    assert_eq!(kept.expect("kept open by the join")["member_count"], 1);
    say(&mut bob, &room_id, "still here").await;

    leave(&mut bob, &room_id).await;
    assert!(
        gone_within(&mut alice, &room_id, Duration::from_secs(20)).await,
        "an empty room closes once past the grace"
    );
    let closed = watcher
        .next_matching(|f| f["type"] == "rooms.changed" && f["closed"] == true)
        .await;
    assert_eq!(closed["room_id"], room_id.as_str());
    alice
        .err(
            json!({"type": "room.join", "room_id": room_id}),
            "not_found",
        )
        .await;
    server.shutdown().await;
}

async fn rooms_watch_pushes_opens_count_changes_and_closes(server: Place) {
    let (mut alice, _, alice_id) = server.person("alice").await;
    let (mut bob, _, _) = server.person("bob").await;
    let (mut carol, _, _) = server.person("carol").await;
    let (mut watcher, _, _) = server.person("watcher").await;

    let earlier = create_room(&mut carol, "earlier").await;
    let data = watcher.ok(json!({"type": "rooms.watch"})).await;
    let rooms = data["rooms"].as_array().expect("ok data {rooms}");
    assert_eq!(rooms.len(), 1, "{data}");
    assert_eq!(rooms[0]["id"], earlier.as_str());
    assert_eq!(rooms[0]["member_count"], 1);

    let room_id = create_room(&mut alice, "watched").await;
    let opened = next_change(&mut watcher, &room_id).await;
    assert_eq!(opened["room"]["name"], "watched");
    assert_eq!(opened["room"]["host_id"], alice_id.as_str());
    assert_eq!(opened["room"]["member_count"], 1);

    join(&mut bob, &room_id).await;
    let change = next_change(&mut watcher, &room_id).await;
    assert_eq!(change["room"]["member_count"], 2, "{change}");

    leave(&mut bob, &room_id).await;
    let change = next_change(&mut watcher, &room_id).await;
    assert_eq!(change["room"]["member_count"], 1, "{change}");

    leave(&mut alice, &room_id).await;
    let closed = watcher
        .next_matching(|f| f["type"] == "rooms.changed" && f["room_id"] == room_id.as_str())
        .await;
    assert_eq!(closed["closed"], true, "{closed}");
    assert!(closed.get("ref").is_none(), "{closed}");

    // Only watchers hear about the directory.
    bob.assert_no("rooms.changed", QUIET).await;
    alice.assert_no("rooms.changed", Duration::ZERO).await;
    server.shutdown().await;
}

async fn many_members_receive_every_message_once_and_in_order(server: Place) {
    const MEMBERS: usize = 25;
    const SENDERS: usize = 5;
    const PER_SENDER: usize = 20;
    const TOTAL: usize = SENDERS * PER_SENDER;

    let people = users(&server, "fan", MEMBERS).await;
    let ids: Vec<String> = people.iter().map(|(_, _, id)| id.clone()).collect();
    let mut clients: Vec<WsClient> = people.into_iter().map(|(c, _, _)| c).collect();

    let room_id = create_room_with_capacity(&mut clients[0], "crowd", 100).await;
    let joins = join_all(clients[1..].iter_mut().map(|c| join(c, &room_id))).await;
    assert!(joins.iter().all(|j| j["last_seq"] == 0));
    assert_eq!(
        listed(&mut clients[0], &room_id).await.unwrap()["member_count"],
        MEMBERS
    );

    // Every fifth member sends; everyone (senders too) listens.
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, mut client)| {
            let room_id = room_id.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                if index % (MEMBERS / SENDERS) == 0 {
                    for j in 0..PER_SENDER {
                        let text = format!("from {index} #{j:02}");
                        let ok = client
                            .ok(json!({"type": "room.send", "room_id": room_id, "text": text}))
                            .await;
                        sent.push((text, ok));
                    }
                }
                let received = take_messages(&mut client, &room_id, TOTAL).await;
                (client, sent, received)
            })
        })
        .collect();
    let results = generously(join_all(tasks)).await;

    let mut clients = Vec::new();
    let mut expected: HashSet<(String, String)> = HashSet::new();
    let mut acks: HashMap<String, Value> = HashMap::new();
    let mut per_sender: HashMap<String, Vec<String>> = HashMap::new();
    let mut received_by = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        let (client, sent, received) = result.expect("member task");
        for (text, ok) in sent {
            assert!(expected.insert((ids[index].clone(), text.clone())));
            per_sender
                .entry(ids[index].clone())
                .or_default()
                .push(text.clone());
            acks.insert(text, ok);
        }
        clients.push(client);
        received_by.push(received);
    }
    assert_eq!(expected.len(), TOTAL);

    let reference: Vec<Value> = received_by[0]
        .iter()
        .map(|m| m["message_id"].clone())
        .collect();
    for (index, received) in received_by.iter().enumerate() {
        assert_eq!(
            seqs(received),
            (1..=TOTAL as u64).collect::<Vec<_>>(),
            "member {index}: every seq once, in order, no gaps"
        );
        let got: HashSet<(String, String)> = received
            .iter()
            .map(|m| (text_of(&m["from"]["id"]), text_of(&m["text"])))
            .collect();
        assert_eq!(got, expected, "member {index} got what was sent");
        let order: Vec<Value> = received.iter().map(|m| m["message_id"].clone()).collect();
        assert_eq!(order, reference, "member {index} saw the same order");
        for message in received {
            let ack = &acks[&text_of(&message["text"])];
            assert_eq!(message["seq"], ack["seq"], "{message} vs ack {ack}");
            assert_eq!(message["message_id"], ack["message_id"]);
        }
        // Each sender's messages keep the order they were sent in.
        for (sender, texts) in &per_sender {
            let theirs: Vec<String> = received
                .iter()
                .filter(|m| m["from"]["id"] == sender.as_str())
                .map(|m| text_of(&m["text"]))
                .collect();
            assert_eq!(&theirs, texts, "member {index}, sender {sender}");
        }
    }
    join_all(
        clients
            .iter_mut()
            .map(|c| c.assert_no("room.message", QUIET)),
    )
    .await;
    server.shutdown().await;
}

async fn seq_order_is_identical_on_every_member(server: Place) {
    const MEMBERS: usize = 6;
    const PER_MEMBER: usize = 15;
    const TOTAL: usize = MEMBERS * PER_MEMBER;

    let mut clients: Vec<WsClient> = users(&server, "order", MEMBERS)
        .await
        .into_iter()
        .map(|(c, _, _)| c)
        .collect();
    let room_id = create_room(&mut clients[0], "order").await;
    join_all(clients[1..].iter_mut().map(|c| join(c, &room_id))).await;

    // Everyone sends at once, pipelined, without waiting for replies.
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, client)| {
            let frames = (0..PER_MEMBER)
                .map(|j| {
                    json!({"type": "room.send", "room_id": room_id, "text": format!("{index}/{j}")})
                })
                .collect();
            tokio::spawn(async move {
                burst(
                    client,
                    &index.to_string(),
                    frames,
                    "room.message",
                    TOTAL,
                    QUIET,
                )
                .await
            })
        })
        .collect();
    let results = generously(join_all(tasks)).await;

    let mut orders = Vec::new();
    let mut acked: HashMap<String, u64> = HashMap::new();
    for result in results {
        let run = result.expect("member task");
        let own_seqs: Vec<u64> = run.acked.iter().map(|(_, seq)| *seq).collect();
        assert!(
            own_seqs.windows(2).all(|w| w[0] < w[1]),
            "one socket's sends keep their order: {own_seqs:?}"
        );
        acked.extend(run.acked);
        assert_eq!(seqs(&run.pushes), (1..=TOTAL as u64).collect::<Vec<_>>());
        orders.push(
            run.pushes
                .iter()
                .map(|m| text_of(&m["message_id"]))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(acked.len(), TOTAL, "every send got its own message_id");
    for (index, order) in orders.iter().enumerate() {
        assert_eq!(order, &orders[0], "member {index} saw the same order");
        for (position, message_id) in order.iter().enumerate() {
            assert_eq!(acked[message_id], position as u64 + 1, "{message_id}");
        }
    }
    server.shutdown().await;
}

room_contract! {
    seq_order_is_identical_on_every_member: RoomKnobs::default(),
    many_members_receive_every_message_once_and_in_order: RoomKnobs::default(),
    room_create_validates_and_makes_the_creator_a_member_and_host: RoomKnobs::default(),
    room_list_and_rest_directory_show_open_rooms_with_true_member_counts: RoomKnobs::default(),
    a_full_room_refuses_newcomers_until_someone_leaves: RoomKnobs::default(),
    unknown_rooms_are_not_found_and_non_members_are_forbidden: RoomKnobs::default(),
    room_send_validates_text_and_client_msg_id: RoomKnobs::default(),
    typing_reaches_the_others_but_not_the_typist: RoomKnobs::default(),
    a_repeated_client_msg_id_is_delivered_once_per_user: RoomKnobs::default(),
    join_since_seq_recovers_from_the_history_window: RoomKnobs { room_history: Some(100), ..RoomKnobs::default() },
    leaving_and_rejoining_since_seq_recovers_exactly_what_was_missed: RoomKnobs::default(),
    several_sockets_of_one_user_count_as_one_member: RoomKnobs::default(),
    a_closed_socket_leaves_its_rooms: RoomKnobs::default(),
    with_no_grace_an_empty_room_closes_at_once: RoomKnobs { room_empty_grace_secs: Some(0), ..RoomKnobs::default() },
    within_the_grace_an_empty_room_stays_open_and_a_join_keeps_it: RoomKnobs { room_empty_grace_secs: Some(1), ..RoomKnobs::default() },
    rooms_watch_pushes_opens_count_changes_and_closes: RoomKnobs { room_empty_grace_secs: Some(0), ..RoomKnobs::default() },
}
