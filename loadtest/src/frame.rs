//! Frames on the wire, from the tool's side.
//!
//! Requests are the protocol crate's own [`Request`] with a numeric `ref`
//! added. Incoming frames are read into [`Incoming`], which borrows from
//! the frame text and keeps only what the checks need; the bulky parts of
//! replies stay raw until a caller asks for them.
//!
//! Every message the tool sends carries a [`Stamp`] in its text: when it
//! was sent (microseconds since the run's epoch), which socket sent it and
//! its number, so a receiver can measure latency without a side channel.

use std::borrow::Cow;

use meshi_protocol::Request;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A request as sent: the op's fields plus the `ref` to match its reply.
pub fn encode(reference: Option<u64>, request: &Request) -> String {
    #[derive(Serialize)]
    struct WithRef<'a> {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        #[serde(flatten)]
        request: &'a Request,
    }
    serde_json::to_string(&WithRef { reference, request }).expect("requests always serialize")
}

/// The parts of a server frame the tool looks at.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The tool only sends numeric refs.
    #[serde(rename = "ref", default)]
    pub reference: Option<u64>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default, borrow)]
    pub message_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub room_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub conversation_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub error: Option<ErrorPart<'a>>,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

/// The `error` object of an error frame; the code stays a string so codes
/// this build does not know are still counted.
#[derive(Debug, Deserialize)]
pub struct ErrorPart<'a> {
    #[serde(borrow)]
    pub code: Cow<'a, str>,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

impl<'a> Incoming<'a> {
    pub fn parse(text: &'a str) -> Option<Incoming<'a>> {
        serde_json::from_str(text).ok()
    }

    /// The `data` of an `ok` reply, read as `T`.
    pub fn data_as<T: Deserialize<'a>>(&self) -> Option<T> {
        self.data
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }
}

/// The part of `room.send`, `dm.send` and `room.join` replies the tool uses.
#[derive(Debug, Deserialize)]
pub struct SeqData {
    #[serde(alias = "last_seq")]
    pub seq: u64,
}

/// What a message text carries so receivers can time and attribute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// When this message was sent, in µs since the run's epoch.
    pub sent_us: u64,
    /// When the exchange it belongs to began: for a reply, the sent time
    /// of the message it answers; otherwise `sent_us`.
    pub origin_us: u64,
    /// Index of the sending socket within its scenario.
    pub sender: u64,
    /// The sender's message counter.
    pub n: u64,
}

impl Stamp {
    /// The message text: the stamp, padded with `x` to `len` bytes.
    pub fn text(&self, len: usize) -> String {
        let mut text = format!(
            "{} {} {} {}",
            self.sent_us, self.origin_us, self.sender, self.n
        );
        if text.len() < len {
            text.push(' ');
            let pad = len.saturating_sub(text.len());
            text.extend(std::iter::repeat_n('x', pad));
        }
        text
    }

    pub fn parse(text: &str) -> Option<Stamp> {
        let mut parts = text.split(' ');
        let mut next = || parts.next()?.parse::<u64>().ok();
        Some(Stamp {
            sent_us: next()?,
            origin_us: next()?,
            sender: next()?,
            n: next()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_their_ref_beside_the_op() {
        let text = encode(
            Some(7),
            &Request::RoomSend {
                room_id: "r1".into(),
                text: "hi".into(),
                client_msg_id: None,
            },
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"ref": 7, "type": "room.send", "room_id": "r1", "text": "hi"})
        );
        assert_eq!(encode(None, &Request::Ping), r#"{"type":"ping"}"#);
    }

    #[test]
    fn incoming_frames_are_read_in_part() {
        let text = r#"{"type":"room.message","room_id":"r\"1","seq":3,"message_id":"m9",
            "from":{"id":"1","handle":"a","display_name":"A"},"text":"5 5 2 1","sent_at":"x"}"#;
        let frame = Incoming::parse(text).unwrap();
        assert_eq!(frame.kind, "room.message");
        assert_eq!(frame.room_id.as_deref(), Some("r\"1"));
        assert_eq!(frame.seq, Some(3));
        let ok =
            Incoming::parse(r#"{"type":"ok","ref":4,"data":{"message_id":"m","seq":12}}"#).unwrap();
        assert_eq!(ok.data_as::<SeqData>().unwrap().seq, 12);
        let joined =
            Incoming::parse(r#"{"type":"ok","ref":5,"data":{"last_seq":8,"room":{}}}"#).unwrap();
        assert_eq!(joined.data_as::<SeqData>().unwrap().seq, 8);
        let err = Incoming::parse(
            r#"{"type":"error","ref":2,"error":{"code":"rate_limited","message":"m","retry_after_ms":50}}"#,
        )
        .unwrap();
        let error = err.error.unwrap();
        assert_eq!(error.code, "rate_limited");
        assert_eq!(error.retry_after_ms, Some(50));
    }

    #[test]
    fn stamps_round_trip_through_padded_text() {
        let stamp = Stamp {
            sent_us: 123_456,
            origin_us: 100,
            sender: 42,
            n: 7,
        };
        let text = stamp.text(64);
        assert_eq!(text.len(), 64);
        assert_eq!(Stamp::parse(&text), Some(stamp));
        assert_eq!(Stamp::parse(&stamp.text(0)), Some(stamp));
        assert_eq!(Stamp::parse("hello there"), None);
    }
}
