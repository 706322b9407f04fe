//! The frames Redis scripts publish, serialized here from the protocol's
//! types. A script never writes JSON: it picks a whole frame a room keeps
//! in its hash, or fills the one hole a template leaves (a member count, a
//! user id, a seq). Templates are made when a room opens, since they
//! depend only on the room; every node's scripts then read them.

use meshi_protocol::server::RoomsChanged;
use meshi_protocol::{Room as RoomView, RoomClosedReason, ServerFrame};

use crate::hub::encode;

/// A field whose value a script writes in, serialized first with a stand-in
/// value. A JSON string cannot hold an unescaped `"`, so the marked field
/// occurs once, as the field itself, never as text inside a value; room
/// ids never hold `|`.
pub struct Hole {
    marked: &'static str,
    stand_in: &'static str,
}

/// The member count of a room's view.
const COUNT: Hole = Hole {
    marked: "\"member_count\":4294967295",
    stand_in: "4294967295",
};
/// The seq of a room message.
pub const SEQ: Hole = Hole {
    marked: "\"seq\":18446744073709551615",
    stand_in: "18446744073709551615",
};
/// The user id of `room.member_left`, inside its quotes.
const USER: Hole = Hole {
    marked: "\"user_id\":\"|\"",
    stand_in: "|",
};

impl Hole {
    /// The serialized frame before and after the stand-in value.
    pub fn split(&self, json: &str) -> (String, String) {
        let at = json
            .find(self.marked)
            .expect("the marked field is serialized")
            + self
                .marked
                .find(self.stand_in)
                .expect("the stand-in is in the mark");
        (
            json[..at].to_owned(),
            json[at + self.stand_in.len()..].to_owned(),
        )
    }
}

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
    let (vh, vt) = COUNT.split(&encode(&marked));
    let (dh, dt) = COUNT.split(&encode(&ServerFrame::RoomsChanged(RoomsChanged::open(
        marked,
    ))));
    let (lh, lt) = USER.split(&encode(&ServerFrame::RoomMemberLeft {
        room_id: view.id.clone(),
        user_id: USER.stand_in.into(),
    }));
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
