//! The session: `hello`, the subprotocol, `ping`, `auth.refresh`, logout and
//! token expiry closing live sockets, and replies with and without `ref`.

use std::time::Duration;

use crate::common::chat::assert_alive;
use crate::common::json::parse_time;
use crate::common::{Ended, TestServer, WsClient};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::Message;

/// Generous bound for a close the server should send soon.
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

/// Opens `/ws` offering `protocols`; returns the socket and the
/// subprotocol the server selected, if any.
async fn connect_offering(server: &TestServer, protocols: &str) -> (WsClient, Option<String>) {
    let (client, headers) =
        WsClient::connect_with_header(server, SEC_WEBSOCKET_PROTOCOL, protocols).await;
    let selected = headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().expect("an ASCII header").to_owned());
    (client, selected)
}

#[tokio::test]
async fn hello_answers_user_session_and_heartbeat() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            None,
            json!({"handle": "aiko", "password": "password123", "display_name": "Aiko Tanaka"}),
        )
        .await;
    assert_eq!(status, 201, "register answered {body}");
    let token = body["token"].as_str().expect("token");
    let user_id = body["user"]["id"].as_str().expect("user id");

    let mut client = WsClient::connect(&server).await;
    let hello = client.ok(json!({"type": "hello", "token": token})).await;
    assert_eq!(
        hello["user"],
        json!({"id": user_id, "handle": "aiko", "display_name": "Aiko Tanaka"}),
        "hello answered {hello}"
    );
    let session_id = hello["session_id"]
        .as_str()
        .expect("session_id is a string");
    assert!(!session_id.is_empty());
    assert_eq!(hello["heartbeat_ms"], json!(server.config.heartbeat_ms));

    // A second token of the same user is another session.
    let second = server.login("aiko").await;
    let mut other = WsClient::connect(&server).await;
    let hello2 = other.ok(json!({"type": "hello", "token": second})).await;
    assert_eq!(hello2["user"]["id"], user_id);
    assert_ne!(hello2["session_id"], hello["session_id"]);
    server.shutdown().await;
}

#[tokio::test]
async fn the_meshi_v1_subprotocol_is_selected_when_offered() {
    let server = TestServer::start().await;
    let (token, _) = server.register("aiko").await;

    let (mut ws, selected) = connect_offering(&server, "meshi.v1").await;
    assert_eq!(selected.as_deref(), Some("meshi.v1"));
    let hello = ws.request(json!({"type": "hello", "token": token})).await;
    assert_eq!(hello["type"], "ok", "hello answered {hello}");
    let pong = ws.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "ok", "ping answered {pong}");

    // Among other offers, meshi.v1 is still the one picked.
    let (_ws2, selected) = connect_offering(&server, "chat.other, meshi.v1").await;
    assert_eq!(selected.as_deref(), Some("meshi.v1"));
    server.shutdown().await;
}

#[tokio::test]
async fn ops_before_hello_are_unauthenticated_and_the_socket_stays_usable() {
    let server = TestServer::start().await;
    let (token, user_id) = server.register("aiko").await;
    let mut client = WsClient::connect(&server).await;

    for frame in [
        json!({"type": "room.list"}),
        json!({"type": "room.create", "name": "too early"}),
        json!({"type": "room.join", "room_id": "r_nope"}),
        json!({"type": "room.send", "room_id": "r_nope", "text": "hi"}),
        json!({"type": "rooms.watch"}),
        json!({"type": "auth.refresh", "token": token}),
        json!({"type": "presence.query", "user_ids": [user_id]}),
    ] {
        client.err(frame, "unauthenticated").await;
    }
    // A frame without ref still gets its error, without ref.
    client.send(json!({"type": "room.list"})).await;
    let error = client.next_of("error").await;
    assert_eq!(error["error"]["code"], "unauthenticated", "{error}");
    assert!(error.get("ref").is_none(), "{error}");

    let hello = client.ok(json!({"type": "hello", "token": token})).await;
    assert_eq!(hello["user"]["id"], user_id.as_str());
    let rooms = client.ok(json!({"type": "room.list"})).await;
    assert!(rooms["rooms"].is_array(), "room.list answered {rooms}");
    server.shutdown().await;
}

#[tokio::test]
async fn ping_before_hello_is_unauthenticated() {
    let server = TestServer::start().await;
    let (token, _) = server.register("aiko").await;
    let mut client = WsClient::connect(&server).await;
    // The contract: before hello every op but hello gets `unauthenticated`.
    client.err(json!({"type": "ping"}), "unauthenticated").await;
    client.ok(json!({"type": "hello", "token": token})).await;
    client.ok(json!({"type": "ping"})).await;
    server.shutdown().await;
}

