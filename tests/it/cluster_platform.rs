//! The platform features on several nodes, as PRODUCT, PROTOCOL-v1 and
//! REST-v1 promise them: notifications, session revocation, event and
//! community rooms, moderator closes, the room directory's live view and
//! matched pairs' conversations and presence work whichever node each
//! user, socket or REST call lands on.
//!
//! Every test runs at least two in-process nodes on its own Postgres
//! database and Redis key prefix (see `crate::common::cluster`). They need
//! Postgres on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (or
//! MESHI_TEST_POSTGRES_URL / MESHI_TEST_REDIS_URL) and fail saying how to
//! start what is missing.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::chat::{
    assert_alive, create_room, find_room, is_message_of, join, presence_statuses, relay, room_list,
    sees_joined,
};
use crate::common::cluster::{Cluster, Node, NodeKind, Settings};
use crate::common::json::{ids, notification_in, seq_of, text_of};
use crate::common::platform::{
    create_match, join_community, match_pair, new_card, new_community, new_event, press_interest,
    rsvp,
};
use crate::common::services::shared_redis;
use crate::common::wait::{assert_quiet, eventually, wait_for};
use crate::common::{Ended, WsClient};
use serde_json::{json, Value};

/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(500);
/// Bound for something that crosses nodes and may be eventually consistent.
const SETTLE: Duration = Duration::from_secs(5);
/// Bound for a close the server should send soon.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// Far enough ahead that events are always upcoming.
const STARTS_AT: &str = "2099-03-01T18:00:00Z";

// ------------------------------------------------------------- helpers

/// Waits for `room.closed` of `room_id` and checks its reason.
async fn sees_closed(client: &mut WsClient, room_id: &str, reason: &str, who: &str) {
    let closed = wait_for(
        client,
        crate::common::RECV_TIMEOUT,
        &format!("{who} waits for room.closed of {room_id}"),
        |f| f["type"] == "room.closed" && f["room_id"] == room_id,
    )
    .await;
    assert_eq!(
        closed,
        json!({"type": "room.closed", "room_id": room_id, "reason": reason}),
        "{who} sees why the room closed"
    );
}

/// A former member writes into a closed room: `not_found`, and the room
/// stays closed (it must not be put back in Redis with its old members).
async fn send_after_close(client: &mut WsClient, room_id: &str, who: &str) {
    let reply = client
        .request(json!({"type": "room.send", "room_id": room_id, "text": "still here?"}))
        .await;
    assert_eq!(
        (&reply["type"], &reply["error"]["code"]),
        (&json!("error"), &json!("not_found")),
        "{who}: room.send into the closed room {room_id} answered {reply}"
    );
}

/// Someone joins a closed room: `not_found`, and the room stays closed.
async fn join_after_close(client: &mut WsClient, room_id: &str, who: &str) {
    let reply = client
        .request(json!({"type": "room.join", "room_id": room_id}))
        .await;
    assert_eq!(
        (&reply["type"], &reply["error"]["code"]),
        (&json!("error"), &json!("not_found")),
        "{who}: room.join of the closed room {room_id} answered {reply}"
    );
}

/// The ids of `room.list` on this socket.
async fn listed_room_ids(client: &mut WsClient) -> Vec<String> {
    ids(&room_list(client).await)
}

/// Waits for a `notification` push of this kind; checks it and returns
/// its body.
async fn notification(client: &mut WsClient, kind: &str, who: &str) -> Value {
    let frame = wait_for(
        client,
        crate::common::RECV_TIMEOUT,
        &format!("{who} waits for a `{kind}` notification"),
        |f| f["type"] == "notification" && f["notification"]["kind"] == kind,
    )
    .await;
    notification_in(&frame, kind)
}

/// The stored notifications of `token`'s user, newest first, read on `node`.
async fn stored_notifications(node: &Node, token: &str) -> Vec<Value> {
    node.page("/api/v1/notifications", token).await.0
}

