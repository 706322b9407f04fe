//! What travels on the bus's channels, version 1, and how a node reads it.
//! It knows bytes, not Redis: nothing here sends or receives.
//!
//! # Payload
//! ```text
//! byte 0        version, 1
//! byte 1        'F' frame or 'C' close
//! byte 2        n, the origin node id's length (1..=255)
//! 3 .. 3+n      origin node id, UTF-8
//! frame:  1 byte 0 or 1 (is there a skip_user), then 8 bytes of it
//!         (i64, big-endian) if 1, then the serialized frame to the end
//! close:  2 bytes close code (big-endian), then the reason, UTF-8, to the end
//! ```
//! Room events that Redis itself sequences (see `cluster::rooms`) are
//! published by a script, not by a node: kind 'P', an empty origin, so
//! every node delivers them, then `<position>:<seq> ` in ASCII decimal
//! (`seq` is 0 for events that are not messages), then the frame. A room's
//! closing event has kind 'X' instead, so nodes forget the room after it.
//! A member taken out of a room (their access ended) is kind 'R', with
//! `<position>:<user id> ` before the frame they alone receive: every node
//! takes that user's sockets off the room at that point of its order.
//! Nodes publish an eviction of their own as kind 'E': 8 bytes of the user
//! id (i64, big-endian), then the frame.
//! The frame's bytes travel as they were serialized, so no node parses or
//! re-serializes a frame it forwards.
//!
//! On a channel of its own, each node publishes a probe every second: kind
//! 'T', then the time it was sent (ms since the epoch, i64, big-endian).
//! The others measure the bus's lag from it, publish to receive.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

use crate::hub::subscribers::{Delivery, Topic};
use crate::hub::Frame;

const VERSION: u8 = 1;
const KIND_FRAME: u8 = b'F';
const KIND_CLOSE: u8 = b'C';
const KIND_SEQUENCED: u8 = b'P';
/// Sequenced, and the room is closed after it.
const KIND_CLOSING: u8 = b'X';
/// Sequenced: a member taken out of the room.
const KIND_REMOVED: u8 = b'R';
const KIND_EVICT: u8 = b'E';
const KIND_PROBE: u8 = b'T';

