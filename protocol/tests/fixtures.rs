//! Data-driven checks of the JSON examples under `fixtures/`.
//!
//! Every file in `fixtures/client` must parse as a [`Request`] (its `ref`
//! through [`Header`]) and every file in `fixtures/server` as a
//! [`ServerFrame`]; serializing the parsed value again must give back the same
//! JSON, field for field. The `data` of each `ok` fixture is also checked
//! against the reply type of its op. The set of fixtures must cover every op
//! and every server frame kind. Nothing is skipped: a file that cannot be read
//! or parsed fails the test.

use meshi_protocol::{
    DmHistoryOk, Empty, Header, HelloOk, PingOk, PresenceList, Ref, Request, Room,
    RoomClosedReason, RoomCreated, RoomJoined, RoomKind, RoomList, Sent, ServerFrame, UserSummary,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::any::type_name;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// One fixture file: its name without `.json`, its raw text and its JSON value.
struct Fixture {
    name: String,
    path: PathBuf,
    text: String,
    value: Value,
}

impl Fixture {
    fn label(&self) -> String {
        self.path.display().to_string()
    }
}

/// Reads every file of `fixtures/<sub>`, panicking on anything that is not a
/// readable `.json` file holding one JSON object.
fn load(sub: &str) -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(sub);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut fixtures = Vec::new();
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{}: file name is not UTF-8", path.display()));
        let name = file_name
            .strip_suffix(".json")
            .unwrap_or_else(|| panic!("{}: fixtures must be .json files", path.display()))
            .to_owned();
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", path.display()));
        assert!(
            value.is_object(),
            "{}: a frame is one JSON object",
            path.display()
        );
        fixtures.push(Fixture {
            name,
            path,
            text,
            value,
        });
    }
    assert!(!fixtures.is_empty(), "no fixtures in {}", dir.display());
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    fixtures
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value always serializes")
}

fn assert_same_json(what: &str, through: &str, original: &Value, back: &Value) {
    assert!(
        original == back,
        "{what}: round trip through {through} changed the JSON\n--- original\n{}\n--- re-serialized\n{}",
        pretty(original),
        pretty(back),
    );
}

fn to_json<T: Serialize>(what: &str, typed: &T) -> Value {
    serde_json::to_value(typed)
        .unwrap_or_else(|e| panic!("{what}: cannot serialize {}: {e}", type_name::<T>()))
}

/// Parses `text` as `T`, serializes it again and compares with `original`.
fn round_trip_text<T: Serialize + DeserializeOwned>(what: &str, text: &str, original: &Value) -> T {
    let typed: T = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{what}: does not parse as {}: {e}", type_name::<T>()));
    assert_same_json(what, type_name::<T>(), original, &to_json(what, &typed));
    typed
}

/// Parses the value as `T`, serializes it again and compares.
fn round_trip_value<T: Serialize + DeserializeOwned>(what: &str, original: &Value) {
    let typed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{what}: does not parse as {}: {e}", type_name::<T>()));
    assert_same_json(what, type_name::<T>(), original, &to_json(what, &typed));
}

/// The check of an op's `ok` data: a round trip through its reply type.
fn reply_check(op: &str) -> Option<fn(&str, &Value)> {
    Some(match op {
        "hello" => round_trip_value::<HelloOk>,
        "ping" => round_trip_value::<PingOk>,
        "auth.refresh" | "room.leave" | "room.typing" | "room.kick" | "room.close"
        | "room.edit" | "room.delete" | "dm.edit" | "dm.delete" | "dm.read" | "dm.typing" => {
            round_trip_value::<Empty>
        }
        "room.create" => round_trip_value::<RoomCreated>,
        "room.list" | "rooms.watch" => round_trip_value::<RoomList>,
        "room.join" => round_trip_value::<RoomJoined>,
        "room.send" | "dm.send" => round_trip_value::<Sent>,
        "dm.history" => round_trip_value::<DmHistoryOk>,
        "presence.query" => round_trip_value::<PresenceList>,
        _ => return None,
    })
}