// ------------------------------------------------------------- 1. notifications

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_sockets_on_other_nodes() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, Settings::default()).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (mut b_ws, b_token, b_id) = n2.user("card_owner_b").await;
    let (mut a_ws, a_token, a_id) = n1.user("fan_a").await;
    // A second socket of A on B's node: notifications go to every socket.
    let mut a_ws2 = n2.client(&a_token).await;

    // B's card, made on node 2; A presses interested through node 1.
    let card = text_of(&new_card(n2, &b_token, "Let's talk Rust", "let us talk", &[]).await["id"]);
    press_interest(n1, &card, &a_token).await;
    let interest = notification(&mut b_ws, "interest_received", "B on node 2").await;
    assert_eq!(interest["data"]["card_id"], card.as_str(), "{interest}");
    assert_eq!(interest["data"]["user"]["id"], a_id.as_str(), "{interest}");
    assert_eq!(interest["data"]["user"]["handle"], "fan_a", "{interest}");
    for (who, client) in [("A on node 1", &mut a_ws), ("A on node 2", &mut a_ws2)] {
        assert_quiet(client, QUIET, &format!("{who} (not theirs)"), |f| {
            f["type"] == "notification"
        })
        .await;
    }
    // What was pushed on node 2 is what node 1 lists.
    let stored = stored_notifications(n1, &b_token).await;
    assert_eq!(
        stored,
        std::slice::from_ref(&interest),
        "B's notifications on node 1"
    );

    // B matches A through node 2: A hears of it on node 1 (and node 2).
    let record = create_match(n2, &card, &b_token, &a_id).await;
    let conversation = text_of(&record["conversation_id"]);
    let to_a = notification(&mut a_ws, "matched", "A on node 1").await;
    assert_eq!(
        to_a["data"]["conversation_id"],
        conversation.as_str(),
        "{to_a}"
    );
    assert_eq!(to_a["data"]["card_id"], card.as_str(), "{to_a}");
    assert_eq!(to_a["data"]["user"]["id"], b_id.as_str(), "{to_a}");
    let to_a2 = notification(&mut a_ws2, "matched", "A's second socket on node 2").await;
    assert_eq!(to_a2, to_a, "both of A's sockets get the same notification");
    let to_b = notification(&mut b_ws, "matched", "B on node 2").await;
    assert_eq!(
        to_b["data"]["conversation_id"],
        conversation.as_str(),
        "{to_b}"
    );
    assert_eq!(to_b["data"]["user"]["id"], a_id.as_str(), "{to_b}");
    assert_ne!(to_a["id"], to_b["id"], "each side has its own notification");

    // Each exactly once.
    for (who, client) in [
        ("A on node 1", &mut a_ws),
        ("A on node 2", &mut a_ws2),
        ("B on node 2", &mut b_ws),
    ] {
        assert_quiet(
            client,
            QUIET,
            &format!("{who} (a second notification)"),
            |f| f["type"] == "notification",
        )
        .await;
    }
    let stored = stored_notifications(n2, &a_token).await;
    assert_eq!(stored, [to_a], "A's notifications on node 2");
}

// ------------------------------------------------------------- 2. revocation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_node_closes_the_tokens_sockets_on_every_node() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, Settings::default()).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (first, user_id) = n1.register("roamer").await;
    let second = n2.login("roamer").await;
    let mut tab_on_1 = n1.client(&first).await;
    let mut tab_on_2 = n2.client(&first).await;
    let mut phone_on_2 = n2.client(&second).await;

    // Logging the first token out on node 2 closes its socket on node 1.
    let (status, body) = n2
        .post("/api/v1/auth/logout", Some(&first), json!({}))
        .await;
    assert_eq!(status, 204, "logout on node 2: {body}");
    assert_eq!(
        tab_on_1.closed_with(CLOSE_WITHIN).await,
        Ended::Closed(4010),
        "the socket on node 1 of the token revoked on node 2"
    );
    assert_eq!(
        tab_on_2.closed_with(CLOSE_WITHIN).await,
        Ended::Closed(4010),
        "the socket on node 2 of the token revoked on node 2"
    );

    // The other session is untouched, on every node.
    assert_alive(&mut phone_on_2, "the second session's socket").await;
    for node in [n1, n2] {
        let (status, me) = node.get("/api/v1/me", Some(&second)).await;
        assert_eq!(
            status, 200,
            "GET /me with the live token on {}: {me}",
            node.id
        );
        assert_eq!(me["id"], user_id.as_str());
        let (status, body) = node.get("/api/v1/me", Some(&first)).await;
        assert_eq!(status, 401, "the revoked token on {}: {body}", node.id);
        assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
        let mut again = WsClient::connect(node).await;
        again
            .err(json!({"type": "hello", "token": first}), "unauthenticated")
            .await;
        assert_eq!(
            again.closed_with(CLOSE_WITHIN).await,
            Ended::Closed(4001),
            "hello with the revoked token on {}",
            node.id
        );
    }

    // And the other way round: logout on node 1 closes a socket on node 2.
    let (status, body) = n1
        .post("/api/v1/auth/logout", Some(&second), json!({}))
        .await;
    assert_eq!(status, 204, "logout on node 1: {body}");
    assert_eq!(
        phone_on_2.closed_with(CLOSE_WITHIN).await,
        Ended::Closed(4010),
        "the socket on node 2 of the token revoked on node 1"
    );
}

