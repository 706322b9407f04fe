//! Wire types of the meshi socket protocol, version 1.
//!
//! This crate owns every frame that crosses `/ws`: what clients send
//! ([`Request`]), what the server answers and pushes ([`ServerFrame`]), the
//! error codes and the close codes. It knows nothing of sockets, tasks or
//! storage, so the server, the tests and the load tool share it freely.
//!
//! # Layout
//! - [`envelope`]: `ref`, error codes, error bodies, close codes.
//! - [`model`]: the objects frames carry (users, rooms, messages, presence).
//! - [`request`]: client requests, one variant per op.
//! - [`reply`]: the `data` of each op's `ok` reply.
//! - [`server`]: every frame the server sends, replies and pushes alike.

pub mod envelope;
pub mod model;
pub mod reply;
pub mod request;
pub mod server;

pub use envelope::{close, ErrorBody, ErrorCode, Ref};
pub use model::*;
pub use reply::*;
pub use request::{Header, Request};
pub use server::ServerFrame;

/// The WebSocket subprotocol a client may offer; the server then selects it.
pub const SUBPROTOCOL: &str = "meshi.v1";