fn user() -> UserSummary {
    UserSummary {
        id: "u".into(),
        handle: "h".into(),
        display_name: "d".into(),
    }
}

fn room() -> Room {
    Room {
        id: "r".into(),
        kind: RoomKind::DropIn,
        name: "n".into(),
        topic: None,
        capacity: 2,
        member_count: 0,
        host_id: None,
        created_at: "t".into(),
    }
}

/// One value of every `Request` variant.
fn every_request() -> Vec<Request> {
    let s = String::new;
    let all = vec![
        Request::Hello { token: s() },
        Request::Ping,
        Request::AuthRefresh { token: s() },
        Request::RoomCreate {
            name: s(),
            topic: None,
            capacity: None,
        },
        Request::RoomList,
        Request::RoomJoin {
            room_id: s(),
            since_seq: None,
        },
        Request::RoomLeave { room_id: s() },
        Request::RoomSend {
            room_id: s(),
            text: s(),
            client_msg_id: None,
        },
        Request::RoomTyping { room_id: s() },
        Request::RoomEdit {
            room_id: s(),
            message_id: s(),
            text: s(),
        },
        Request::RoomDelete {
            room_id: s(),
            message_id: s(),
        },
        Request::RoomKick {
            room_id: s(),
            user_id: s(),
            ban_secs: None,
            reason: None,
        },
        Request::RoomClose { room_id: s() },
        Request::RoomsWatch,
        Request::DmSend {
            conversation_id: s(),
            text: s(),
            client_msg_id: None,
        },
        Request::DmHistory {
            conversation_id: s(),
            after_seq: None,
            before_seq: None,
            limit: None,
        },
        Request::DmEdit {
            conversation_id: s(),
            message_id: s(),
            text: s(),
        },
        Request::DmDelete {
            conversation_id: s(),
            message_id: s(),
        },
        Request::DmRead {
            conversation_id: s(),
            seq: 0,
        },
        Request::DmTyping {
            conversation_id: s(),
        },
        Request::PresenceQuery { user_ids: vec![] },
    ];
    // A variant added to `Request` breaks this match: list it above too.
    for request in &all {
        match request {
            Request::Hello { .. }
            | Request::Ping
            | Request::AuthRefresh { .. }
            | Request::RoomCreate { .. }
            | Request::RoomList
            | Request::RoomJoin { .. }
            | Request::RoomLeave { .. }
            | Request::RoomSend { .. }
            | Request::RoomTyping { .. }
            | Request::RoomEdit { .. }
            | Request::RoomDelete { .. }
            | Request::RoomKick { .. }
            | Request::RoomClose { .. }
            | Request::RoomsWatch
            | Request::DmSend { .. }
            | Request::DmHistory { .. }
            | Request::DmEdit { .. }
            | Request::DmDelete { .. }
            | Request::DmRead { .. }
            | Request::DmTyping { .. }
            | Request::PresenceQuery { .. } => {}
        }
    }
    all
}

