//! REST handlers. Stateless: they validate, call services (accounts, hub,
//! store) and shape answers; they never run SQL themselves.

mod accounts;
mod admin;
mod cards;
mod communities;
mod events;
mod extract;
mod matches;
mod notifications;
mod ops;
mod page;
mod profiles;
mod rooms;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::app::AppState;
use crate::error::Error;

/// Largest REST request body.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/register", post(accounts::register))
        .route("/auth/login", post(accounts::login))
        .route("/auth/logout", post(accounts::logout))
        .route("/me", get(accounts::me).patch(profiles::update_me))
        .route("/users/{id}", get(profiles::user))
        .route("/cards", post(cards::create).get(cards::list))
        .route(
            "/cards/{id}",
            get(cards::get).patch(cards::update).delete(cards::delete),
        )
        .route(
            "/cards/{id}/interest",
            put(cards::press_interest).delete(cards::withdraw_interest),
        )
        .route("/cards/{id}/interests", get(cards::interests))
        .route("/cards/{id}/matches", post(cards::create_match))
        .route(
            "/communities",
            post(communities::create).get(communities::list),
        )
        .route("/communities/{id}", get(communities::get))
        .route(
            "/communities/{id}/membership",
            put(communities::join).delete(communities::leave),
        )
        .route("/matches", get(matches::matches))
        .route("/conversations", get(matches::conversations))
        .route("/conversations/{id}/messages", get(matches::messages))
        .route("/events", post(events::create).get(events::list))
        .route(
            "/events/{id}",
            get(events::get)
                .patch(events::update)
                .delete(events::cancel),
        )
        .route("/events/{id}/rsvp", put(events::rsvp).delete(events::leave))
        .route("/notifications", get(notifications::list))
        .route("/notifications/read", post(notifications::mark_read))
        .route("/rooms", get(rooms::list))
        .route("/admin/users/{id}/role", put(admin::change_role))
        .route("/admin/rooms/{id}", delete(admin::close_room))
        .route("/admin/audit", get(admin::audit));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/ws", get(crate::ws::upgrade))
        .fallback(|| async { Error::NotFound("route") })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