// ------------------------------------------------------------- 3. event rooms

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_rooms_work_across_nodes_and_close_when_cancelled() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, Settings::default()).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (mut host, host_token, host_id) = n1.user("host_hana").await;
    let (mut guest, guest_token, guest_id) = n2.user("guest_gen").await;
    let (mut late_1, late_token, _) = n1.user("late_lou").await;
    let mut late_2 = n2.client(&late_token).await;
    let (mut stranger_1, stranger_token, _) = n1.user("stranger_sam").await;
    let mut stranger_2 = n2.client(&stranger_token).await;

    // Made on node 1 with one seat; the guest takes it through node 2,
    // the late one is waitlisted through node 1.
    let event = new_event(
        n1,
        &host_token,
        json!({"title": "ramen night", "description": "", "starts_at": STARTS_AT,
               "venue": "station ramen", "capacity": 1}),
    )
    .await;
    let event_id = text_of(&event["id"]);
    let room_id = format!("event:{event_id}");
    let going = rsvp(n2, &event_id, &guest_token).await;
    assert_eq!(going["status"], "going", "{going}");
    let late = rsvp(n1, &event_id, &late_token).await;
    assert_eq!(late["status"], "waitlisted", "{late}");

    assert!(
        listed_room_ids(&mut guest).await.contains(&room_id),
        "room.list on node 2 for a going attendee"
    );
    assert!(
        !listed_room_ids(&mut stranger_2).await.contains(&room_id),
        "room.list on node 2 for a stranger"
    );

    // The host enters on node 1, the guest on node 2.
    let joined = join(&mut host, &room_id).await;
    assert_eq!(joined["room"]["kind"], "event", "{joined}");
    assert_eq!(joined["room"]["host_id"], host_id.as_str(), "{joined}");
    let joined = join(&mut guest, &room_id).await;
    assert_eq!(joined["room"]["id"], room_id.as_str(), "{joined}");
    assert_eq!(joined["room"]["member_count"], 2, "{joined}");
    sees_joined(&mut host, &room_id, &guest_id, "the host on node 1").await;

    // They chat both ways, in one order.
    let first = relay(
        &mut guest,
        &mut [("the host on node 1", &mut host)],
        &room_id,
        "see you there",
    )
    .await;
    let second = relay(
        &mut host,
        &mut [("the guest on node 2", &mut guest)],
        &room_id,
        "bring an appetite",
    )
    .await;
    assert!(second > first, "seqs increase: {first} then {second}");
    for (who, client, own_seq) in [
        ("the guest", &mut guest, first),
        ("the host", &mut host, second),
    ] {
        let own = wait_for(
            client,
            crate::common::RECV_TIMEOUT,
            &format!("{who} waits for their own message"),
            |f| is_message_of(f, &room_id),
        )
        .await;
        assert_eq!(seq_of(&own), own_seq, "{who}: {own}");
    }

    // Strangers and the waitlisted are refused on any node.
    for (who, client) in [
        ("a stranger on node 1", &mut stranger_1),
        ("a stranger on node 2", &mut stranger_2),
        ("a waitlisted user on node 1", &mut late_1),
        ("a waitlisted user on node 2", &mut late_2),
    ] {
        let error = client
            .request(json!({"type": "room.join", "room_id": room_id}))
            .await;
        assert_eq!(
            (&error["type"], &error["error"]["code"]),
            (&json!("error"), &json!("forbidden")),
            "{who} joins the event room: {error}"
        );
    }

    // Cancelled through node 1: the room closes for everyone inside.
    let (status, body) = n1
        .delete(&format!("/api/v1/events/{event_id}"), &host_token)
        .await;
    assert_eq!(status, 204, "cancel on node 1: {body}");
    sees_closed(&mut guest, &room_id, "host", "the guest on node 2").await;
    sees_closed(&mut host, &room_id, "host", "the host on node 1").await;
    let cancelled = notification(&mut guest, "event_cancelled", "the guest on node 2").await;
    assert_eq!(
        cancelled["data"]["event_id"],
        event_id.as_str(),
        "{cancelled}"
    );
    for (who, client) in [("the guest on node 2", &mut guest), ("the host", &mut host)] {
        client
            .err(
                json!({"type": "room.join", "room_id": room_id}),
                "not_found",
            )
            .await;
        assert!(
            !listed_room_ids(client).await.contains(&room_id),
            "{who} still sees the room of a cancelled event"
        );
    }
    send_after_close(&mut guest, &room_id, "the guest on node 2").await;
    send_after_close(&mut host, &room_id, "the host on node 1").await;
}