#[tokio::test]
async fn hello_with_a_bad_token_is_unauthenticated_then_closed_with_4001() {
    let server = TestServer::start().await;
    for token in ["mst_not_a_real_token", ""] {
        let mut client = WsClient::connect(&server).await;
        client
            .err(json!({"type": "hello", "token": token}), "unauthenticated")
            .await;
        assert_eq!(
            client.closed_with(CLOSE_WITHIN).await,
            Ended::Closed(4001),
            "token {token:?}"
        );
    }

    // Without ref, the error still comes (without ref) before the close.
    let mut quiet = WsClient::connect(&server).await;
    quiet
        .send(json!({"type": "hello", "token": "mst_not_a_real_token"}))
        .await;
    let error = quiet.next_of("error").await;
    assert_eq!(error["error"]["code"], "unauthenticated", "{error}");
    assert!(error.get("ref").is_none(), "{error}");
    assert_eq!(quiet.closed_with(CLOSE_WITHIN).await, Ended::Closed(4001));
    server.shutdown().await;
}

#[tokio::test]
async fn no_hello_before_the_deadline_closes_with_4001() {
    let server = TestServer::start_with(|config| config.hello_timeout_ms = 500).await;
    let started = Instant::now();
    let mut client = WsClient::connect(&server).await;
    assert_eq!(client.closed_with(CLOSE_WITHIN).await, Ended::Closed(4001));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed only after {:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn other_frames_do_not_extend_the_hello_deadline() {
    let server = TestServer::start_with(|config| config.hello_timeout_ms = 500).await;
    let mut client = WsClient::connect(&server).await;
    let ws = client.raw();
    let ended = timeout(CLOSE_WITHIN, async {
        loop {
            // Errors once the server has closed are expected; keep reading.
            let _ = ws
                .send(Message::text(r#"{"type":"room.list"}"#.to_owned()))
                .await;
            match timeout(Duration::from_millis(100), ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    break Ended::Closed(frame.map_or(1005, |f| u16::from(f.code)))
                }
                Ok(Some(Ok(_))) | Err(_) => {}
                Ok(Some(Err(_)) | None) => break Ended::Dropped,
            }
        }
    })
    .await
    .expect("the hello deadline closes the socket despite other frames");
    assert_eq!(ended, Ended::Closed(4001));
    server.shutdown().await;
}

#[tokio::test]
async fn ping_answers_the_server_time_in_rfc3339() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    let pong = client.ok(json!({"type": "ping"})).await;
    let server_time = pong["server_time"]
        .as_str()
        .unwrap_or_else(|| panic!("server_time is a string in {pong}"));
    let then = parse_time(&pong["server_time"]);
    let drift = (time::OffsetDateTime::now_utc() - then).abs();
    assert!(
        drift < time::Duration::minutes(5),
        "server_time {server_time} is {drift} away from now"
    );

    // String refs are echoed as strings.
    client.send(json!({"type": "ping", "ref": "p-1"})).await;
    let reply = client.next_matching(|f| f["ref"] == "p-1").await;
    assert_eq!(reply["type"], "ok", "{reply}");
    parse_time(&reply["data"]["server_time"]);
    server.shutdown().await;
}

#[tokio::test]
async fn hello_twice_is_a_bad_request() {
    let server = TestServer::start().await;
    let (mut client, token, user_id) = server.user("aiko").await;
    let (other_token, _) = server.register("bob").await;

    client
        .err(json!({"type": "hello", "token": token}), "bad_request")
        .await;
    client
        .err(
            json!({"type": "hello", "token": other_token}),
            "bad_request",
        )
        .await;
    // Still usable, and still the same user: a room it creates is hosted by it.
    client.ok(json!({"type": "ping"})).await;
    let created = client
        .ok(json!({"type": "room.create", "name": "after two hellos"}))
        .await;
    assert_eq!(created["room"]["host_id"], user_id.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn auth_refresh_takes_a_token_of_the_same_user() {
    let server = TestServer::start().await;
    let (mut client, first, _) = server.user("aiko").await;
    let second = server.login("aiko").await;

    let data = client
        .ok(json!({"type": "auth.refresh", "token": second}))
        .await;
    assert_eq!(data, json!({}));

    // The socket now lives on the second token: ending the first one leaves
    // it open, ending the second closes it.
    server.logout(&first).await;
    assert_alive(&mut client, "client").await;
    server.logout(&second).await;
    assert_eq!(client.closed_with(CLOSE_WITHIN).await, Ended::Closed(4010));
    server.shutdown().await;
}

#[tokio::test]
async fn auth_refresh_moves_the_socket_to_the_new_tokens_expiry() {
    let ttl = Duration::from_secs(6);
    let server = TestServer::start_with(|config| config.session_ttl_secs = ttl.as_secs()).await;
    let (first, _) = server.register("aiko").await;
    // The first token expires at most `ttl` from here.
    let first_issued_by = Instant::now();
    let mut client = WsClient::hello(&server, &first).await;

    tokio::time::sleep(ttl / 2).await;
    // The second token expires at least `ttl` from here.
    let second_asked_at = Instant::now();
    let second = server.login("aiko").await;
    client
        .ok(json!({"type": "auth.refresh", "token": second}))
        .await;

    // Past the first token's end the socket is still open...
    tokio::time::sleep_until(first_issued_by + ttl + Duration::from_millis(300)).await;
    assert!(
        Instant::now() < second_asked_at + ttl,
        "the machine is too slow for this test's margins"
    );
    let pong = client.ok(json!({"type": "ping"})).await;
    assert!(pong["server_time"].is_string(), "{pong}");
    // ...and it ends with the second one.
    assert_eq!(client.closed_with(CLOSE_WITHIN).await, Ended::Closed(4010));
    server.shutdown().await;
}

#[tokio::test]
async fn auth_refresh_with_another_users_token_is_forbidden() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;
    let (bob_token, _) = server.register("bob").await;

    client
        .err(
            json!({"type": "auth.refresh", "token": bob_token}),
            "forbidden",
        )
        .await;
    // The socket kept its own token: bob logging out does not touch it.
    server.logout(&bob_token).await;
    assert_alive(&mut client, "client").await;

    client
        .err(
            json!({"type": "auth.refresh", "token": "mst_not_a_real_token"}),
            "unauthenticated",
        )
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn logout_closes_every_socket_of_that_token_with_4010() {
    let server = TestServer::start().await;
    let (first, user_id) = server.register("aiko").await;
    let second = server.login("aiko").await;
    let mut tab1 = WsClient::hello(&server, &first).await;
    let mut tab2 = WsClient::hello(&server, &first).await;
    let mut phone = WsClient::hello(&server, &second).await;

    server.logout(&first).await;
    assert_eq!(tab1.closed_with(CLOSE_WITHIN).await, Ended::Closed(4010));
    assert_eq!(tab2.closed_with(CLOSE_WITHIN).await, Ended::Closed(4010));

    // The other session of the same user is untouched.
    assert_alive(&mut phone, "phone").await;
    let (status, me) = server.get("/api/v1/me", Some(&second)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], user_id.as_str());

    // The revoked token opens nothing any more.
    let (status, body) = server.get("/api/v1/me", Some(&first)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    let mut again = WsClient::connect(&server).await;
    again
        .err(json!({"type": "hello", "token": first}), "unauthenticated")
        .await;
    assert_eq!(again.closed_with(CLOSE_WITHIN).await, Ended::Closed(4001));
    server.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_closes_its_socket_with_4010() {
    // Two seconds rather than one leave room for a loaded machine between
    // issuing the token and saying hello with it.
    let ttl = Duration::from_secs(2);
    let server = TestServer::start_with(|config| config.session_ttl_secs = ttl.as_secs()).await;
    let (token, _) = server.register("aiko").await;
    let started = Instant::now();
    let mut client = WsClient::hello(&server, &token).await;

    assert_eq!(client.closed_with(CLOSE_WITHIN).await, Ended::Closed(4010));
    assert!(
        started.elapsed() < ttl + Duration::from_secs(10),
        "closed only after {:?}",
        started.elapsed()
    );

    let mut again = WsClient::connect(&server).await;
    again
        .err(json!({"type": "hello", "token": token}), "unauthenticated")
        .await;
    assert_eq!(again.closed_with(CLOSE_WITHIN).await, Ended::Closed(4001));
    let (status, body) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 401, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn requests_without_ref_get_no_ok_but_errors_come_back_without_ref() {
    let server = TestServer::start().await;
    let (mut client, _, _) = server.user("aiko").await;

    // Successes are silent...
    client.send(json!({"type": "ping"})).await;
    client
        .send(json!({"type": "room.create", "name": "quiet room"}))
        .await;
    client.assert_no("ok", Duration::from_millis(500)).await;
    assert!(
        client.pending().iter().all(|f| f["type"] != "error"),
        "unexpected errors: {:?}",
        client.pending()
    );
    // ...but carried out.
    let rooms = client.ok(json!({"type": "room.list"})).await;
    let names: Vec<&Value> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| &r["name"])
        .collect();
    assert_eq!(names, [&json!("quiet room")], "room.list answered {rooms}");

    // A join without ref queues no ok either, and a send without ref still
    // delivers its message.
    let room_id = rooms["rooms"][0]["id"]
        .as_str()
        .expect("room id")
        .to_owned();
    client
        .send(json!({"type": "room.join", "room_id": room_id}))
        .await;
    client
        .send(json!({"type": "room.send", "room_id": room_id, "text": "psst"}))
        .await;
    let message = client.next_of("room.message").await;
    assert_eq!(message["text"], "psst", "{message}");
    assert!(message.get("ref").is_none(), "a push with a ref: {message}");
    client.assert_no("ok", Duration::from_millis(500)).await;

    // Failures still come back, without ref.
    client
        .send(json!({"type": "room.leave", "room_id": "r_does_not_exist"}))
        .await;
    let error = client.next_of("error").await;
    assert_eq!(error["error"]["code"], "not_found", "{error}");
    assert!(error.get("ref").is_none(), "{error}");

    client.send(json!({"type": "no.such.op"})).await;
    let error = client.next_of("error").await;
    assert_eq!(error["error"]["code"], "bad_request", "{error}");
    assert!(error.get("ref").is_none(), "{error}");

    // And a request with ref is answered exactly once.
    client.ok(json!({"type": "ping"})).await;
    client.assert_no("ok", Duration::from_millis(300)).await;
    server.shutdown().await;
}
