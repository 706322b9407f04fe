//! The parts of the envelope every frame shares.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A client's correlation id, echoed unchanged in the single reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ref {
    Number(serde_json::Number),
    Text(String),
}

impl From<u64> for Ref {
    fn from(n: u64) -> Self {
        Ref::Number(n.into())
    }
}

impl From<&str> for Ref {
    fn from(s: &str) -> Self {
        Ref::Text(s.to_owned())
    }
}

/// Machine-readable reason of an `error` frame or an error response body.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    RoomFull,
    RateLimited,
    TooLarge,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of an error frame (and of REST error bodies).
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Only with `rate_limited`: how long to wait before the next frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// WebSocket close codes the server uses.
///
/// Reconnect-worthy: [`close::SERVER_RESTART`], [`close::IDLE`] and [`close::SLOW_CONSUMER`]
/// (after catching up). Terminal until the client changes something:
/// the others.
pub mod close {
    /// An inbound frame exceeded the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The node is draining; reconnect, possibly elsewhere.
    pub const SERVER_RESTART: u16 = 1012;
    /// The browser's origin is not allowed.
    pub const ORIGIN_NOT_ALLOWED: u16 = 1008;
    /// The socket stayed silent past two heartbeat intervals.
    pub const IDLE: u16 = 1001;
    /// `hello` failed or did not come in time.
    pub const AUTH_FAILED: u16 = 4001;
    /// The client kept sending past its rate limit.
    pub const RATE_LIMIT_ABUSE: u16 = 4008;
    /// The client did not read fast enough and its queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4009;
    /// The session token expired or was revoked.
    pub const TOKEN_ENDED: u16 = 4010;
}
