//! A frame as the server sends it: serialized once from the protocol's
//! types, then shared by every recipient's outbox. The only two ways this
//! node makes one are here; nothing writes frame JSON by hand.

use meshi_protocol::server::OkReply;
use meshi_protocol::Ref;

/// Cheap to clone: every recipient shares the same bytes.
pub type Frame = axum::extract::ws::Utf8Bytes;

/// Serializes a frame once; the result is shared by every recipient.
pub fn encode<T: serde::Serialize>(frame: &T) -> Frame {
    // Our frame types have only string keys and no fallible serializers.
    Frame::from(serde_json::to_string(frame).expect("frames always serialize"))
}

/// An `ok` reply around `data`, serialized with it in one pass.
pub fn ok_reply<D: serde::Serialize + ?Sized>(reference: &Ref, data: &D) -> Frame {
    encode(&OkReply::new(reference, data))
}
