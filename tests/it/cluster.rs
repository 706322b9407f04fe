//! Several nodes behind one load balancer, as PROTOCOL-v1 and REST-v1
//! promise them: rooms, the room directory, capacity, `client_msg_id`,
//! `since_seq` recovery, direct messages and presence work the same
//! whichever node each user is on; a node that dies or drains, a Redis
//! that restarts empty and a Postgres that goes away are survived.
//!
//! Every test has its own Postgres database and Redis key prefix (see
//! `crate::common::cluster`). They need Postgres on 127.0.0.1:5432 and Redis on
//! 127.0.0.1:6379 (or MESHI_TEST_POSTGRES_URL / MESHI_TEST_REDIS_URL), plus
//! `redis-server` on PATH, and fail saying how to start what is missing.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::chat::{
    burst, create_room, find_room, is_message_of, join, join_since, leave, presence_statuses,
    relay, room_list, say, sees_joined, Burst,
};
use crate::common::cluster::{Cluster, Node, NodeKind, Settings};
use crate::common::json::{seq_of, text_of};
use crate::common::platform::pair;
use crate::common::services::{random_prefix, shared_redis, ThrowawayPostgres, ThrowawayRedis};
use crate::common::wait::{assert_quiet, eventually, read_until_closed, request_within, wait_for};
use crate::common::{test_config, Ended, WsClient};
use serde_json::{json, Value};
use tokio::time::Instant;

/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(500);
/// Bound for something that crosses nodes and may be eventually consistent
/// (directory counts, re-announced membership).
const SETTLE: Duration = Duration::from_secs(5);

/// The next `room.message` of `room_id`.
async fn next_message(client: &mut WsClient, room_id: &str, who: &str) -> Value {
    wait_for(
        client,
        crate::common::RECV_TIMEOUT,
        &format!("{who} waits for a room.message"),
        |f| is_message_of(f, room_id),
    )
    .await
}

async fn sees_left(
    client: &mut WsClient,
    room_id: &str,
    user_id: &str,
    who: &str,
    bound: Duration,
) {
    wait_for(
        client,
        bound,
        &format!("{who} waits for room.member_left of user {user_id}"),
        |f| f["type"] == "room.member_left" && f["room_id"] == room_id && f["user_id"] == user_id,
    )
    .await;
}

/// Polls GET /api/v1/rooms on `node` until `room_id` shows `count` members.
async fn directory_count_becomes(node: &Node, token: &str, room_id: &str, count: u64) {
    eventually(
        SETTLE,
        &format!(
            "GET /api/v1/rooms on {} showing room {room_id} with member_count {count}",
            node.id
        ),
        || async {
            let rooms = node.rooms(token).await;
            match find_room(&rooms, room_id) {
                Some(room) if room["member_count"] == count => Ok(()),
                Some(room) => Err(format!("{room}")),
                None => Err(format!("room missing from {rooms:?}")),
            }
        },
    )
    .await;
}

async fn dm_send(client: &mut WsClient, conversation: &str, text: &str) -> u64 {
    let sent = client
        .ok(json!({"type": "dm.send", "conversation_id": conversation, "text": text}))
        .await;
    seq_of(&sent)
}

async fn next_dm(client: &mut WsClient, conversation: &str, who: &str) -> Value {
    wait_for(
        client,
        crate::common::RECV_TIMEOUT,
        &format!("{who} waits for a dm.message"),
        |f| f["type"] == "dm.message" && f["conversation_id"] == conversation,
    )
    .await
}

async fn presence_of(client: &mut WsClient, user_id: &str) -> String {
    let mut statuses = presence_statuses(client, &[user_id]).await;
    statuses
        .remove(user_id)
        .unwrap_or_else(|| panic!("{user_id} in {statuses:?}"))
}

fn is_presence(frame: &Value, user_id: &str, status: Option<&str>) -> bool {
    frame["type"] == "presence"
        && frame["user_id"] == user_id
        && status.is_none_or(|s| frame["status"] == s)
}

// ------------------------------------------------------------- 1. chat

/// Messages each member sends in the ordering test.
const PER_MEMBER: usize = 20;