/// Encodes a delivery as published; the format is in the module docs.
pub(super) fn encode(node_id: &str, delivery: &Delivery) -> Vec<u8> {
    let node = node_id.as_bytes();
    debug_assert!(!node.is_empty() && node.len() <= 255);
    let body = match delivery {
        Delivery::Frame { frame, .. } => 9 + frame.len(),
        Delivery::Close { reason, .. } => 2 + reason.len(),
        Delivery::Evict { frame, .. } => 8 + frame.len(),
    };
    let mut out = Vec::with_capacity(3 + node.len() + body);
    out.push(VERSION);
    out.push(match delivery {
        Delivery::Frame { .. } => KIND_FRAME,
        Delivery::Close { .. } => KIND_CLOSE,
        Delivery::Evict { .. } => KIND_EVICT,
    });
    out.push(node.len() as u8);
    out.extend_from_slice(node);
    match delivery {
        Delivery::Frame {
            frame, skip_user, ..
        } => {
            match skip_user {
                Some(user) => {
                    out.push(1);
                    out.extend_from_slice(&user.to_be_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(frame.as_bytes());
        }
        Delivery::Close { code, reason, .. } => {
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(reason.as_bytes());
        }
        Delivery::Evict { user, frame, .. } => {
            out.extend_from_slice(&user.to_be_bytes());
            out.extend_from_slice(frame.as_bytes());
        }
    }
    out
}

/// A lag probe sent at `sent_at_ms`; the format is in the module docs.
pub(super) fn encode_probe(node_id: &str, sent_at_ms: i64) -> Vec<u8> {
    let node = node_id.as_bytes();
    let mut out = Vec::with_capacity(3 + node.len() + 8);
    out.extend_from_slice(&[VERSION, KIND_PROBE, node.len() as u8]);
    out.extend_from_slice(node);
    out.extend_from_slice(&sent_at_ms.to_be_bytes());
    out
}

/// When another node sent this probe; `None` for this node's own.
pub(super) fn decode_probe(own: &str, payload: &[u8]) -> Result<Option<i64>, DecodeError> {
    let Some((kind, body)) = open_envelope(own, payload)? else {
        return Ok(None);
    };
    if kind != KIND_PROBE {
        return Err(DecodeError::Kind(kind));
    }
    let sent_at = body.first_chunk::<8>().ok_or(DecodeError::Short)?;
    Ok(Some(i64::from_be_bytes(*sent_at)))
}

/// The kind and body of a payload another node (or Redis) sent; `None`
/// for this node's own.
fn open_envelope<'a>(own: &str, payload: &'a [u8]) -> Result<Option<(u8, &'a [u8])>, DecodeError> {
    let [version, kind, n, rest @ ..] = payload else {
        return Err(DecodeError::Short);
    };
    if *version != VERSION {
        return Err(DecodeError::Version(*version));
    }
    let (origin, body) = rest
        .split_at_checked(usize::from(*n))
        .ok_or(DecodeError::Short)?;
    Ok((origin != own.as_bytes()).then_some((*kind, body)))
}

#[derive(Debug)]
pub(super) enum Decoded {
    /// Published by this node, which delivered it already.
    Own,
    Remote(Delivery),
    /// A room event Redis sequenced, for every node; `closes` when the
    /// room is gone after it.
    Sequenced {
        delivery: Delivery,
        seq: u64,
        closes: bool,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub(super) enum DecodeError {
    #[error("payload version {0} is unknown")]
    Version(u8),
    #[error("payload kind {0:#04x} is unknown")]
    Kind(u8),
    #[error("skip_user flag {0} is neither 0 nor 1")]
    Flag(u8),
    #[error("payload is cut short")]
    Short,
    #[error("payload text is not UTF-8")]
    Utf8,
    #[error("a sequenced payload's position is malformed")]
    Position,
}

/// Decodes a payload heard on `topic`'s channel by the node `own`.
pub(super) fn decode(own: &str, payload: &[u8], topic: &Topic) -> Result<Decoded, DecodeError> {
    let Some((kind, body)) = open_envelope(own, payload)? else {
        return Ok(Decoded::Own);
    };
    let topic = topic.clone();
    if kind == KIND_SEQUENCED || kind == KIND_CLOSING {
        return decode_sequenced(topic, body, kind == KIND_CLOSING);
    }
    if kind == KIND_REMOVED {
        return decode_removed(topic, body);
    }
    let delivery = match kind {
        KIND_FRAME => {
            let (skip_user, frame) = match body {
                [0, frame @ ..] => (None, frame),
                [1, rest @ ..] => {
                    let (user, frame) = rest.split_first_chunk::<8>().ok_or(DecodeError::Short)?;
                    (Some(i64::from_be_bytes(*user)), frame)
                }
                [] => return Err(DecodeError::Short),
                [other, ..] => return Err(DecodeError::Flag(*other)),
            };
            let frame =
                Frame::try_from(Bytes::copy_from_slice(frame)).map_err(|_| DecodeError::Utf8)?;
            Delivery::Frame {
                topic,
                frame,
                skip_user,
                position: None,
            }
        }
        KIND_CLOSE => {
            let (code, reason) = body.split_first_chunk::<2>().ok_or(DecodeError::Short)?;
            let reason = std::str::from_utf8(reason).map_err(|_| DecodeError::Utf8)?;
            Delivery::Close {
                topic,
                code: u16::from_be_bytes(*code),
                reason: intern_reason(reason),
            }
        }
        KIND_EVICT => {
            let (user, frame) = body.split_first_chunk::<8>().ok_or(DecodeError::Short)?;
            Delivery::Evict {
                topic,
                user: i64::from_be_bytes(*user),
                frame: Frame::try_from(Bytes::copy_from_slice(frame))
                    .map_err(|_| DecodeError::Utf8)?,
            }
        }
        other => return Err(DecodeError::Kind(other)),
    };
    Ok(Decoded::Remote(delivery))
}

/// `<position>:<seq> <frame>`, as a room script publishes it.
fn decode_sequenced(topic: Topic, body: &[u8], closes: bool) -> Result<Decoded, DecodeError> {
    let space = body
        .iter()
        .position(|b| *b == b' ')
        .ok_or(DecodeError::Position)?;
    let (header, frame) = (&body[..space], &body[space + 1..]);
    let header = std::str::from_utf8(header).map_err(|_| DecodeError::Position)?;
    let (position, seq) = header.split_once(':').ok_or(DecodeError::Position)?;
    let position = position.parse().map_err(|_| DecodeError::Position)?;
    let seq = seq.parse().map_err(|_| DecodeError::Position)?;
    let frame = Frame::try_from(Bytes::copy_from_slice(frame)).map_err(|_| DecodeError::Utf8)?;
    Ok(Decoded::Sequenced {
        delivery: Delivery::Frame {
            topic,
            frame,
            skip_user: None,
            position: Some(position),
        },
        seq,
        closes,
    })
}

/// `<position>:<user id> <frame>`, as the room script that takes a member
/// out publishes it.
fn decode_removed(topic: Topic, body: &[u8]) -> Result<Decoded, DecodeError> {
    let space = body
        .iter()
        .position(|b| *b == b' ')
        .ok_or(DecodeError::Position)?;
    let (header, frame) = (&body[..space], &body[space + 1..]);
    let header = std::str::from_utf8(header).map_err(|_| DecodeError::Position)?;
    let (position, user) = header.split_once(':').ok_or(DecodeError::Position)?;
    position.parse::<u64>().map_err(|_| DecodeError::Position)?;
    let user = user.parse().map_err(|_| DecodeError::Position)?;
    let frame = Frame::try_from(Bytes::copy_from_slice(frame)).map_err(|_| DecodeError::Utf8)?;
    Ok(Decoded::Sequenced {
        delivery: Delivery::Evict { topic, user, frame },
        seq: 0,
        closes: false,
    })
}

/// Close reasons are `&'static str` all the way to the socket writer, and
/// the ones sent are string constants in this codebase, so a handful of
/// distinct texts is expected. Each is kept once; past a bound, a
/// misbehaving publisher gets a generic reason instead of growing memory.
fn intern_reason(reason: &str) -> &'static str {
    const MAX_REASONS: usize = 128;
    static REASONS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut reasons = REASONS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = reasons.get(reason) {
        return known;
    }
    if reasons.len() >= MAX_REASONS {
        return "closed";
    }
    let leaked: &'static str = Box::leak(reason.to_owned().into_boxed_str());
    reasons.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Topic {
        Topic::Room("lobby".into())
    }

    fn remote(payload: &[u8]) -> Delivery {
        match decode("node-b", payload, &room()) {
            Ok(Decoded::Remote(delivery)) => delivery,
            other => panic!("expected a remote delivery, got {other:?}"),
        }
    }

    #[test]
    fn frames_round_trip_with_and_without_skip_user() {
        for skip_user in [None, Some(42), Some(-1), Some(i64::MAX)] {
            let frame = Frame::from(r#"{"t":"room.message","text":"héllo"}"#);
            let sent = Delivery::Frame {
                topic: room(),
                frame: frame.clone(),
                skip_user,
                position: None,
            };
            let Delivery::Frame {
                topic,
                frame: got,
                skip_user: got_skip,
                ..
            } = remote(&encode("node-a", &sent))
            else {
                panic!("not a frame");
            };
            assert_eq!(topic, room());
            assert_eq!(got.as_str(), frame.as_str());
            assert_eq!(got_skip, skip_user);
        }
    }

    #[test]
    fn closes_round_trip() {
        let sent = Delivery::Close {
            topic: room(),
            code: 4010,
            reason: "token revoked",
        };
        let Delivery::Close { code, reason, .. } = remote(&encode("node-a", &sent)) else {
            panic!("not a close");
        };
        assert_eq!((code, reason), (4010, "token revoked"));
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let sent = Delivery::Frame {
            topic: room(),
            frame: Frame::from("{}"),
            skip_user: Some(7),
            position: None,
        };
        let mut expected = vec![1, b'F', 2, b'n', b'a', 1];
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(b"{}");
        assert_eq!(encode("na", &sent), expected);

        let close = Delivery::Close {
            topic: room(),
            code: 4010,
            reason: "x",
        };
        assert_eq!(
            encode("na", &close),
            [1, b'C', 2, b'n', b'a', 0x0f, 0xaa, b'x']
        );
    }

    #[test]
    fn a_node_recognizes_its_own_payloads() {
        let sent = Delivery::Frame {
            topic: room(),
            frame: Frame::from("{}"),
            skip_user: None,
            position: None,
        };
        assert!(matches!(
            decode("node-a", &encode("node-a", &sent), &room()),
            Ok(Decoded::Own)
        ));
        // A prefix of another node's id is not the same node.
        assert!(matches!(
            decode("node", &encode("node-a", &sent), &room()),
            Ok(Decoded::Remote(_))
        ));
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let own = "me";
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", DecodeError::Short),
            (&[1, b'F'], DecodeError::Short),
            (&[2, b'F', 1, b'x', 0], DecodeError::Version(2)),
            (&[1, b'F', 9, b'x'], DecodeError::Short),
            (&[1, b'Z', 1, b'x', 0], DecodeError::Kind(b'Z')),
            (&[1, b'F', 1, b'x'], DecodeError::Short),
            (&[1, b'F', 1, b'x', 1, 0, 0], DecodeError::Short),
            (&[1, b'F', 1, b'x', 2], DecodeError::Flag(2)),
            (&[1, b'F', 1, b'x', 0, 0xff], DecodeError::Utf8),
            (&[1, b'C', 1, b'x', 0x0f], DecodeError::Short),
            (&[1, b'C', 1, b'x', 0x0f, 0xaa, 0xff], DecodeError::Utf8),
        ];
        for (payload, expected) in cases {
            let got = decode(own, payload, &room()).map(|_| ()).unwrap_err();
            assert_eq!(&got, expected, "payload {payload:?}");
        }
    }

    #[test]
    fn sequenced_payloads_reach_every_node_with_their_position() {
        let payload = b"\x01P\x0042:7 {\"type\":\"room.message\"}";
        for own in ["node-a", "node-b"] {
            let Ok(Decoded::Sequenced { delivery, seq, .. }) = decode(own, payload, &room()) else {
                panic!("not sequenced");
            };
            let Delivery::Frame {
                frame, position, ..
            } = delivery
            else {
                panic!("not a frame");
            };
            assert_eq!((position, seq), (Some(42), 7));
            assert_eq!(frame.as_str(), r#"{"type":"room.message"}"#);
        }
        assert_eq!(
            decode("me", b"\x01P\x00x:1 {}", &room()).map(|_| ()),
            Err(DecodeError::Position)
        );
    }

    #[test]
    fn removals_reach_every_node_naming_the_user() {
        let payload = b"\x01R\x0043:7 {\"type\":\"room.removed\"}";
        for own in ["node-a", "node-b"] {
            let Ok(Decoded::Sequenced { delivery, .. }) = decode(own, payload, &room()) else {
                panic!("not sequenced");
            };
            let Delivery::Evict { user, frame, .. } = delivery else {
                panic!("not an eviction");
            };
            assert_eq!(user, 7);
            assert_eq!(frame.as_str(), r#"{"type":"room.removed"}"#);
        }
        let sent = Delivery::Evict {
            topic: room(),
            user: 9,
            frame: Frame::from("{}"),
        };
        let Delivery::Evict { user, frame, .. } = remote(&encode("node-a", &sent)) else {
            panic!("not an eviction");
        };
        assert_eq!((user, frame.as_str()), (9, "{}"));
    }

    #[test]
    fn reasons_are_interned_once() {
        let a = intern_reason("interned once");
        let b = intern_reason(&String::from("interned once"));
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn a_probe_tells_another_node_when_it_was_sent() {
        let probe = encode_probe("node-a", 1_700_000_000_123);
        assert_eq!(decode_probe("node-b", &probe), Ok(Some(1_700_000_000_123)));
        assert_eq!(decode_probe("node-a", &probe), Ok(None));
        assert_eq!(
            decode_probe("node-b", &probe[..probe.len() - 1]),
            Err(DecodeError::Short)
        );
    }
}
