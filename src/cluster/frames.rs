//! The frames Redis scripts publish, serialized here from the protocol's
//! types. A script never writes JSON: it picks a whole frame a room keeps
//! in its hash, or fills the one hole a template leaves (a member count, a
//! user id, a seq). Templates are made when a room opens, since they
//! depend only on the room; every node's scripts then read them.

use meshi_protocol::server::RoomsChanged;
use meshi_protocol::{Room as RoomView, RoomClosedReason, ServerFrame};

use crate::hub::encode;

/// The member count of a view and the seq of a message are written in by
/// Redis; these stand in for them until then.
const COUNT_MARK: &str = "\"member_count\":4294967295";
pub const SEQ_MARK: &str = "\"seq\":18446744073709551615";
/// Stands in for the user id of `room.member_left`. Room ids never hold
/// `|`, and a JSON string cannot hold an unescaped `"`, so this occurs
/// once, as the field itself.
const USER_MARK: &str = "\"user_id\":\"|\"";

/// Every reason a room closes for, each with the name scripts use.
const CLOSE_REASONS: [RoomClosedReason; 3] = [
    RoomClosedReason::Empty,
    RoomClosedReason::Host,
    RoomClosedReason::Moderator,
];

pub fn reason_name(reason: RoomClosedReason) -> &'static str {
    match reason {
        RoomClosedReason::Empty => "empty",
        RoomClosedReason::Host => "host",
        RoomClosedReason::Moderator => "moderator",
    }
}

/// The room's hash fields that hold its frames, as one JSON object for a
/// script to store (see the room prelude in `scripts`): `vh`/`vt` the view
/// around its member count, `dh`/`dt` the directory's `rooms.changed`
/// around the same, `lh`/`lt` `room.member_left` around the user id,
/// `c:<reason>` each `room.closed`, and `dc` the directory's closing
/// `rooms.changed`.
pub fn room_fields(view: &RoomView) -> String {
    let marked = RoomView {
        member_count: u32::MAX,
        ..view.clone()
    };
    let (vh, vt) = split_at_mark(&encode(&marked), COUNT_MARK);
    let (dh, dt) = split_at_mark(
        &encode(&ServerFrame::RoomsChanged(RoomsChanged::open(marked))),
        COUNT_MARK,
    );
    let (lh, lt) = split_at_mark(
        &encode(&ServerFrame::RoomMemberLeft {
            room_id: view.id.clone(),
            user_id: "|".into(),
        }),
        USER_MARK,
    );
    let mut fields = serde_json::Map::new();
    for (name, value) in [
        ("vh", vh),
        ("vt", vt),
        ("dh", dh),
        ("dt", dt),
        ("lh", lh),
        ("lt", lt),
        (
            "dc",
            encode(&ServerFrame::RoomsChanged(RoomsChanged::closed(
                view.id.clone(),
            )))
            .as_str()
            .to_owned(),
        ),
    ] {
        fields.insert(name.to_owned(), value.into());
    }
    for reason in CLOSE_REASONS {
        let closed = encode(&ServerFrame::RoomClosed {
            room_id: view.id.clone(),
            reason,
        });
        fields.insert(
            format!("c:{}", reason_name(reason)),
            closed.as_str().to_owned().into(),
        );
    }
    serde_json::Value::Object(fields).to_string()
}

/// Splits serialized JSON around the value in `mark` (`"field":<value>`),
/// keeping the field's name in the head. A JSON string cannot hold an
/// unescaped `"`, so the first match is the field itself, never text
/// inside a value.
pub fn split_at_mark(json: &str, mark: &str) -> (String, String) {
    let at = json.find(mark).expect("the marked field is serialized");
    let name_len = mark.find(':').expect("marks are `\"field\":value`") + 1;
    let value_len = mark.len() - name_len;
    let (head, tail) = (&json[..at + name_len], &json[at + name_len + value_len..]);
    // A string hole keeps its quotes outside the hole.
    if mark.ends_with('"') {
        return (format!("{head}\""), format!("\"{tail}"));
    }
    (head.to_owned(), tail.to_owned())
}

#[cfg(test)]
mod tests {
    use meshi_protocol::RoomKind;

    use super::*;

    fn view(name: &str) -> RoomView {
        RoomView {
            id: "r_1".into(),
            kind: RoomKind::DropIn,
            name: name.into(),
            topic: None,
            capacity: 5,
            member_count: 3,
            host_id: Some("1".into()),
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn fields(view: &RoomView) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(&room_fields(view)).unwrap() {
            serde_json::Value::Object(fields) => fields,
            other => panic!("{other}"),
        }
    }

    fn field<'a>(fields: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> &'a str {
        fields[name].as_str().unwrap()
    }

    #[test]
    fn filled_templates_are_the_protocol_frames_whatever_the_name() {
        let view = view(r#""member_count":4294967295 "user_id":"|""#);
        let fields = fields(&view);
        let filled = format!("{}3{}", field(&fields, "vh"), field(&fields, "vt"));
        assert_eq!(serde_json::from_str::<RoomView>(&filled).unwrap(), view);
        let changed = format!("{}3{}", field(&fields, "dh"), field(&fields, "dt"));
        assert_eq!(
            serde_json::from_str::<ServerFrame>(&changed).unwrap(),
            ServerFrame::RoomsChanged(RoomsChanged::open(view))
        );
        let left = format!("{}42{}", field(&fields, "lh"), field(&fields, "lt"));
        assert_eq!(
            serde_json::from_str::<ServerFrame>(&left).unwrap(),
            ServerFrame::RoomMemberLeft {
                room_id: "r_1".into(),
                user_id: "42".into()
            }
        );
    }

    #[test]
    fn every_close_reason_has_its_frame_under_the_name_scripts_use() {
        let fields = fields(&view("lobby"));
        for reason in CLOSE_REASONS {
            let frame = field(&fields, &format!("c:{}", reason_name(reason)));
            assert_eq!(
                serde_json::from_str::<ServerFrame>(frame).unwrap(),
                ServerFrame::RoomClosed {
                    room_id: "r_1".into(),
                    reason
                }
            );
            // The name is the protocol's own.
            assert!(frame.contains(&format!("\"reason\":\"{}\"", reason_name(reason))));
        }
        assert_eq!(
            serde_json::from_str::<ServerFrame>(field(&fields, "dc")).unwrap(),
            ServerFrame::RoomsChanged(RoomsChanged::closed("r_1".into()))
        );
    }
}