// ------------------------------------------------------------- 3b. community rooms

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn community_rooms_work_across_nodes() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, Settings::default()).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (mut owner, owner_token, owner_id) = n1.user("owner_oda").await;
    let (mut member, member_token, member_id) = n2.user("member_mei").await;
    let (mut outsider_1, outsider_token, _) = n1.user("outsider_oz").await;
    let mut outsider_2 = n2.client(&outsider_token).await;

    let community = new_community(
        n1,
        &owner_token,
        json!({"name": "rustaceans", "description": "crabs"}),
    )
    .await;
    let community_id = text_of(&community["id"]);
    let room_id = format!("community:{community_id}");
    // Joins the community through node 1, enters the room on node 2.
    join_community(n1, &community_id, &member_token).await;

    assert!(
        listed_room_ids(&mut member).await.contains(&room_id),
        "room.list on node 2 for a member"
    );
    let joined = join(&mut owner, &room_id).await;
    assert_eq!(joined["room"]["kind"], "community", "{joined}");
    assert_eq!(joined["room"]["name"], room_id.as_str(), "{joined}");
    let joined = join(&mut member, &room_id).await;
    assert_eq!(joined["room"]["member_count"], 2, "{joined}");
    let member_ids: Vec<Value> = joined["members"]
        .as_array()
        .unwrap_or_else(|| panic!("members in {joined}"))
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert!(
        member_ids.contains(&json!(owner_id)) && member_ids.contains(&json!(member_id)),
        "members seen on node 2: {joined}"
    );
    sees_joined(&mut owner, &room_id, &member_id, "the owner on node 1").await;

    let first = relay(
        &mut owner,
        &mut [("the member on node 2", &mut member)],
        &room_id,
        "welcome",
    )
    .await;
    let second = relay(
        &mut member,
        &mut [("the owner on node 1", &mut owner)],
        &room_id,
        "thanks, glad to be here",
    )
    .await;
    assert!(second > first, "seqs increase: {first} then {second}");

    for (who, client) in [
        ("an outsider on node 1", &mut outsider_1),
        ("an outsider on node 2", &mut outsider_2),
    ] {
        assert!(
            !listed_room_ids(client).await.contains(&room_id),
            "room.list for {who}"
        );
        client
            .err(
                json!({"type": "room.join", "room_id": room_id}),
                "forbidden",
            )
            .await;
    }
    // Nothing leaked to the outsiders.
    for (who, client) in [
        ("the outsider on node 1", &mut outsider_1),
        ("the outsider on node 2", &mut outsider_2),
    ] {
        assert_quiet(client, QUIET, who, |f| is_message_of(f, &room_id)).await;
    }
}

// ------------------------------------------------------------- 4. moderation