/// Sends [`PER_MEMBER`] messages without waiting, then reads until every
/// reply and `total` pushes are in.
async fn member_burst(client: WsClient, member: usize, room_id: String, total: usize) -> Burst {
    let frames = (0..PER_MEMBER)
        .map(|i| {
            json!({
                "type": "room.send",
                "room_id": room_id,
                "text": format!("member {member} message {i}"),
            })
        })
        .collect();
    burst(
        client,
        &format!("m{member}"),
        frames,
        "room.message",
        total,
        QUIET,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_chat_crosses_nodes_exactly_once_in_one_order() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 3, redis, Settings::default()).await;

    // Two members on each node; member i is on node i % 3 + 1.
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..6 {
        let (client, _, id) = cluster.node(i % 3 + 1).user(&format!("member_{i}")).await;
        clients.push(client);
        ids.push(id);
    }
    let room_id = create_room(&mut clients[0], "across three nodes").await;
    for i in 1..6 {
        let joined = join(&mut clients[i], &room_id).await;
        assert_eq!(
            joined["room"]["member_count"],
            (i + 1) as u64,
            "member {i} on node {} joins: {joined}",
            i % 3 + 1
        );
        let listed: HashSet<String> = joined["members"]
            .as_array()
            .unwrap_or_else(|| panic!("members in {joined}"))
            .iter()
            .map(|m| text_of(&m["id"]))
            .collect();
        for (j, id) in ids.iter().enumerate().take(i + 1) {
            assert!(
                listed.contains(id),
                "member {j} (node {}) missing from the members that member {i} (node {}) \
                 sees: {joined}",
                j % 3 + 1,
                i % 3 + 1
            );
        }
        for (j, client) in clients.iter_mut().enumerate().take(i) {
            sees_joined(
                client,
                &room_id,
                &ids[i],
                &format!("member {j} on node {}", j % 3 + 1),
            )
            .await;
        }
    }

    // Typing reaches the members on every node but the typist.
    clients[1]
        .ok(json!({"type": "room.typing", "room_id": room_id}))
        .await;
    for (j, client) in clients.iter_mut().enumerate() {
        if j == 1 {
            continue;
        }
        wait_for(
            client,
            crate::common::RECV_TIMEOUT,
            &format!("member {j} on node {} waits for room.typing", j % 3 + 1),
            |f| f["type"] == "room.typing" && f["room_id"] == room_id && f["user_id"] == ids[1],
        )
        .await;
    }
    assert_quiet(&mut clients[1], QUIET, "the typist", |f| {
        f["type"] == "room.typing"
    })
    .await;

    // Everyone sends at once.
    let total = PER_MEMBER * clients.len();
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(member, client)| tokio::spawn(member_burst(client, member, room_id.clone(), total)))
        .collect();
    let mut bursts = Vec::new();
    for (member, task) in tasks.into_iter().enumerate() {
        bursts.push(
            task.await
                .unwrap_or_else(|e| panic!("member {member} (node {}): {e}", member % 3 + 1)),
        );
    }
    println!(
        "{total} messages from 6 members on 3 nodes delivered to all in {:?}",
        started.elapsed()
    );

    let reference: Vec<(u64, String)> = bursts[0]
        .pushes
        .iter()
        .map(|m| (seq_of(m), text_of(&m["message_id"])))
        .collect();
    for (member, run) in bursts.iter().enumerate() {
        let node = member % 3 + 1;
        let seen: Vec<(u64, String)> = run
            .pushes
            .iter()
            .map(|m| (seq_of(m), text_of(&m["message_id"])))
            .collect();
        let ids_seen: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
        assert_eq!(
            ids_seen.len(),
            total,
            "member {member} on node {node} got a message twice"
        );
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "member {member} on node {node} sees seqs out of order: {:?}",
            seen.iter().map(|(s, _)| s).collect::<Vec<_>>()
        );
        assert_eq!(
            seen, reference,
            "member {member} on node {node} sees another order than member 0 on node 1"
        );
        let texts: HashSet<String> = run.pushes.iter().map(|m| text_of(&m["text"])).collect();
        for sender in 0..bursts.len() {
            for i in 0..PER_MEMBER {
                assert!(
                    texts.contains(&format!("member {sender} message {i}")),
                    "member {member} on node {node} never got message {i} of member {sender}"
                );
            }
        }
        // Each acknowledgement names the pushed message, and one socket's
        // sends keep their order.
        for (message_id, seq) in &run.acked {
            assert!(
                seen.contains(&(*seq, message_id.clone())),
                "member {member}: acked ({message_id}, {seq}) was never pushed like that"
            );
        }
        assert!(
            run.acked.windows(2).all(|w| w[0].1 < w[1].1),
            "member {member}'s sends were numbered out of send order: {:?}",
            run.acked
        );
    }

    // Leaving (explicitly, on node 3) and closing a socket (on node 2) are
    // announced on every node.
    let mut clients: Vec<WsClient> = bursts.into_iter().map(|b| b.client).collect();
    leave(&mut clients[5], &room_id).await;
    for (j, client) in clients.iter_mut().enumerate().take(5) {
        sees_left(
            client,
            &room_id,
            &ids[5],
            &format!("member {j} on node {}", j % 3 + 1),
            crate::common::RECV_TIMEOUT,
        )
        .await;
    }
    let closing = clients.remove(4);
    closing.close().await;
    for (j, client) in clients.iter_mut().enumerate().take(4) {
        sees_left(
            client,
            &room_id,
            &ids[4],
            &format!("member {j} on node {}", j % 3 + 1),
            crate::common::RECV_TIMEOUT,
        )
        .await;
    }
}

// ------------------------------------------------------------- 2. directory

/// The next `rooms.changed` about `room_id` matching `wanted`.
async fn change_of(
    client: &mut WsClient,
    room_id: &str,
    who: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(
        client,
        crate::common::RECV_TIMEOUT,
        &format!("{who} waits for rooms.changed about {room_id}"),
        |f| {
            f["type"] == "rooms.changed"
                && (f["room"]["id"] == room_id || f["room_id"] == room_id)
                && wanted(f)
        },
    )
    .await
}

