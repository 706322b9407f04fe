//! REST handlers. Stateless: they validate, call services (accounts, hub,
//! store) and shape answers; they never run SQL themselves. Every /api/v1
//! handler is registered together with its OpenAPI annotation.

mod accounts;
mod admin;
mod blocks;
mod cards;
mod communities;
mod events;
mod extract;
mod matches;
mod notifications;
mod observe;
mod openapi;
mod ops;
mod page;
mod profiles;
mod reports;
mod rooms;
mod sessions;
mod suspensions;
mod web;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::Error;
use crate::state::AppState;

/// Largest REST request body.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route under /api/v1. Each goes through `routes!`, which registers
/// the handler and its `#[utoipa::path]` together, one path per call (the
/// macro would put every method on every path it is given otherwise).
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi::document))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::export_me))
        .routes(routes!(sessions::change_password))
        .routes(routes!(sessions::list, sessions::end_others))
        .routes(routes!(sessions::end))
        .routes(routes!(
            accounts::me,
            profiles::update_me,
            accounts::delete_me
        ))
        .routes(routes!(profiles::user))
        .routes(routes!(cards::create, cards::list))
        .routes(routes!(cards::get, cards::update, cards::delete))
        .routes(routes!(cards::press_interest, cards::withdraw_interest))
        .routes(routes!(cards::interests))
        .routes(routes!(cards::create_match))
        .routes(routes!(communities::create, communities::list))
        .routes(routes!(communities::get))
        .routes(routes!(communities::join, communities::leave))
        .routes(routes!(communities::members))
        .routes(routes!(blocks::block, blocks::unblock))
        .routes(routes!(blocks::list))
        .routes(routes!(matches::matches))
        .routes(routes!(matches::unmatch))
        .routes(routes!(matches::conversations))
        .routes(routes!(matches::messages))
        .routes(routes!(events::create, events::list))
        .routes(routes!(events::get, events::update, events::cancel))
        .routes(routes!(events::rsvp, events::leave))
        .routes(routes!(events::attendees))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::mark_read))
        .routes(routes!(rooms::list))
        .routes(routes!(admin::change_role))
        .routes(routes!(admin::close_room))
        .routes(routes!(admin::audit))
        .routes(routes!(suspensions::suspend, suspensions::unsuspend))
        .routes(routes!(suspensions::list))
        .routes(routes!(reports::create))
        .routes(routes!(reports::queue))
        .routes(routes!(reports::resolve))
}

fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::Base::openapi()).nest("/api/v1", api())
}

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = documented().into_openapi();
    openapi::add_server_errors(&mut document);
    document
}

pub fn router(state: AppState) -> Router {
    // The document is built from the same registrations, in `openapi()`.
    let (mut routes, _) = documented().split_for_parts();
    // With a listener of their own, the metrics are not on the public one.
    if state.config.metrics_addr.is_none() {
        routes = routes.route("/metrics", get(ops::metrics));
    }
    routes
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/ws", get(crate::ws::upgrade))
        .merge(web::routes())
        .fallback(|| async { Error::NotFound("route") })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}

/// What `MESHI_METRICS_ADDR` serves: `/metrics` and nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { Error::NotFound("route") })
        .with_state(state)
}
