//! Editing and deleting messages (SAFETY-v1, "Messages: edit and delete")
//! over real sockets, on one node (SQLite, rooms in memory) and on two
//! (Postgres, rooms in Redis): the pushes reach every socket, the change
//! shows wherever the message shows later, and only those the contract
//! names may make it.

use std::time::Duration;

use crate::common::chat::{create_room, join, join_since, say};
use crate::common::json::text_of;
use crate::common::place::{Place, RoomKnobs};
use crate::common::platform::match_pair;
use crate::common::TestServer;
use crate::room_contract;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(300);
/// Room history kept in these tests, so the window's edge is near.
const WINDOW: u32 = 5;

fn room_edit(room_id: &str, message_id: &str, text: &str) -> Value {
    json!({"type": "room.edit", "room_id": room_id, "message_id": message_id, "text": text})
}

fn room_delete(room_id: &str, message_id: &str) -> Value {
    json!({"type": "room.delete", "room_id": room_id, "message_id": message_id})
}

fn dm_edit(conversation: &str, message_id: &str, text: &str) -> Value {
    json!({"type": "dm.edit", "conversation_id": conversation, "message_id": message_id, "text": text})
}

fn dm_delete(conversation: &str, message_id: &str) -> Value {
    json!({"type": "dm.delete", "conversation_id": conversation, "message_id": message_id})
}

fn find<'a>(messages: &'a Value, message_id: &str) -> &'a Value {
    messages
        .as_array()
        .unwrap_or_else(|| panic!("a list of messages: {messages}"))
        .iter()
        .find(|m| m["message_id"] == message_id)
        .unwrap_or_else(|| panic!("{message_id} missing from {messages}"))
}

async fn authors_edit_and_delete_and_everyone_sees_it_later_too(place: Place) {
    let (mut alice, _, _) = place.person("alice").await;
    let (mut bob, _, bob_id) = place.person("bob").await;
    let room_id = create_room(&mut alice, "edits").await;
    join(&mut bob, &room_id).await;

    let (first, first_seq) = say(&mut alice, &room_id, "helo all").await;
    alice.next_of("room.message").await;
    bob.next_of("room.message").await;
    let data = alice.ok(room_edit(&room_id, &first, "hello all")).await;
    assert_eq!(data, json!({}));
    for member in [&mut alice, &mut bob] {
        let edited = member.next_of("room.message_edited").await;
        assert_eq!(edited["room_id"], room_id.as_str(), "{edited}");
        assert_eq!(edited["message_id"], first.as_str(), "{edited}");
        assert_eq!(edited["seq"], first_seq, "an edit keeps the seq: {edited}");
        assert_eq!(edited["text"], "hello all", "{edited}");
        assert!(edited["edited_at"].is_string(), "{edited}");
    }

    let (second, second_seq) = say(&mut bob, &room_id, "oops, wrong room").await;
    bob.ok(room_delete(&room_id, &second)).await;
    for member in [&mut alice, &mut bob] {
        let deleted = member.next_of("room.message_deleted").await;
        assert_eq!(
            deleted,
            json!({
                "type": "room.message_deleted",
                "room_id": room_id,
                "message_id": second,
                "seq": second_seq,
                "deleted_by": bob_id,
            })
        );
    }

    // Later joins show the message as it is now, recovered or not.
    let (mut carol, _, _) = place.person("carol").await;
    for joined in [
        join(&mut carol, &room_id).await,
        join_since(&mut carol, &room_id, 0).await,
    ] {
        let edited = find(&joined["messages"], &first);
        assert_eq!(edited["text"], "hello all", "{edited}");
        assert!(edited["edited_at"].is_string(), "{edited}");
        assert!(edited.get("deleted").is_none(), "{edited}");
        let deleted = find(&joined["messages"], &second);
        assert_eq!(deleted["deleted"], true, "{deleted}");
        assert_eq!(deleted["text"], "", "{deleted}");
        assert_eq!(deleted["seq"], second_seq, "{deleted}");
    }
    place.shutdown().await;
}