fn is_closed_change(frame: &Value, room_id: &str) -> bool {
    frame["type"] == "rooms.changed" && frame["room_id"] == room_id && frame["closed"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_directory_is_the_same_on_every_node() {
    let redis = shared_redis().await;
    let settings = Settings {
        room_empty_grace_secs: 0,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, settings).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (mut alice, alice_token, _) = n1.user("alice").await;
    let (mut bob, bob_token, _) = n2.user("bob").await;
    let (mut w1, _, _) = n1.user("watcher_one").await;
    let (mut w2, w2_token, _) = n2.user("watcher_two").await;
    w1.ok(json!({"type": "rooms.watch"})).await;
    w2.ok(json!({"type": "rooms.watch"})).await;

    // Opened on node 1, announced on both.
    let room_id = create_room(&mut alice, "directory lobby").await;
    for (who, watcher) in [
        ("watcher on node 1", &mut w1),
        ("watcher on node 2", &mut w2),
    ] {
        let opened = change_of(watcher, &room_id, who, |_| true).await;
        assert_eq!(opened["room"]["member_count"], 1, "{who}: {opened}");
        assert_eq!(opened["room"]["name"], "directory lobby", "{who}: {opened}");
    }

    // A member on node 2: both nodes count two.
    let joined = join(&mut bob, &room_id).await;
    assert_eq!(joined["room"]["member_count"], 2, "{joined}");
    for (who, watcher) in [
        ("watcher on node 1", &mut w1),
        ("watcher on node 2", &mut w2),
    ] {
        change_of(watcher, &room_id, who, |f| f["room"]["member_count"] == 2).await;
    }
    directory_count_becomes(n2, &bob_token, &room_id, 2).await;
    directory_count_becomes(n1, &alice_token, &room_id, 2).await;
    let listed = find_room(&room_list(&mut w2).await, &room_id)
        .unwrap_or_else(|| panic!("room.list on node 2 lacks the room made on node 1"));
    assert_eq!(listed["member_count"], 2, "room.list on node 2: {listed}");

    // The last member leaves on node 1: it closes once, for everyone.
    leave(&mut bob, &room_id).await;
    leave(&mut alice, &room_id).await;
    for (who, watcher) in [
        ("watcher on node 1", &mut w1),
        ("watcher on node 2", &mut w2),
    ] {
        wait_for(watcher, crate::common::RECV_TIMEOUT, who, |f| {
            is_closed_change(f, &room_id)
        })
        .await;
    }

    // A second room whose last member leaves on node 2.
    let second = create_room(&mut alice, "second lobby").await;
    join(&mut bob, &second).await;
    leave(&mut alice, &second).await;
    for (who, watcher) in [
        ("watcher on node 1", &mut w1),
        ("watcher on node 2", &mut w2),
    ] {
        change_of(watcher, &second, who, |f| f["room"]["member_count"] == 1).await;
    }
    leave(&mut bob, &second).await;
    for (who, watcher) in [
        ("watcher on node 1", &mut w1),
        ("watcher on node 2", &mut w2),
    ] {
        wait_for(watcher, crate::common::RECV_TIMEOUT, who, |f| {
            is_closed_change(f, &second)
        })
        .await;
    }

    // Exactly one close per room per watcher.
    for (who, watcher) in [
        ("watcher on node 1", &mut w1),
        ("watcher on node 2", &mut w2),
    ] {
        assert_quiet(watcher, QUIET, &format!("{who} (a second close)"), |f| {
            is_closed_change(f, &room_id) || is_closed_change(f, &second)
        })
        .await;
    }

    // Gone from every node's directory.
    for (node, token) in [(n1, &alice_token), (n2, &w2_token)] {
        eventually(
            SETTLE,
            &format!("both rooms gone from GET /api/v1/rooms on {}", node.id),
            || async {
                let rooms = node.rooms(token).await;
                if find_room(&rooms, &room_id).is_some() || find_room(&rooms, &second).is_some() {
                    Err(format!("{rooms:?}"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
    }
    for (who, client) in [("node 1", &mut w1), ("node 2", &mut w2)] {
        let rooms = room_list(client).await;
        assert!(
            find_room(&rooms, &room_id).is_none() && find_room(&rooms, &second).is_none(),
            "room.list on {who} still shows a closed room: {rooms:?}"
        );
    }
    bob.err(
        json!({"type": "room.join", "room_id": room_id}),
        "not_found",
    )
    .await;
}

// ------------------------------------------------------------- 3. capacity

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_and_client_msg_id_hold_across_nodes() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 3, redis, Settings::default()).await;
    let (mut alice, alice_token, alice_id) = cluster.node(1).user("alice").await;
    let (mut bob, _, _) = cluster.node(2).user("bob").await;
    let (mut carol, _, _) = cluster.node(3).user("carol").await;

    let created = alice
        .ok(json!({"type": "room.create", "name": "two seats", "capacity": 2}))
        .await;
    let small = text_of(&created["room"]["id"]);
    let joined = join(&mut bob, &small).await;
    assert_eq!(joined["room"]["member_count"], 2, "{joined}");
    carol
        .err(json!({"type": "room.join", "room_id": small}), "room_full")
        .await;
    // A seat freed on node 2 can be taken on node 3.
    leave(&mut bob, &small).await;
    let joined = join(&mut carol, &small).await;
    assert_eq!(joined["room"]["member_count"], 2, "{joined}");
    bob.err(json!({"type": "room.join", "room_id": small}), "room_full")
        .await;

    // One user, two sockets on two nodes, one client_msg_id.
    let room_id = create_room(&mut alice, "dedupe").await;
    let mut alice2 = cluster.node(2).client(&alice_token).await;
    join(&mut alice2, &room_id).await;
    join(&mut carol, &room_id).await;
    let frame = |text: &str, id: &str| json!({"type": "room.send", "room_id": room_id, "text": text, "client_msg_id": id});
    let first = alice.ok(frame("only once", "cm-1")).await;
    let again = alice2.ok(frame("only once", "cm-1")).await;
    assert_eq!(
        (&first["message_id"], &first["seq"]),
        (&again["message_id"], &again["seq"]),
        "the same client_msg_id via node 1 then node 2 answered {first} and {again}"
    );
    for (who, client) in [
        ("alice on node 1", &mut alice),
        ("alice on node 2", &mut alice2),
        ("carol on node 3", &mut carol),
    ] {
        let message = next_message(client, &room_id, who).await;
        assert_eq!(message["client_msg_id"], "cm-1", "{who}: {message}");
        assert_eq!(message["from"]["id"], alice_id.as_str(), "{who}: {message}");
        assert_eq!(message["seq"], first["seq"], "{who}: {message}");
        assert_quiet(client, QUIET, &format!("{who} (a duplicate)"), |f| {
            is_message_of(f, &room_id)
        })
        .await;
    }
    // A new id is a new message.
    let next = alice2.ok(frame("and another", "cm-2")).await;
    assert!(seq_of(&next) > seq_of(&first), "{next} after {first}");
    let message = next_message(&mut carol, &room_id, "carol on node 3").await;
    assert_eq!(message["client_msg_id"], "cm-2", "{message}");
}

// ------------------------------------------------------------- 4. recovery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_seq_recovers_on_another_node() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, Settings::default()).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (mut sender, _, _) = n1.user("sender").await;
    let (mut reader, reader_token, _) = n1.user("reader").await;

    let room_id = create_room(&mut sender, "recovery").await;
    join(&mut reader, &room_id).await;
    for i in 0..3 {
        say(&mut sender, &room_id, &format!("seen {i}")).await;
    }
    let mut k = 0;
    for _ in 0..3 {
        k = seq_of(&next_message(&mut reader, &room_id, "reader on node 1").await);
    }
    reader.close().await;

    // Sent on node 1 while nobody is in the room on node 2.
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(say(&mut sender, &room_id, &format!("missed {i}")).await);
    }

    let mut reader = n2.client(&reader_token).await;
    let joined = join_since(&mut reader, &room_id, k).await;
    assert_eq!(
        joined["recovered"], true,
        "join since {k} on node 2: {joined}"
    );
    let got: Vec<(String, u64)> = joined["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages in {joined}"))
        .iter()
        .map(|m| (text_of(&m["message_id"]), seq_of(m)))
        .collect();
    assert_eq!(
        got, missed,
        "node 2 recovers exactly the messages sent on node 1 after seq {k}"
    );
    assert_eq!(joined["last_seq"], missed[4].1, "{joined}");

    // And live delivery continues across the nodes.
    let (id, seq) = say(&mut sender, &room_id, "live again").await;
    let live = next_message(&mut reader, &room_id, "reader on node 2").await;
    assert_eq!((text_of(&live["message_id"]), seq_of(&live)), (id, seq));
}

// ------------------------------------------------------------- 5. DMs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_cross_nodes_gap_free() {
    let redis = shared_redis().await;
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, Settings::default()).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let p = pair(n1, n2, "alice", "bobby").await;
    let mut alice = n1.client(&p.a_token).await;
    let mut bob = n2.client(&p.b_token).await;
    let conv = p.conversation.clone();

    // Turns, both directions.
    let mut acked = Vec::new();
    for i in 0..6 {
        let (sender, from) = if i % 2 == 0 {
            (&mut alice, &p.a_id)
        } else {
            (&mut bob, &p.b_id)
        };
        let seq = dm_send(sender, &conv, &format!("turn {i}")).await;
        acked.push((seq, from.clone()));
    }
    // Both at once.
    for i in 0..10 {
        for (client, who) in [(&mut alice, "a"), (&mut bob, "b")] {
            client
                .send(json!({
                    "type": "dm.send",
                    "ref": format!("{who}{i}"),
                    "conversation_id": conv,
                    "text": format!("{who} burst {i}"),
                }))
                .await;
        }
    }
    for (client, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let prefix = if who == "alice" { "a" } else { "b" };
        for i in 0..10 {
            let reference = format!("{prefix}{i}");
            let reply = wait_for(client, crate::common::RECV_TIMEOUT, who, |f| {
                f["ref"] == reference.as_str()
            })
            .await;
            assert_eq!(reply["type"], "ok", "{who}: {reply}");
        }
    }
    let total = 26;
    for (client, who) in [(&mut alice, "alice on node 1"), (&mut bob, "bob on node 2")] {
        let mut seqs = Vec::new();
        let mut froms = Vec::new();
        for _ in 0..total {
            let m = next_dm(client, &conv, who).await;
            seqs.push(seq_of(&m));
            froms.push(text_of(&m["from"]["id"]));
        }
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (1..=total as u64).collect::<Vec<_>>(),
            "{who} misses or repeats dm seqs (arrival order {seqs:?})"
        );
        assert_eq!(
            seqs, sorted,
            "{who} receives dm.message out of seq order (own messages are sent from this \
             node, the partner's from the other)"
        );
        for (seq, from) in &acked {
            assert_eq!(
                &froms[*seq as usize - 1],
                from,
                "{who}: sender of seq {seq}"
            );
        }
        assert_quiet(client, QUIET, &format!("{who} (a duplicate dm)"), |f| {
            f["type"] == "dm.message"
        })
        .await;
    }

    // Typing and read receipts cross too.
    alice
        .ok(json!({"type": "dm.typing", "conversation_id": conv}))
        .await;
    let typing = wait_for(
        &mut bob,
        crate::common::RECV_TIMEOUT,
        "bob waits for dm.typing",
        |f| f["type"] == "dm.typing",
    )
    .await;
    assert_eq!(typing["user_id"], p.a_id.as_str(), "{typing}");
    assert_eq!(typing["conversation_id"], conv.as_str(), "{typing}");
    bob.ok(json!({"type": "dm.read", "conversation_id": conv, "seq": total}))
        .await;
    let read = wait_for(
        &mut alice,
        crate::common::RECV_TIMEOUT,
        "alice waits for dm.read",
        |f| f["type"] == "dm.read",
    )
    .await;
    assert_eq!(
        (&read["user_id"], &read["seq"], &read["conversation_id"]),
        (&json!(p.b_id), &json!(total), &json!(conv)),
        "{read}"
    );
}

