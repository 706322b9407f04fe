//! What every HTTP request leaves behind: a request id on its log lines
//! and in its response, and `meshi_http_requests_total{method, route,
//! status}` with `meshi_http_request_seconds{method, route}`.
//!
//! The route is the template the router matched (`/api/v1/cards/{id}`),
//! never the path itself, so a crawler walking ids adds no series; a
//! request that matched nothing counts as `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;
use tracing::Instrument;

/// The response header that carries the request's id, for a user to quote
/// and an operator to find in the logs.
pub const REQUEST_ID: &str = "x-request-id";

pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    // Random rather than counted: ids stay apart across nodes and restarts.
    let id = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let span = tracing::info_span!("request", request_id = %id, method, route = route.as_deref());
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16().to_string();
    // An access log for whoever turns `meshi::http` up to debug.
    tracing::debug!(parent: &span, status, elapsed_us = started.elapsed().as_micros(), "answered");
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    metrics::histogram!("meshi_http_request_seconds", "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "meshi_http_requests_total",
        "method" => method,
        "route" => route,
        "status" => status
    )
    .increment(1);
    response
}

/// The method as a label; anything outside the standard set is `other`,
/// so a client inventing methods invents no series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