async fn nobody_changes_what_is_not_theirs_to_change(place: Place) {
    let (mut alice, _, _) = place.person("alice").await;
    let (mut bob, _, _) = place.person("bob").await;
    let (mut carol, _, _) = place.person("carol").await;
    let room_id = create_room(&mut alice, "rules").await;
    join(&mut bob, &room_id).await;
    join(&mut carol, &room_id).await;
    let (bobs, _) = say(&mut bob, &room_id, "bob's words").await;
    let (alices, _) = say(&mut alice, &room_id, "alice's words").await;

    // Nobody edits someone else's message, the host included.
    carol
        .err(room_edit(&room_id, &bobs, "carol's now"), "forbidden")
        .await;
    alice
        .err(room_edit(&room_id, &bobs, "the host's now"), "forbidden")
        .await;
    // A member deletes only their own; the host deletes any.
    carol.err(room_delete(&room_id, &bobs), "forbidden").await;
    bob.err(room_delete(&room_id, &alices), "forbidden").await;
    bob.assert_no("room.message_deleted", QUIET).await;
    alice.ok(room_delete(&room_id, &bobs)).await;
    let deleted = bob.next_of("room.message_deleted").await;
    assert_eq!(deleted["message_id"], bobs.as_str(), "{deleted}");

    // A deleted message cannot change again; bad input changes nothing.
    bob.err(room_edit(&room_id, &bobs, "back"), "not_found")
        .await;
    alice.err(room_delete(&room_id, &bobs), "not_found").await;
    alice
        .err(room_edit(&room_id, &alices, "   "), "bad_request")
        .await;
    alice
        .err(room_edit(&room_id, &alices, &"x".repeat(4001)), "too_large")
        .await;
    alice
        .err(room_edit(&room_id, "m_nothing", "hi"), "not_found")
        .await;
    alice
        .err(room_edit("r_missing", &alices, "hi"), "not_found")
        .await;
    carol.assert_no("room.message_edited", QUIET).await;

    // An author who left the room may not change their words there.
    crate::common::chat::leave(&mut bob, &room_id).await;
    let (later, _) = say(&mut carol, &room_id, "carol stays").await;
    crate::common::chat::leave(&mut carol, &room_id).await;
    carol
        .err(
            room_edit(&room_id, &later, "edited from outside"),
            "forbidden",
        )
        .await;
    place.shutdown().await;
}

async fn only_messages_in_the_history_window_change(place: Place) {
    let (mut alice, _, _) = place.person("alice").await;
    let room_id = create_room(&mut alice, "window").await;
    let (oldest, _) = say(&mut alice, &room_id, "soon out of the window").await;
    for n in 0..WINDOW {
        say(&mut alice, &room_id, &format!("filler {n}")).await;
    }
    alice
        .err(room_edit(&room_id, &oldest, "too late"), "not_found")
        .await;
    alice.err(room_delete(&room_id, &oldest), "not_found").await;
    let (newest, _) = say(&mut alice, &room_id, "still here").await;
    alice.ok(room_edit(&room_id, &newest, "still here!")).await;
    place.shutdown().await;
}