// ------------------------------------------------------------- 6. presence

/// A push reaches a user's socket on another node only once Redis has
/// confirmed that node's subscription to the user's channel. `hello`
/// answers after that, so a message sent right after the recipient's `ok`
/// is not missed (under load it was, and a pair's exchange stalled). Many
/// users say hello at once so that subscriptions queue up on the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_answers_once_the_users_channel_is_heard() {
    const USERS: usize = 40;
    let redis_url = shared_redis().await;
    let cluster = Cluster::start(
        NodeKind::InProcess,
        2,
        redis_url.clone(),
        Settings::default(),
    )
    .await;
    let n2 = cluster.node(2);
    let redis = redis::Client::open(redis_url.as_str())
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(n2.register(&format!("early{i}")).await);
    }
    let hellos = users.into_iter().map(|(token, id)| {
        let mut redis = redis.clone();
        let channel = format!("{}:user:{id}", cluster.prefix);
        async move {
            let client = n2.client(&token).await;
            let (_, listeners): (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut redis)
                .await
                .expect("PUBSUB NUMSUB");
            (client, listeners)
        }
    });
    let heard: Vec<u64> = futures_util::future::join_all(hellos)
        .await
        .into_iter()
        .map(|(_client, listeners)| listeners)
        .collect();
    assert!(
        heard.iter().all(|&listeners| listeners == 1),
        "listeners of each user's channel right after their hello: {heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_per_user_across_nodes() {
    let redis = shared_redis().await;
    let settings = Settings {
        presence_grace_ms: 200,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis, settings).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let p = pair(n1, n2, "alice", "bobby").await;
    let mut bob = n2.client(&p.b_token).await;

    let a1 = n1.client(&p.a_token).await;
    let online = wait_for(
        &mut bob,
        crate::common::RECV_TIMEOUT,
        "bob waits for alice online",
        |f| is_presence(f, &p.a_id, None),
    )
    .await;
    assert_eq!(online["status"], "online", "{online}");
    assert_eq!(
        presence_of(&mut bob, &p.a_id).await,
        "online",
        "presence.query on node 2 about alice, connected on node 1 only"
    );

    // A second socket on node 2, then the first closes: no flap.
    let a2 = n2.client(&p.a_token).await;
    a1.close().await;
    assert_quiet(
        &mut bob,
        Duration::from_millis(900),
        "bob (alice still has a socket on node 2)",
        |f| is_presence(f, &p.a_id, None),
    )
    .await;
    assert_eq!(presence_of(&mut bob, &p.a_id).await, "online");

    // The last socket closes: offline after the grace.
    let closing = Instant::now();
    a2.close().await;
    let offline = wait_for(&mut bob, SETTLE, "bob waits for alice offline", |f| {
        is_presence(f, &p.a_id, None)
    })
    .await;
    let took = closing.elapsed();
    println!("offline reached node 2 {took:?} after alice's last socket closed");
    assert_eq!(offline["status"], "offline", "{offline}");
    assert!(offline["last_seen_at"].is_string(), "{offline}");
    assert!(
        took >= Duration::from_millis(200),
        "offline only after the 200 ms grace, came after {took:?}"
    );
    assert_quiet(&mut bob, QUIET, "bob (a second presence)", |f| {
        is_presence(f, &p.a_id, None)
    })
    .await;
    assert_eq!(presence_of(&mut bob, &p.a_id).await, "offline");
}