/// One value of every `ServerFrame` variant.
fn every_server_frame() -> Vec<ServerFrame> {
    use meshi_protocol::server::RoomsChanged;
    use meshi_protocol::{
        DmMessage, ErrorBody, ErrorCode, Notification, Presence, PresenceStatus, RoomMessage,
    };
    let s = String::new;
    let all = vec![
        ServerFrame::Ok {
            reference: Ref::from(1),
            data: Value::Object(Default::default()),
        },
        ServerFrame::Error {
            reference: None,
            error: ErrorBody {
                code: ErrorCode::Internal,
                message: s(),
                retry_after_ms: None,
            },
        },
        ServerFrame::RoomMessage(RoomMessage {
            room_id: s(),
            seq: 1,
            message_id: s(),
            from: user(),
            text: s(),
            sent_at: s(),
            client_msg_id: None,
            edited_at: None,
            deleted: false,
        }),
        ServerFrame::RoomMessageEdited {
            room_id: s(),
            message_id: s(),
            seq: 1,
            text: s(),
            edited_at: s(),
        },
        ServerFrame::RoomMessageDeleted {
            room_id: s(),
            message_id: s(),
            seq: 1,
            deleted_by: s(),
        },
        ServerFrame::RoomMemberJoined {
            room_id: s(),
            user: user(),
        },
        ServerFrame::RoomMemberLeft {
            room_id: s(),
            user_id: s(),
        },
        ServerFrame::RoomTyping {
            room_id: s(),
            user_id: s(),
        },
        ServerFrame::RoomClosed {
            room_id: s(),
            reason: RoomClosedReason::Empty,
        },
        ServerFrame::RoomRemoved {
            room_id: s(),
            reason: meshi_protocol::RoomRemovedReason::Access,
            until: None,
        },
        ServerFrame::RoomsChanged(RoomsChanged::open(room())),
        ServerFrame::DmMessage(DmMessage {
            conversation_id: s(),
            seq: 1,
            message_id: s(),
            from: user(),
            text: s(),
            sent_at: s(),
            client_msg_id: None,
            edited_at: None,
            deleted: false,
        }),
        ServerFrame::DmMessageEdited {
            conversation_id: s(),
            message_id: s(),
            seq: 1,
            text: s(),
            edited_at: s(),
        },
        ServerFrame::DmMessageDeleted {
            conversation_id: s(),
            message_id: s(),
            seq: 1,
        },
        ServerFrame::ConversationClosed {
            conversation_id: s(),
            reason: meshi_protocol::ConversationClosedReason::Unmatched,
        },
        ServerFrame::DmRead {
            conversation_id: s(),
            user_id: s(),
            seq: 1,
        },
        ServerFrame::DmTyping {
            conversation_id: s(),
            user_id: s(),
        },
        ServerFrame::Presence(Presence {
            user_id: s(),
            status: PresenceStatus::Online,
            last_seen_at: None,
        }),
        ServerFrame::Notification {
            notification: Notification {
                id: s(),
                kind: s(),
                data: Value::Null,
                created_at: s(),
            },
        },
        ServerFrame::Reconnect {
            reason: s(),
            retry_after_ms: 0,
        },
    ];
    // A variant added to `ServerFrame` breaks this match: list it above too.
    for frame in &all {
        match frame {
            ServerFrame::Ok { .. }
            | ServerFrame::Error { .. }
            | ServerFrame::RoomMessage(_)
            | ServerFrame::RoomMessageEdited { .. }
            | ServerFrame::RoomMessageDeleted { .. }
            | ServerFrame::RoomMemberJoined { .. }
            | ServerFrame::RoomMemberLeft { .. }
            | ServerFrame::RoomTyping { .. }
            | ServerFrame::RoomClosed { .. }
            | ServerFrame::RoomRemoved { .. }
            | ServerFrame::RoomsChanged(_)
            | ServerFrame::DmMessage(_)
            | ServerFrame::DmMessageEdited { .. }
            | ServerFrame::DmMessageDeleted { .. }
            | ServerFrame::ConversationClosed { .. }
            | ServerFrame::DmRead { .. }
            | ServerFrame::DmTyping { .. }
            | ServerFrame::Presence(_)
            | ServerFrame::Notification { .. }
            | ServerFrame::Reconnect { .. } => {}
        }
    }
    all
}

fn names<'a>(what: &str, list: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let list: Vec<&str> = list.into_iter().collect();
    let set: BTreeSet<&str> = list.iter().copied().collect();
    assert_eq!(set.len(), list.len(), "{what}: a name is used twice");
    set
}

fn expected_ops() -> BTreeSet<&'static str> {
    names(
        "Request::op",
        every_request().iter().map(Request::op).collect::<Vec<_>>(),
    )
}

fn expected_kinds() -> BTreeSet<&'static str> {
    names(
        "ServerFrame::kind",
        every_server_frame()
            .iter()
            .map(ServerFrame::kind)
            .collect::<Vec<_>>(),
    )
}