async fn direct_messages_change_for_both_and_stay_changed(place: Place) {
    let (mut ann, ann_token, _) = place.person("ann").await;
    let (mut ben, ben_token, ben_id) = place.person("ben").await;
    let api = place.api();
    let conversation = match_pair(api, &ann_token, api, &ben_token, &ben_id).await;
    let send =
        |text: &str| json!({"type": "dm.send", "conversation_id": conversation, "text": text});

    let sent = ann.ok(send("lunhc tomorrow?")).await;
    let typo = text_of(&sent["message_id"]);
    let seq = sent["seq"].clone();
    let sent = ann.ok(send("sorry, wrong chat")).await;
    let wrong = text_of(&sent["message_id"]);

    ann.ok(dm_edit(&conversation, &typo, "lunch tomorrow?"))
        .await;
    for side in [&mut ann, &mut ben] {
        let edited = side.next_of("dm.message_edited").await;
        assert_eq!(edited["conversation_id"], conversation.as_str(), "{edited}");
        assert_eq!(edited["message_id"], typo.as_str(), "{edited}");
        assert_eq!(edited["seq"], seq, "{edited}");
        assert_eq!(edited["text"], "lunch tomorrow?", "{edited}");
        assert!(edited["edited_at"].is_string(), "{edited}");
    }
    ann.ok(dm_delete(&conversation, &wrong)).await;
    for side in [&mut ann, &mut ben] {
        let deleted = side.next_of("dm.message_deleted").await;
        assert_eq!(deleted["message_id"], wrong.as_str(), "{deleted}");
    }

    // The other participant may change neither; a deleted one is gone.
    ben.err(dm_edit(&conversation, &typo, "ben's now"), "forbidden")
        .await;
    ben.err(dm_delete(&conversation, &typo), "forbidden").await;
    ann.err(dm_edit(&conversation, &wrong, "back"), "not_found")
        .await;
    ann.err(dm_delete(&conversation, &wrong), "not_found").await;
    ann.err(dm_edit(&conversation, &typo, ""), "bad_request")
        .await;
    ann.err(dm_edit(&conversation, "d_nothing", "hi"), "not_found")
        .await;
    ann.err(dm_edit("999999", &typo, "hi"), "not_found").await;
    let (mut eve, _, _) = place.person("eve").await;
    eve.err(dm_delete(&conversation, &typo), "forbidden").await;

    // History on the socket and over REST, and the list's last message.
    let data = ben
        .ok(json!({"type": "dm.history", "conversation_id": conversation}))
        .await;
    let edited = find(&data["messages"], &typo);
    assert_eq!(edited["text"], "lunch tomorrow?", "{edited}");
    assert!(edited["edited_at"].is_string(), "{edited}");
    let deleted = find(&data["messages"], &wrong);
    assert_eq!(
        (deleted["deleted"].clone(), deleted["text"].clone()),
        (json!(true), json!(""))
    );
    let (status, body) = api
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&ben_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(find(&body["items"], &wrong)["deleted"], true, "{body}");
    let (status, list) = api.get("/api/v1/conversations", Some(&ben_token)).await;
    assert_eq!(status, 200, "{list}");
    let last = &list["items"][0]["last_message"];
    assert_eq!(last["message_id"], wrong.as_str(), "{list}");
    assert_eq!(last["deleted"], true, "{list}");
    assert_eq!(last["text"], "", "{list}");
    place.shutdown().await;
}

room_contract! {
    authors_edit_and_delete_and_everyone_sees_it_later_too: RoomKnobs::default(),
    nobody_changes_what_is_not_theirs_to_change: RoomKnobs::default(),
    only_messages_in_the_history_window_change: RoomKnobs { room_history: Some(WINDOW), ..RoomKnobs::default() },
    direct_messages_change_for_both_and_stay_changed: RoomKnobs::default(),
}

#[tokio::test]
async fn moderators_delete_any_room_message_on_the_record() {
    const ADMIN: &str = "root_admin";
    let server = TestServer::start_with(|config| config.admin_handles = vec![ADMIN.into()]).await;
    let (admin_token, _) = server.admin(ADMIN).await;
    let (_, mod_token, mod_id) = server.user("mod_mia").await;
    server.set_role(&admin_token, &mod_id, "moderator").await;
    let mut moderator = server.client(&mod_token).await;
    let (mut alice, _, _) = server.user("alice").await;
    let (mut bob, _, bob_id) = server.user("bob").await;
    let room_id = create_room(&mut alice, "watched").await;
    join(&mut bob, &room_id).await;
    let (spam, _) = say(&mut bob, &room_id, "buy my course").await;

    // A moderator need not be inside, and may still not edit.
    moderator
        .err(room_edit(&room_id, &spam, "nicer"), "forbidden")
        .await;
    moderator.ok(room_delete(&room_id, &spam)).await;
    let deleted = alice.next_of("room.message_deleted").await;
    assert_eq!(deleted["deleted_by"], mod_id.as_str(), "{deleted}");

    let (status, page) = server
        .get("/api/v1/admin/audit?limit=50", Some(&admin_token))
        .await;
    assert_eq!(status, 200, "{page}");
    let entry = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "message.delete")
        .unwrap_or_else(|| panic!("the delete is audited: {page}"))
        .clone();
    assert_eq!(entry["actor_id"], mod_id.as_str(), "{entry}");
    assert_eq!(entry["target"], format!("room_message:{spam}"), "{entry}");
    assert_eq!(entry["data"]["author_id"], bob_id.as_str(), "{entry}");
    assert_eq!(entry["data"]["as"], "staff", "{entry}");
    server.shutdown().await;
}