// ------------------------------------------------------------- 7. node death

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_users_go_offline_and_leave_their_rooms() {
    let redis = shared_redis().await;
    let settings = Settings {
        node_ttl_ms: 1_500,
        presence_grace_ms: 200,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(NodeKind::Process, 3, redis, settings).await;
    let p = pair(cluster.node(1), cluster.node(2), "alice", "bobby").await;
    let (carol_token, _) = cluster.node(3).register("carol").await;
    let mut bob = cluster.node(2).client(&p.b_token).await;
    let mut carol = cluster.node(3).client(&carol_token).await;
    let mut alice = cluster.node(1).client(&p.a_token).await;
    wait_for(
        &mut bob,
        crate::common::RECV_TIMEOUT,
        "bob waits for alice online",
        |f| is_presence(f, &p.a_id, Some("online")),
    )
    .await;

    let room_id = create_room(&mut bob, "survivors").await;
    join(&mut carol, &room_id).await;
    join(&mut alice, &room_id).await;
    sees_joined(&mut bob, &room_id, &p.a_id, "bob on node 2").await;
    sees_joined(&mut carol, &room_id, &p.a_id, "carol on node 3").await;
    directory_count_becomes(cluster.node(2), &p.b_token, &room_id, 3).await;

    let killed = Instant::now();
    cluster.node_mut(1).kill();
    let bound = Duration::from_secs(10);
    wait_for(
        &mut bob,
        bound,
        "bob on node 2 waits for alice (node 1 killed) to go offline",
        |f| is_presence(f, &p.a_id, Some("offline")),
    )
    .await;
    println!("offline after node death: {:?}", killed.elapsed());
    let left = || bound.saturating_sub(killed.elapsed());
    sees_left(&mut bob, &room_id, &p.a_id, "bob on node 2", left()).await;
    println!(
        "room.member_left on node 2 after node death: {:?}",
        killed.elapsed()
    );
    sees_left(&mut carol, &room_id, &p.a_id, "carol on node 3", left()).await;
    println!(
        "room.member_left on node 3 after node death: {:?}",
        killed.elapsed()
    );

    directory_count_becomes(cluster.node(2), &p.b_token, &room_id, 2).await;
    directory_count_becomes(cluster.node(3), &carol_token, &room_id, 2).await;
    assert_eq!(presence_of(&mut bob, &p.a_id).await, "offline");

    // The room lives on between the surviving nodes.
    let (id, _) = say(&mut bob, &room_id, "still here").await;
    let got = next_message(&mut carol, &room_id, "carol on node 3").await;
    assert_eq!(text_of(&got["message_id"]), id);
}

// ------------------------------------------------------------- 8. Redis restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_recover_when_redis_restarts_empty() {
    let mut redis = ThrowawayRedis::start().await;
    let settings = Settings {
        node_ttl_ms: 3_000,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis.url(), settings).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let p = pair(n1, n2, "alice", "bobby").await;
    let mut alice = n1.client(&p.a_token).await;
    let mut bob = n2.client(&p.b_token).await;
    let room_id = create_room(&mut alice, "through the outage").await;
    join(&mut bob, &room_id).await;

    let mut max_seq = 0;
    max_seq = max_seq.max(
        relay(
            &mut alice,
            &mut [("bob on node 2", &mut bob)],
            &room_id,
            "before 1",
        )
        .await,
    );
    max_seq = max_seq.max(
        relay(
            &mut bob,
            &mut [("alice on node 1", &mut alice)],
            &room_id,
            "before 2",
        )
        .await,
    );
    dm_send(&mut alice, &p.conversation, "dm before").await;
    next_dm(&mut bob, &p.conversation, "bob on node 2").await;

    // Outage.
    redis.stop();
    for node in [n1, n2] {
        eventually(
            Duration::from_secs(10),
            &format!("/readyz on {} reporting redis unreachable", node.id),
            || async {
                let (status, body) = node.readyz().await;
                if status == 503
                    && body["redis"] == "unreachable"
                    && body["status"] == "unavailable"
                {
                    Ok(())
                } else {
                    Err(format!("{status} {body}"))
                }
            },
        )
        .await;
        let (status, _) = node.get("/healthz", None).await;
        assert_eq!(status, 200, "/healthz on {} while Redis is down", node.id);
    }
    // The socket itself keeps answering; a room send answers (ok, or
    // `unavailable`) instead of hanging.
    alice.ok(json!({"type": "ping"})).await;
    let during = request_within(
        &mut alice,
        json!({"type": "room.send", "room_id": room_id, "text": "during the outage"}),
        "during-outage",
        Duration::from_secs(10),
    )
    .await;
    println!("room.send while Redis is down answered {during}");
    if during["type"] == "ok" {
        max_seq = max_seq.max(seq_of(&during["data"]));
    } else {
        assert_eq!(during["error"]["code"], "unavailable", "{during}");
    }

    // Back, empty.
    redis.start_again().await;
    let back = Instant::now();
    for node in [n1, n2] {
        eventually(
            Duration::from_secs(20),
            &format!("/readyz on {} answering 200 once Redis is back", node.id),
            || async {
                let (status, body) = node.readyz().await;
                if status == 200 && body["redis"] == "ok" {
                    Ok(())
                } else {
                    Err(format!("{status} {body}"))
                }
            },
        )
        .await;
    }
    println!("ready again {:?} after Redis came back", back.elapsed());
    directory_count_becomes(n1, &p.a_token, &room_id, 2).await;
    directory_count_becomes(n2, &p.b_token, &room_id, 2).await;

    let seq = relay(
        &mut alice,
        &mut [("bob on node 2", &mut bob)],
        &room_id,
        "after 1",
    )
    .await;
    assert!(
        seq > max_seq,
        "a message after the restart got seq {seq}, not above {max_seq} seen before it"
    );
    let seq2 = relay(
        &mut bob,
        &mut [("alice on node 1", &mut alice)],
        &room_id,
        "after 2",
    )
    .await;
    assert!(seq2 > seq, "{seq2} after {seq}");

    // DMs across the nodes again.
    let seq = dm_send(&mut alice, &p.conversation, "dm after").await;
    wait_for(
        &mut bob,
        crate::common::RECV_TIMEOUT,
        "bob on node 2 waits for `dm after`",
        |f| f["type"] == "dm.message" && f["seq"] == seq,
    )
    .await;
    let seq = dm_send(&mut bob, &p.conversation, "dm reply").await;
    wait_for(
        &mut alice,
        crate::common::RECV_TIMEOUT,
        "alice on node 1 waits for `dm reply`",
        |f| f["type"] == "dm.message" && f["seq"] == seq,
    )
    .await;
}