const ADMIN: &str = "root_admin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_close_on_one_node_reaches_members_on_another() {
    let redis = shared_redis().await;
    let settings = Settings {
        admin_handles: vec![ADMIN.into()],
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, settings).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (admin_token, _) = n1.admin(ADMIN).await;
    let (status, me) = n2.get("/api/v1/me", Some(&admin_token)).await;
    assert_eq!((status, &me["role"]), (200, &json!("admin")), "{me}");

    let (mut alice, alice_token, _) = n2.user("alice").await;
    let (mut bob, _, bob_id) = n2.user("bob").await;
    let (mut watcher_1, _, _) = n1.user("watcher_one").await;
    watcher_1.ok(json!({"type": "rooms.watch"})).await;
    let room_id = create_room(&mut alice, "late ramen").await;
    join(&mut bob, &room_id).await;
    sees_joined(&mut alice, &room_id, &bob_id, "alice on node 2").await;
    wait_for(
        &mut watcher_1,
        crate::common::RECV_TIMEOUT,
        "the watcher on node 1 sees the room with two members",
        |f| {
            f["type"] == "rooms.changed"
                && f["room"]["id"] == room_id.as_str()
                && f["room"]["member_count"] == 2
        },
    )
    .await;

    // A member may not close it, on either node.
    for node in [n1, n2] {
        let (status, body) = node
            .delete(&format!("/api/v1/admin/rooms/{room_id}"), &alice_token)
            .await;
        assert_eq!(status, 403, "a member closing on {}: {body}", node.id);
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }

    // The admin closes it through node 1; the members are on node 2.
    let (status, body) = n1
        .delete(&format!("/api/v1/admin/rooms/{room_id}"), &admin_token)
        .await;
    assert_eq!(status, 204, "close on node 1: {body}");
    sees_closed(&mut alice, &room_id, "moderator", "alice on node 2").await;
    sees_closed(&mut bob, &room_id, "moderator", "bob on node 2").await;
    wait_for(
        &mut watcher_1,
        crate::common::RECV_TIMEOUT,
        "the watcher on node 1 sees the room close",
        |f| f["type"] == "rooms.changed" && f["room_id"] == room_id.as_str() && f["closed"] == true,
    )
    .await;
    eventually(
        SETTLE,
        "the closed room gone from GET /api/v1/rooms on node-2",
        || async {
            let rooms = n2.rooms(&alice_token).await;
            match find_room(&rooms, &room_id) {
                Some(room) => Err(format!("still listed: {room}")),
                None => Ok(()),
            }
        },
    )
    .await;

    // A moderator made through node 1 closes a room through node 2 while
    // its members are on node 1.
    let (mod_token, mod_id) = n2.register("mod_mia").await;
    let (status, body) = n1
        .put_json(
            &format!("/api/v1/admin/users/{mod_id}/role"),
            &admin_token,
            json!({"role": "moderator"}),
        )
        .await;
    assert_eq!(status, 204, "promote on node 1: {body}");
    let (mut carol, carol_token, _) = n1.user("carol").await;
    let (mut dave, _, dave_id) = n1.user("dave").await;
    let second = create_room(&mut carol, "second lobby").await;
    join(&mut dave, &second).await;
    sees_joined(&mut carol, &second, &dave_id, "carol on node 1").await;
    let (status, body) = n2
        .delete(&format!("/api/v1/admin/rooms/{second}"), &mod_token)
        .await;
    assert_eq!(status, 204, "the moderator closes on node 2: {body}");
    sees_closed(&mut carol, &second, "moderator", "carol on node 1").await;
    sees_closed(&mut dave, &second, "moderator", "dave on node 1").await;
    eventually(
        SETTLE,
        "the second closed room gone from GET /api/v1/rooms on node-1",
        || async {
            let rooms = n1.rooms(&carol_token).await;
            match find_room(&rooms, &second) {
                Some(room) => Err(format!("still listed: {room}")),
                None => Ok(()),
            }
        },
    )
    .await;

    // Both closes are on the record, whichever node made them.
    let (status, audit) = n2.get("/api/v1/admin/audit", Some(&admin_token)).await;
    assert_eq!(status, 200, "audit on node 2: {audit}");
    let closes: Vec<String> = audit["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {audit}"))
        .iter()
        .filter(|e| e["action"] == "room.close")
        .map(|e| text_of(&e["target"]))
        .collect();
    assert_eq!(
        closes,
        [format!("room:{second}"), format!("room:{room_id}")],
        "room closes in the audit log, newest first"
    );

    // Nobody reopens a closed room by joining or writing into it: not a
    // newcomer on a node that held members, nor a former member.
    let (mut newcomer, _, _) = n2.user("newcomer").await;
    join_after_close(&mut newcomer, &room_id, "a newcomer on node 2").await;
    send_after_close(&mut alice, &room_id, "alice on node 2").await;
    join_after_close(&mut bob, &room_id, "bob on node 2").await;
    send_after_close(&mut dave, &second, "dave on node 1").await;
    join_after_close(&mut carol, &second, "carol on node 1").await;
    for (node, token) in [(n1, &carol_token), (n2, &alice_token)] {
        let rooms = node.rooms(token).await;
        assert!(
            find_room(&rooms, &room_id).is_none() && find_room(&rooms, &second).is_none(),
            "a closed room is back in GET /api/v1/rooms on {}: {rooms:?}",
            node.id
        );
    }
}

