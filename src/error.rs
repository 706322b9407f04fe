//! The one error type handlers and socket ops return, and how it shows on
//! the wire: a contract code, an HTTP status and a message safe for users.
//! Internal causes are logged once here and never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meshi_protocol::{ErrorBody, ErrorCode};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// The account is suspended until then (unix ms); shown as
    /// `forbidden`, with the end when there is one.
    #[error("{}", suspended_text(*.until))]
    Suspended { until: i64 },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The route exists but not with this method; shown as `bad_request`
    /// with status 405.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("room is full")]
    RoomFull,
    /// Refused for now; `limit` says which limit, for the message.
    #[error("{limit}")]
    RateLimited {
        limit: std::borrow::Cow<'static, str>,
        retry_after_ms: u64,
    },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal(#[source] Cause),
}

fn suspended_text(until: i64) -> String {
    if until >= crate::store::SUSPENDED_INDEFINITELY {
        "suspended".to_owned()
    } else {
        format!("suspended until {}", crate::clock::rfc3339(until))
    }
}

/// The hidden cause of an internal error, kept for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad(field: &str, why: &str) -> Self {
        Error::BadRequest(format!("{field}: {why}"))
    }

    /// A refusal of the common kind: too many requests of one sort.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Error::RateLimited {
            limit: "rate limit exceeded".into(),
            retry_after_ms,
        }
    }

    pub fn internal(cause: impl Into<Cause>) -> Self {
        Error::Internal(cause.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_) | Error::MethodNotAllowed => ErrorCode::BadRequest,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::Forbidden(_) | Error::Suspended { .. } => ErrorCode::Forbidden,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::RoomFull => ErrorCode::RoomFull,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::TooLarge(_) => ErrorCode::TooLarge,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        if let Error::MethodNotAllowed = self {
            return StatusCode::METHOD_NOT_ALLOWED;
        }
        match self.code() {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict | ErrorCode::RoomFull => StatusCode::CONFLICT,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body users see. Logs the hidden cause of internal errors, once.
    pub fn body(&self) -> ErrorBody {
        if let Error::Internal(cause) = self {
            tracing::error!(error = %cause, "internal error");
        }
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            retry_after_ms: match self {
                Error::RateLimited { retry_after_ms, .. } => Some(*retry_after_ms),
                _ => None,
            },
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => Error::Conflict(what.to_owned()),
            StoreError::Unavailable(_) => Error::Unavailable("database"),
            other => Error::internal(other),
        }
    }
}

/// Every error answer of the REST API.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    error: ErrorBody,
}

impl Error {
    /// The REST error body as bytes, for answers written below axum.
    pub fn response_json(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorResponse { error: self.body() }).unwrap_or_default()
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(ErrorResponse { error: self.body() })).into_response();
        if let Error::RateLimited { retry_after_ms, .. } = self {
            // Whole seconds, rounded up: waiting as told must be enough.
            let seconds = retry_after_ms.div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