// ------------------------------------------------------------- 9. drain

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_nodes_clients_move_without_losing_messages() {
    let redis = shared_redis().await;
    let settings = Settings {
        drain_secs: 5,
        reconnect_after_ms: 250,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(NodeKind::InProcess, 3, redis, settings).await;
    let (mut sender, _, _) = cluster.node(3).user("sender").await;
    let (reader_token, _) = cluster.node(1).register("reader").await;
    let mut reader = cluster.node(1).client(&reader_token).await;

    let room_id = create_room(&mut sender, "drain").await;
    join(&mut reader, &room_id).await;
    let mut acked = Vec::new();
    for i in 0..3 {
        acked.push(say(&mut sender, &room_id, &format!("warm up {i}")).await);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_message(&mut reader, &room_id, "reader on node 1").await);
    }

    // The sender on node 3 keeps talking through the drain.
    let room = room_id.clone();
    let talking = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..30 {
            acked.push(say(&mut sender, &room, &format!("during drain {i}")).await);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (sender, acked)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;

    cluster.node_mut(1).terminate();
    let (frames, ended) = read_until_closed(&mut reader, Duration::from_secs(10)).await;
    let reconnect_at = frames
        .iter()
        .position(|f| f["type"] == "reconnect")
        .unwrap_or_else(|| panic!("no reconnect push before the close; frames: {frames:?}"));
    let reconnect = &frames[reconnect_at];
    assert!(reconnect["reason"].is_string(), "{reconnect}");
    assert_eq!(reconnect["retry_after_ms"], 250, "{reconnect}");
    assert_eq!(ended, Ended::Closed(1012), "after {frames:?}");
    seen.extend(frames.into_iter().filter(|f| is_message_of(f, &room_id)));
    let k = seen.last().map(seq_of).expect("some messages seen");

    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut reader = cluster.node(2).client(&reader_token).await;
    let joined = join_since(&mut reader, &room_id, k).await;
    assert_eq!(
        joined["recovered"], true,
        "join since {k} on node 2: {joined}"
    );
    seen.extend(
        joined["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("messages in {joined}"))
            .iter()
            .cloned(),
    );

    let (_sender, during) = tokio::time::timeout(Duration::from_secs(30), talking)
        .await
        .expect("the sender finishes")
        .expect("the sender task");
    acked.extend(during);
    let last = acked.last().expect("sent").1;
    while seen.last().map(seq_of) < Some(last) {
        seen.push(next_message(&mut reader, &room_id, "reader on node 2").await);
    }
    assert_quiet(&mut reader, QUIET, "reader (a duplicate)", |f| {
        is_message_of(f, &room_id)
    })
    .await;

    let got: Vec<(String, u64)> = seen
        .iter()
        .map(|m| (text_of(&m["message_id"]), seq_of(m)))
        .collect();
    let lost: Vec<_> = acked.iter().filter(|a| !got.contains(a)).collect();
    assert!(lost.is_empty(), "lost across the drain: {lost:?}");
    assert_eq!(
        got, acked,
        "the reader saw duplicates or extra messages across the drain"
    );

    cluster
        .node_mut(1)
        .wait_stopped(Duration::from_secs(15))
        .await;
}

/// While Redis is away, a message between two sockets on one node still
/// reaches both (the relay falls back to this node's sockets), and so does
/// a partner going offline and coming back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_and_presence_on_one_node_still_arrive_while_redis_is_down() {
    let mut redis = ThrowawayRedis::start().await;
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis.url(), Settings::default()).await;
    let n1 = cluster.node(1);
    let p = pair(n1, n1, "alice", "bobby").await;
    let mut alice = n1.client(&p.a_token).await;
    let mut bob = n1.client(&p.b_token).await;
    dm_send(&mut alice, &p.conversation, "before").await;
    next_dm(&mut bob, &p.conversation, "bob").await;
    next_dm(&mut alice, &p.conversation, "alice's own copy").await;

    redis.stop();
    eventually(
        Duration::from_secs(10),
        "/readyz on node 1 reporting redis unreachable",
        || async {
            let (status, body) = n1.readyz().await;
            if status == 503 && body["redis"] == "unreachable" {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        },
    )
    .await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(dm_send(&mut alice, &p.conversation, &format!("while down {i}")).await);
    }
    for (who, client) in [("bob", &mut bob), ("alice", &mut alice)] {
        let mut got = Vec::new();
        for _ in 0..sent.len() {
            got.push(seq_of(&next_dm(client, &p.conversation, who).await));
        }
        assert_eq!(
            got, sent,
            "{who} sees every message sent while Redis is down, in order"
        );
    }

    bob.close().await;
    wait_for(&mut alice, SETTLE, "alice waits for bob offline", |f| {
        is_presence(f, &p.b_id, Some("offline"))
    })
    .await;
    let _bob_again = n1.client(&p.b_token).await;
    wait_for(
        &mut alice,
        SETTLE,
        "alice waits for bob online again",
        |f| is_presence(f, &p.b_id, Some("online")),
    )
    .await;
    redis.start_again().await;
}