#[test]
fn client_fixtures_round_trip() {
    for fx in load("client") {
        let what = fx.label();
        let header: Header = serde_json::from_str(&fx.text)
            .unwrap_or_else(|e| panic!("{what}: header does not parse: {e}"));
        let request: Request = serde_json::from_str(&fx.text)
            .unwrap_or_else(|e| panic!("{what}: does not parse as Request: {e}"));
        assert_eq!(
            request.op(),
            fx.name,
            "{what}: file name and op differ (client fixtures are named <op>.json)"
        );

        let mut back = to_json(&what, &request);
        let fields = back
            .as_object_mut()
            .unwrap_or_else(|| panic!("{what}: a request serializes to an object"));
        assert!(
            !fields.contains_key("ref"),
            "{what}: Request must leave `ref` to Header"
        );
        if let Some(reference) = &header.reference {
            fields.insert("ref".into(), to_json(&what, reference));
        }
        assert_same_json(&what, "Request + Header", &fx.value, &back);
    }
}

#[test]
fn client_fixtures_show_both_kinds_of_ref_and_none() {
    let refs: Vec<Option<Ref>> = load("client")
        .iter()
        .map(|fx| {
            serde_json::from_str::<Header>(&fx.text)
                .unwrap_or_else(|e| panic!("{}: header does not parse: {e}", fx.label()))
                .reference
        })
        .collect();
    assert!(refs.iter().any(|r| matches!(r, Some(Ref::Number(_)))));
    assert!(refs.iter().any(|r| matches!(r, Some(Ref::Text(_)))));
    assert!(refs.iter().any(Option::is_none));
}

#[test]
fn server_fixtures_round_trip() {
    for fx in load("server") {
        let what = fx.label();
        let frame: ServerFrame = round_trip_text(&what, &fx.text, &fx.value);
        let kind = frame.kind();
        assert!(
            fx.name == kind || fx.name.starts_with(&format!("{kind}.")),
            "{what}: a `{kind}` frame belongs in {kind}.json or {kind}.<variant>.json"
        );
        match &frame {
            ServerFrame::Ok { data, .. } => {
                let op = fx
                    .name
                    .strip_prefix("ok.")
                    .unwrap_or_else(|| panic!("{what}: ok fixtures are named ok.<op>.json"));
                let check = reply_check(op)
                    .unwrap_or_else(|| panic!("{what}: `{op}` is not an op with a reply type"));
                check(&format!("{what} (data)"), data);
            }
            ServerFrame::Error { .. } => {}
            _ => assert!(
                fx.value.get("ref").is_none(),
                "{what}: pushes never carry `ref`"
            ),
        }
    }
}

#[test]
fn every_op_has_a_reply_type() {
    for op in expected_ops() {
        assert!(reply_check(op).is_some(), "`{op}` has no reply type");
    }
}

#[test]
fn fixtures_cover_every_op_and_frame_kind() {
    let ops = expected_ops();
    let kinds = expected_kinds();

    let client: BTreeSet<String> = load("client").into_iter().map(|fx| fx.name).collect();
    let client: BTreeSet<&str> = client.iter().map(String::as_str).collect();
    assert_eq!(
        client, ops,
        "client fixtures must be exactly one <op>.json per op"
    );

    let server = load("server");
    let mut seen_kinds = BTreeSet::new();
    let mut ok_ops = BTreeSet::new();
    for fx in &server {
        let frame: ServerFrame = serde_json::from_str(&fx.text)
            .unwrap_or_else(|e| panic!("{}: does not parse as ServerFrame: {e}", fx.label()));
        seen_kinds.insert(frame.kind());
        if let Some(op) = fx.name.strip_prefix("ok.") {
            ok_ops.insert(op);
        }
    }
    assert_eq!(
        seen_kinds, kinds,
        "server fixtures must cover every frame kind"
    );
    assert_eq!(ok_ops, ops, "every op needs exactly one ok.<op>.json");

    let names: BTreeSet<&str> = server.iter().map(|fx| fx.name.as_str()).collect();
    for required in [
        "error.rate_limited",
        "rooms.changed.closed",
        "presence.offline",
    ] {
        assert!(names.contains(required), "missing server/{required}.json");
    }
}

