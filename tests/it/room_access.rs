//! Access that ends (SAFETY-v1, "Rooms: kick, ban, close; access that
//! ends"): withdrawing an RSVP or leaving a community takes the user out of
//! its room at once. Their sockets get `room.removed {reason: "access"}`,
//! the others `room.member_left`, and from then on nothing of the room
//! reaches them or comes from them, until they may enter again.
//!
//! Each scenario runs on one node, and on two nodes over Redis with the
//! REST call, the host and the user's sockets spread over both. The
//! cluster runs need Postgres on 127.0.0.1:5432 and Redis on 6379 (see
//! `crate::common::services`) and fail saying how to start what is missing.

use std::time::Duration;

use crate::common::chat::{is_message_of, relay};
use crate::common::cluster::{Cluster, NodeKind, Settings};
use crate::common::json::text_of;
use crate::common::platform::{join_community, leave_event, new_community, new_event, rsvp};
use crate::common::services::shared_redis;
use crate::common::wait::{assert_quiet, wait_for};
use crate::common::{Api, TestServer, WsClient, RECV_TIMEOUT};
use serde_json::{json, Value};

/// How long "nothing of the room arrives" is watched for.
const QUIET: Duration = Duration::from_millis(600);
const STARTS_AT: &str = "2099-05-01T19:00:00Z";

/// Every socket of the user that was in the room hears it is out.
async fn removed(client: &mut WsClient, room_id: &str, who: &str) {
    let frame = wait_for(
        client,
        RECV_TIMEOUT,
        &format!("{who} waits for room.removed"),
        |f| f["type"] == "room.removed",
    )
    .await;
    assert_eq!(
        frame,
        json!({"type": "room.removed", "room_id": room_id, "reason": "access"}),
        "{who}"
    );
}

/// The user out of the room: nothing of it reaches them, nothing they send
/// reaches it, and they cannot come back in.
async fn shut_out(host: &mut WsClient, outside: &mut [(&str, &mut WsClient)], room_id: &str) {
    let sent = host
        .ok(json!({"type": "room.send", "room_id": room_id, "text": "after you left"}))
        .await;
    wait_for(
        host,
        RECV_TIMEOUT,
        "the host hears their own message",
        |f| is_message_of(f, room_id) && f["message_id"] == sent["message_id"],
    )
    .await;
    for (who, client) in outside.iter_mut() {
        assert_quiet(client, QUIET, &format!("{who} after removal"), |f| {
            is_message_of(f, room_id) && f["text"] == "after you left"
        })
        .await;
        for op in [
            json!({"type": "room.send", "room_id": room_id, "text": "can you hear me?"}),
            json!({"type": "room.typing", "room_id": room_id}),
            json!({"type": "room.join", "room_id": room_id}),
        ] {
            let reply = client.request(op.clone()).await;
            assert_eq!(
                (&reply["type"], &reply["error"]["code"]),
                (&json!("error"), &json!("forbidden")),
                "{who}: {op} answered {reply}"
            );
        }
    }
    assert_quiet(
        host,
        QUIET,
        "the host hears nothing from the removed user",
        |f| {
            f["room_id"] == room_id
                && (f["text"] == "can you hear me?" || f["type"] == "room.typing")
        },
    )
    .await;
}

/// The host on `host_door`; the guest's sockets on both doors; the REST
/// calls that end and restore access through `rest`.
async fn withdrawing_an_rsvp_ends_access(host_door: &Api, guest_door: &Api, rest: &Api) {
    let (host_token, _) = host_door.register("host_haru").await;
    let (guest_token, guest_id) = guest_door.register("guest_gin").await;
    let mut host = host_door.client(&host_token).await;
    let mut guest_here = guest_door.client(&guest_token).await;
    let mut guest_there = host_door.client(&guest_token).await;

    let event = new_event(
        rest,
        &host_token,
        json!({"title": "curry night", "description": "", "starts_at": STARTS_AT,
               "venue": "the usual place", "capacity": 3}),
    )
    .await;
    let event_id = text_of(&event["id"]);
    let going = rsvp(rest, &event_id, &guest_token).await;
    assert_eq!(going["status"], "going", "{going}");

    let room_id = format!("event:{event_id}");
    let join = json!({"type": "room.join", "room_id": room_id});
    host.ok(join.clone()).await;
    guest_here.ok(join.clone()).await;
    guest_there.ok(join.clone()).await;
    relay(
        &mut host,
        &mut [
            ("the guest", &mut guest_here),
            ("the guest's other socket", &mut guest_there),
        ],
        &room_id,
        "before",
    )
    .await;

    leave_event(rest, &event_id, &guest_token).await;
    removed(&mut guest_here, &room_id, "the guest").await;
    removed(&mut guest_there, &room_id, "the guest's other socket").await;
    let left = wait_for(
        &mut host,
        RECV_TIMEOUT,
        "the host sees the guest leave",
        |f| f["type"] == "room.member_left",
    )
    .await;
    assert_eq!(
        left,
        json!({"type": "room.member_left", "room_id": room_id, "user_id": guest_id})
    );
    shut_out(
        &mut host,
        &mut [
            ("the guest", &mut guest_here),
            ("the guest's other socket", &mut guest_there),
        ],
        &room_id,
    )
    .await;

    // Going again, the guest may come back in on the socket that was
    // taken out, and is a member again there.
    let going = rsvp(rest, &event_id, &guest_token).await;
    assert_eq!(going["status"], "going", "{going}");
    let joined = guest_here.ok(join.clone()).await;
    assert_eq!(joined["room"]["member_count"], 2, "{joined}");
    relay(
        &mut host,
        &mut [("the guest, back", &mut guest_here)],
        &room_id,
        "welcome back",
    )
    .await;
    relay(
        &mut guest_here,
        &mut [("the host", &mut host)],
        &room_id,
        "glad to be back",
    )
    .await;
    assert_quiet(
        &mut guest_there,
        QUIET,
        "the socket that did not come back",
        |f| is_message_of(f, &room_id) && f["text"] != "before",
    )
    .await;
}