// ------------------------------------------------------------- 10. Postgres down

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_ops_are_unavailable_while_postgres_is_down() {
    let Some(mut pg) = ThrowawayPostgres::start().await else {
        panic!(
            "this test runs its own Postgres and needs initdb and postgres under \
             /usr/lib/postgresql/<version>/bin; install them with `apt-get install postgresql`"
        );
    };
    let redis = shared_redis().await;
    let database_url = pg.create_database("meshi").await;
    let cluster = Cluster::start_on(
        NodeKind::InProcess,
        2,
        database_url,
        redis,
        Settings::default(),
    )
    .await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let p = pair(n1, n2, "alice", "bobby").await;
    let mut alice = n1.client(&p.a_token).await;
    let mut bob = n2.client(&p.b_token).await;
    let seq = dm_send(&mut alice, &p.conversation, "before").await;
    assert_eq!(
        seq_of(&next_dm(&mut bob, &p.conversation, "bob").await),
        seq
    );

    pg.stop().await;
    let stopped = Instant::now();
    let down = request_within(
        &mut alice,
        json!({"type": "dm.send", "conversation_id": p.conversation, "text": "while down"}),
        "while-down",
        Duration::from_secs(15),
    )
    .await;
    println!(
        "dm.send while Postgres is down answered in {:?}: {down}",
        stopped.elapsed()
    );
    assert_eq!(
        down["type"], "error",
        "dm.send while Postgres is down: {down}"
    );
    assert_eq!(down["error"]["code"], "unavailable", "{down}");
    let (status, body) = n1.readyz().await;
    assert_eq!(status, 503, "/readyz while Postgres is down: {body}");
    assert_eq!(body["database"], "unreachable", "{body}");
    alice.ok(json!({"type": "ping"})).await;

    pg.start_again().await;
    for node in [n1, n2] {
        eventually(
            Duration::from_secs(20),
            &format!("/readyz on {} answering 200 once Postgres is back", node.id),
            || async {
                let (status, body) = node.readyz().await;
                if status == 200 {
                    Ok(())
                } else {
                    Err(format!("{status} {body}"))
                }
            },
        )
        .await;
    }
    let mut attempt = 0;
    let seq = loop {
        attempt += 1;
        let reply = request_within(
            &mut alice,
            json!({"type": "dm.send", "conversation_id": p.conversation, "text": "after"}),
            &format!("after-{attempt}"),
            Duration::from_secs(10),
        )
        .await;
        if reply["type"] == "ok" {
            break seq_of(&reply["data"]);
        }
        assert!(
            attempt < 5,
            "dm.send keeps failing after Postgres is back: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        seq, 2,
        "the failed send stored nothing; the next takes seq 2"
    );
    let got = next_dm(&mut bob, &p.conversation, "bob on node 2").await;
    assert_eq!(seq_of(&got), seq, "{got}");
}

/// Two running nodes of one id would take each other's deliveries for
/// their own, so the second refuses to start, saying why.
#[tokio::test]
async fn a_second_node_with_a_running_nodes_id_refuses_to_start() {
    let redis = shared_redis().await;
    let prefix = random_prefix();
    let config = |dir: &tempfile::TempDir| {
        let mut config = test_config(format!(
            "sqlite://{}",
            dir.path().join("meshi.db").display()
        ));
        config.redis_url = Some(redis.clone());
        config.redis_prefix = prefix.clone();
        config.node_id = Some("twin".into());
        config.node_ttl_ms = 600;
        config
    };
    let first_dir = tempfile::tempdir().expect("temp dir");
    let first = crate::common::TestServer::start_on(config(&first_dir), first_dir).await;

    let second_dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let started = Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        meshi::serve(listener, config(&second_dir), std::future::pending()),
    )
    .await
    .expect("the second node gives up within 10 s");
    let error = refused
        .expect_err("the second node must not start")
        .to_string();
    assert!(
        error.contains("twin") && error.contains("MESHI_NODE_ID"),
        "{error}"
    );
    println!("refused after {:?}: {error}", started.elapsed());
    first.shutdown().await;
}
