//! Request extractors that fail with the contract's error body.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use crate::auth::Identity;
use crate::error::Error;
use crate::state::AppState;

/// A JSON body; malformed or oversized bodies answer `bad_request` or
/// `too_large` in the usual error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct Body<T>(pub T);

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Error::TooLarge("request body is too large".into());
        }
        if matches!(rejection, JsonRejection::MissingJsonContentType(_)) {
            return Error::BadRequest("Content-Type must be application/json".into());
        }
        let text = rejection.body_text();
        // Axum prefixes serde's text, which starts with the field's path.
        let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
        let detail = detail.split(" at line ").next().unwrap_or(detail);
        Error::BadRequest(format!("invalid body: {detail}"))
    }
}

/// The caller behind `Authorization: Bearer <token>`.
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Error::Unauthenticated("missing bearer token"))?;
        state.accounts.authenticate(token).await.map(Caller)
    }
}

/// Query parameters; bad ones answer `bad_request`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Params<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for Error {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        let text = rejection.body_text();
        let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
        Error::BadRequest(format!("invalid query: {detail}"))
    }
}

/// A resource id from the path; one that cannot exist is `not_found`.
pub fn path_id(raw: &str, what: &'static str) -> Result<i64, Error> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(Error::NotFound(what))
}