#[test]
fn error_fixtures_show_ref_and_retry_after() {
    let server = load("server");
    let errors: Vec<&Fixture> = server
        .iter()
        .filter(|fx| fx.value["type"] == "error")
        .collect();
    assert!(
        errors.iter().any(|fx| fx.value.get("ref").is_some()),
        "an error fixture must answer a request with `ref`"
    );
    let limited = errors
        .iter()
        .find(|fx| fx.name == "error.rate_limited")
        .expect("server/error.rate_limited.json");
    assert!(limited.value.get("ref").is_none());
    assert_eq!(limited.value["error"]["code"], "rate_limited");
    assert!(limited.value["error"]["retry_after_ms"].is_u64());
}

fn header(text: &str) -> Option<Ref> {
    serde_json::from_str::<Header>(text)
        .unwrap_or_else(|e| panic!("header of {text} does not parse: {e}"))
        .reference
}

fn assert_rejected(text: &str) {
    assert!(
        serde_json::from_str::<Request>(text).is_err(),
        "{text} must not parse as a Request"
    );
}

#[test]
fn unknown_type_is_rejected_but_ref_survives() {
    let text = r#"{"type": "room.explode", "ref": "x-1", "room_id": "r_2f7d9a"}"#;
    assert_rejected(text);
    assert_eq!(header(text), Some(Ref::from("x-1")));
}

#[test]
fn missing_type_is_rejected_but_ref_survives() {
    let text = r#"{"ref": 31, "room_id": "r_2f7d9a"}"#;
    assert_rejected(text);
    assert_eq!(header(text), Some(Ref::from(31)));
}

#[test]
fn missing_field_is_rejected_but_ref_survives() {
    let text = r#"{"type": "room.join", "ref": 7}"#;
    assert_rejected(text);
    assert_eq!(header(text), Some(Ref::from(7)));

    let text = r#"{"type": "dm.send", "ref": "dm-9", "conversation_id": "cv_4n8p2w"}"#;
    assert_rejected(text);
    assert_eq!(header(text), Some(Ref::from("dm-9")));
}

#[test]
fn wrong_field_type_is_rejected_but_ref_survives() {
    let text = r#"{"type": "room.join", "ref": 8, "room_id": 42}"#;
    assert_rejected(text);
    assert_eq!(header(text), Some(Ref::from(8)));

    let text =
        r#"{"type": "dm.read", "ref": "read-2", "conversation_id": "cv_4n8p2w", "seq": "12"}"#;
    assert_rejected(text);
    assert_eq!(header(text), Some(Ref::from("read-2")));

    let text = r#"{"type": "room.join", "ref": 10, "room_id": "r_2f7d9a", "since_seq": -1}"#;
    assert_rejected(text);
    assert_eq!(header(text), Some(Ref::from(10)));

    let text = r#"{"type": "presence.query", "ref": 11, "user_ids": "u_3q9x7c"}"#;
    assert_rejected(text);
    assert_eq!(header(text), Some(Ref::from(11)));
}

#[test]
fn header_without_ref_is_none() {
    assert_eq!(header(r#"{"type": "room.typing"}"#), None);
    assert_eq!(header(r#"{"type": "no.such.op", "ref": null}"#), None);
}

#[test]
fn ref_keeps_its_json_type() {
    assert_ne!(header(r#"{"ref": 1}"#), header(r#"{"ref": "1"}"#));
    let reference = header(r#"{"ref": 18446744073709551615}"#).expect("a ref");
    assert_eq!(
        serde_json::to_string(&reference).expect("serializes"),
        "18446744073709551615"
    );
}

#[test]
fn malformed_frames_are_rejected() {
    assert_rejected(r#""ping""#);
    assert_rejected("42");
    assert_rejected("{");
    assert_rejected(r#"{"type": "ping", "ref": 1"#);
    assert_rejected(r#"{"type": 7, "ref": 1}"#);
}