// ------------------------------------------------------------- 5. rooms.watch

/// Reads `rooms.changed` about `room_id` on the watcher until one shows
/// `count` members; any other count seen on the way must be `previous`
/// (a late repeat of the last state), never a stale or skipped-ahead one.
async fn watch_count(watcher: &mut WsClient, room_id: &str, previous: u64, count: u64) {
    loop {
        let change = wait_for(
            watcher,
            crate::common::RECV_TIMEOUT,
            &format!("the watcher on node 3 waits for {room_id} with {count} members"),
            |f| f["type"] == "rooms.changed" && f["room"]["id"] == room_id,
        )
        .await;
        let seen = change["room"]["member_count"]
            .as_u64()
            .unwrap_or_else(|| panic!("member_count in {change}"));
        if seen == count {
            return;
        }
        assert_eq!(
            seen, previous,
            "the watcher on node 3 expected member_count {previous} -> {count}, got {change}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_a_third_node_follows_rooms_made_and_joined_elsewhere() {
    let redis = shared_redis().await;
    let settings = Settings {
        room_empty_grace_secs: 0,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 3, redis, settings).await;
    let (n1, n2, n3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    let (mut host, _, _) = n1.user("host_one").await;
    let (mut joiner_a, _, _) = n2.user("joiner_a").await;
    let (mut joiner_b, _, _) = n2.user("joiner_b").await;
    let (mut watcher, watcher_token, _) = n3.user("watcher_three").await;

    // A room opened before watching is in the watch answer.
    let early = create_room(&mut host, "early bird").await;
    let watched = watcher.ok(json!({"type": "rooms.watch"})).await;
    let rooms = watched["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("rooms in {watched}"));
    let listed = find_room(rooms, &early)
        .unwrap_or_else(|| panic!("rooms.watch on node 3 lacks the room made on node 1"));
    assert_eq!(listed["member_count"], 1, "{listed}");

    // Opened on node 1 after the watch: pushed to node 3.
    let room_id = create_room(&mut host, "live lobby").await;
    let opened = wait_for(
        &mut watcher,
        crate::common::RECV_TIMEOUT,
        "the watcher on node 3 waits for the new room",
        |f| f["type"] == "rooms.changed" && f["room"]["id"] == room_id.as_str(),
    )
    .await;
    assert_eq!(opened["room"]["member_count"], 1, "{opened}");
    assert_eq!(opened["room"]["name"], "live lobby", "{opened}");
    assert_eq!(opened["room"]["kind"], "drop_in", "{opened}");

    // Joins from node 2 count up on node 3.
    join(&mut joiner_a, &room_id).await;
    watch_count(&mut watcher, &room_id, 1, 2).await;
    let joined = join(&mut joiner_b, &room_id).await;
    assert_eq!(joined["room"]["member_count"], 3, "{joined}");
    watch_count(&mut watcher, &room_id, 2, 3).await;
    eventually(
        SETTLE,
        "GET /api/v1/rooms on node-3 showing 3 members",
        || async {
            match find_room(&n3.rooms(&watcher_token).await, &room_id) {
                Some(room) if room["member_count"] == 3 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Leaves count down: one by op, one by closing the socket.
    joiner_a
        .ok(json!({"type": "room.leave", "room_id": room_id}))
        .await;
    watch_count(&mut watcher, &room_id, 3, 2).await;
    joiner_b.close().await;
    watch_count(&mut watcher, &room_id, 2, 1).await;

    // The last member leaves on node 1: the room closes, once.
    host.ok(json!({"type": "room.leave", "room_id": room_id}))
        .await;
    loop {
        let change = wait_for(
            &mut watcher,
            crate::common::RECV_TIMEOUT,
            "the watcher on node 3 waits for the room to close",
            |f| {
                f["type"] == "rooms.changed"
                    && (f["room"]["id"] == room_id.as_str() || f["room_id"] == room_id.as_str())
            },
        )
        .await;
        if change["closed"] == true {
            break;
        }
        // The emptied room may be shown empty just before it closes.
        assert!(
            change["room"]["member_count"] == 1 || change["room"]["member_count"] == 0,
            "before the close: {change}"
        );
    }
    assert_quiet(&mut watcher, QUIET, "the watcher on node 3", |f| {
        f["type"] == "rooms.changed"
            && (f["room"]["id"] == room_id.as_str() || f["room_id"] == room_id.as_str())
    })
    .await;
    let still = watcher.ok(json!({"type": "room.list"})).await;
    let still = still["rooms"].as_array().cloned().unwrap_or_default();
    assert!(
        find_room(&still, &room_id).is_none(),
        "room.list on node 3 still shows the closed room: {still:?}"
    );
    assert!(
        find_room(&still, &early).is_some(),
        "room.list on node 3 lost the early room: {still:?}"
    );
}

// ------------------------------------------------------------- 6. matched trio

/// Messages each participant sends in each of its conversations.
const PER_SIDE: usize = 8;

/// A delivered direct message: `(seq, message_id, sender id)`.
type Delivered = (u64, String, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_matched_users_on_three_nodes_talk_gap_free() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 3, redis, Settings::default()).await;
    let nodes = [cluster.node(1), cluster.node(2), cluster.node(3)];
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (token, id) = node.register(&format!("trio_{}", i + 1)).await;
        tokens.push(token);
        ids.push(id);
    }
    // Pairwise: user i owns the card, user i+1 presses interested, each
    // through their own node.
    let mut conversations: HashMap<(usize, usize), String> = HashMap::new();
    for i in 0..3 {
        let j = (i + 1) % 3;
        let conversation = match_pair(nodes[i], &tokens[i], nodes[j], &tokens[j], &ids[j]).await;
        conversations.insert((i.min(j), i.max(j)), conversation);
    }
    let conversation_of = |a: usize, b: usize| conversations[&(a.min(b), a.max(b))].clone();
    let mut sockets = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        sockets.push(node.client(&tokens[i]).await);
    }

    // presence.query on each node sees the other two online.
    for (i, socket) in sockets.iter_mut().enumerate() {
        let others: Vec<&str> = (0..3)
            .filter(|&j| j != i)
            .map(|j| ids[j].as_str())
            .collect();
        let statuses = presence_statuses(socket, &others).await;
        for other in &others {
            assert_eq!(
                statuses.get(*other).map(String::as_str),
                Some("online"),
                "presence.query on node {} about user {other}: {statuses:?}",
                i + 1
            );
        }
    }
    // Nobody writes into a conversation that is not theirs.
    sockets[0]
        .err(
            json!({"type": "dm.send", "conversation_id": conversation_of(1, 2), "text": "hi"}),
            "forbidden",
        )
        .await;

    // Everyone sends into both their conversations at once, without waiting.
    for k in 0..PER_SIDE {
        for (i, socket) in sockets.iter_mut().enumerate() {
            for j in (0..3).filter(|&j| j != i) {
                socket
                    .send(json!({
                        "type": "dm.send",
                        "ref": format!("u{i}-to{j}-{k}"),
                        "conversation_id": conversation_of(i, j),
                        "text": format!("user {i} to {j} number {k}"),
                    }))
                    .await;
            }
        }
    }
    // Each socket's acks, and what it saw per conversation:
    // `(seq, message_id, sender id)` in arrival order.
    let mut acked: Vec<HashMap<String, (u64, String)>> = Vec::new();
    let mut seen: Vec<HashMap<String, Vec<Delivered>>> = Vec::new();
    let total = 2 * PER_SIDE;
    for (i, socket) in sockets.iter_mut().enumerate() {
        let who = format!("user {} on node {}", i, i + 1);
        let mut replies = HashMap::new();
        let mut messages: HashMap<String, Vec<Delivered>> = HashMap::new();
        let want_replies = 2 * PER_SIDE;
        while replies.len() < want_replies
            || messages.values().map(Vec::len).sum::<usize>() < 2 * total
        {
            let frame = wait_for(
                socket,
                crate::common::RECV_TIMEOUT,
                &format!(
                    "{who} (has {} of {want_replies} replies and {} of {} messages)",
                    replies.len(),
                    messages.values().map(Vec::len).sum::<usize>(),
                    2 * total
                ),
                |f| matches!(f["type"].as_str(), Some("ok" | "error" | "dm.message")),
            )
            .await;
            match frame["type"].as_str() {
                Some("ok") => {
                    let data = &frame["data"];
                    let reply = (seq_of(data), text_of(&data["message_id"]));
                    assert!(
                        replies.insert(text_of(&frame["ref"]), reply).is_none(),
                        "{who}: two replies to one ref: {frame}"
                    );
                }
                Some("error") => panic!("{who}: a dm.send failed: {frame}"),
                _ => messages
                    .entry(text_of(&frame["conversation_id"]))
                    .or_default()
                    .push((
                        seq_of(&frame),
                        text_of(&frame["message_id"]),
                        text_of(&frame["from"]["id"]),
                    )),
            }
        }
        assert_quiet(socket, QUIET, &format!("{who} (a duplicate dm)"), |f| {
            f["type"] == "dm.message"
        })
        .await;
        acked.push(replies);
        seen.push(messages);
    }

    for i in 0..3 {
        for j in (0..3).filter(|&j| j != i) {
            let conversation = conversation_of(i, j);
            let got = seen[i]
                .get(&conversation)
                .unwrap_or_else(|| panic!("user {i} saw nothing of conversation with {j}"));
            let seqs: Vec<u64> = got.iter().map(|m| m.0).collect();
            assert_eq!(
                seqs,
                (1..=total as u64).collect::<Vec<_>>(),
                "user {i} on node {} sees conversation {conversation} (with user {j} on node \
                 {}) with gaps, repeats or out of order",
                i + 1,
                j + 1
            );
            // Both sides see the same message at each seq.
            assert_eq!(
                got, &seen[j][&conversation],
                "users {i} and {j} disagree on conversation {conversation}"
            );
            // Every acknowledged send is the message delivered at its seq,
            // from its sender.
            for k in 0..PER_SIDE {
                let (seq, message_id) = &acked[i][&format!("u{i}-to{j}-{k}")];
                let delivered = &got[*seq as usize - 1];
                assert_eq!(
                    (&delivered.1, &delivered.2),
                    (message_id, &ids[i]),
                    "seq {seq} of {conversation}"
                );
            }
            // A sender's own messages keep their send order.
            let own: Vec<u64> = (0..PER_SIDE)
                .map(|k| acked[i][&format!("u{i}-to{j}-{k}")].0)
                .collect();
            let mut sorted = own.clone();
            sorted.sort_unstable();
            assert_eq!(own, sorted, "user {i}'s sends to {j} numbered out of order");
        }
    }

    // User 3 goes away on node 3: the others hear it on nodes 1 and 2.
    let third = sockets.pop().expect("three sockets");
    third.close().await;
    for (i, socket) in sockets.iter_mut().enumerate() {
        let offline = wait_for(
            socket,
            SETTLE,
            &format!("user {i} on node {} waits for user 2 offline", i + 1),
            |f| {
                f["type"] == "presence"
                    && f["user_id"] == ids[2].as_str()
                    && f["status"] == "offline"
            },
        )
        .await;
        assert!(offline["last_seen_at"].is_string(), "{offline}");
        let statuses = presence_statuses(socket, &[ids[2].as_str()]).await;
        assert_eq!(
            statuses.get(&ids[2]).map(String::as_str),
            Some("offline"),
            "presence.query on node {} after user 2 left",
            i + 1
        );
    }
}