async fn leaving_a_community_ends_access(owner_door: &Api, member_door: &Api, rest: &Api) {
    let (owner_token, _) = owner_door.register("owner_oto").await;
    let (member_token, member_id) = member_door.register("member_mio").await;
    let mut owner = owner_door.client(&owner_token).await;
    let mut member = member_door.client(&member_token).await;

    let community = new_community(
        rest,
        &owner_token,
        json!({"name": "gophers and crabs", "description": "both"}),
    )
    .await;
    let community_id = text_of(&community["id"]);
    let membership = format!("/api/v1/communities/{community_id}/membership");
    join_community(rest, &community_id, &member_token).await;

    let room_id = format!("community:{community_id}");
    let join = json!({"type": "room.join", "room_id": room_id});
    owner.ok(join.clone()).await;
    member.ok(join).await;
    relay(
        &mut member,
        &mut [("the owner", &mut owner)],
        &room_id,
        "hello all",
    )
    .await;

    let (status, body) = rest.delete(&membership, &member_token).await;
    assert_eq!(status, 204, "{body}");
    removed(&mut member, &room_id, "the former member").await;
    let left = wait_for(
        &mut owner,
        RECV_TIMEOUT,
        "the owner sees the member leave",
        |f| f["type"] == "room.member_left",
    )
    .await;
    assert_eq!(left["user_id"], member_id.as_str(), "{left}");
    shut_out(
        &mut owner,
        &mut [("the former member", &mut member)],
        &room_id,
    )
    .await;

    // Leaving again changes nothing and tells nobody anything.
    let (status, body) = rest.delete(&membership, &member_token).await;
    assert_eq!(status, 204, "{body}");
    assert_quiet(&mut member, QUIET, "a second leave", |f| {
        f["type"] == "room.removed"
    })
    .await;
}

#[tokio::test]
async fn withdrawing_an_rsvp_ends_access_on_one_node() {
    let server = TestServer::start().await;
    withdrawing_an_rsvp_ends_access(&server, &server, &server).await;
}

#[tokio::test]
async fn leaving_a_community_ends_access_on_one_node() {
    let server = TestServer::start().await;
    leaving_a_community_ends_access(&server, &server, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawing_an_rsvp_ends_access_across_nodes() {
    let cluster = Cluster::start(
        NodeKind::InProcess,
        2,
        shared_redis().await,
        Settings::default(),
    )
    .await;
    let (one, two) = (cluster.node(1), cluster.node(2));
    withdrawing_an_rsvp_ends_access(one, two, one).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_community_ends_access_across_nodes() {
    let cluster = Cluster::start(
        NodeKind::InProcess,
        2,
        shared_redis().await,
        Settings::default(),
    )
    .await;
    let (one, two) = (cluster.node(1), cluster.node(2));
    leaving_a_community_ends_access(one, two, one).await;
}

#[tokio::test]
async fn the_socket_protocol_still_lists_a_room_the_user_may_enter_again() {
    // A removed user is not left with a room in room.list they cannot
    // enter, and sees it again once they may.
    let server = TestServer::start().await;
    let (owner_token, _) = server.register("owner_ola").await;
    let (member_token, _) = server.register("member_max").await;
    let mut member = server.client(&member_token).await;
    let community = new_community(
        &server,
        &owner_token,
        json!({"name": "listeners", "description": ""}),
    )
    .await;
    let community_id = text_of(&community["id"]);
    let room_id = format!("community:{community_id}");
    let membership = format!("/api/v1/communities/{community_id}/membership");
    let listed = |list: &Value| {
        list["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .any(|room| room["id"] == room_id.as_str())
    };
    join_community(&server, &community_id, &member_token).await;
    assert!(listed(&member.ok(json!({"type": "room.list"})).await));
    let (status, body) = server.delete(&membership, &member_token).await;
    assert_eq!(status, 204, "{body}");
    assert!(!listed(&member.ok(json!({"type": "room.list"})).await));
    join_community(&server, &community_id, &member_token).await;
    assert!(listed(&member.ok(json!({"type": "room.list"})).await));
}
