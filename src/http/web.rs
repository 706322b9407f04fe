//! The web client: plain HTML, CSS and JavaScript modules from `web/`,
//! compiled into the binary with `include_str!` so the server needs no
//! files and no Node beside it. Every response carries a
//! Content-Security-Policy that lets the page load nothing but this
//! server's own assets and talk to nothing but this server.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::Error;
use crate::state::AppState;

/// What the page may load and where it may connect: its own origin only
/// (`connect-src 'self'` covers the same-origin `ws://` socket), no inline
/// script or style, no frames, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

const INDEX: &str = include_str!("../../web/index.html");

/// Every asset under `/assets/`: its name, content type and text.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/assets/api.js"),
    ),
    (
        "socket.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/assets/socket.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/assets/views.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/assets/dom.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../web/assets/favicon.svg"),
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

fn page(content_type: &'static str, cache: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn index() -> Response {
    // The page names its assets without a version, so it must not be kept
    // past a deploy: always revalidated.
    page("text/html; charset=utf-8", "no-cache", INDEX)
}

async fn asset(Path(name): Path<String>) -> Result<Response, Error> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(known, _, _)| *known == name)
        .ok_or(Error::NotFound("asset"))?;
    // Assets change with the binary; a short cache, revalidated after.
    Ok(page(
        content_type,
        "public, max-age=300, must-revalidate",
        body,
    ))
}
