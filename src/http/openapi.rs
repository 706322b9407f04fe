//! The OpenAPI document of the REST API. Its paths come from the handlers'
//! `#[utoipa::path]` annotations as `http::api` registers them, so it cannot
//! list a route the server does not serve, nor miss one under /api/v1.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, ToSchema};

use crate::error::ErrorResponse;

/// The security scheme every authenticated operation names.
pub const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "meshi",
        version = env!("CARGO_PKG_VERSION"),
        description = "REST API of meshi, the real-time chat and rooms server. \
            Ids are strings and timestamps RFC 3339. Lists take `limit` (1-100, \
            default 50) and the `cursor` of the previous page and answer \
            `{items, next_cursor}`. The socket protocol at `/ws` is described \
            in protocol/README.md.",
    ),
    modifiers(&BearerScheme),
    components(schemas(ErrorResponse)),
    tags(
        (name = "accounts", description = "register, log in and out"),
        (name = "profiles", description = "the caller's profile and other users'"),
        (name = "cards", description = "talk-topic cards, interest, matching"),
        (name = "matches", description = "the caller's matches and conversations"),
        (name = "events", description = "events, RSVPs and the waitlist"),
        (name = "communities", description = "communities and membership"),
        (name = "rooms", description = "the open room directory"),
        (name = "notifications", description = "stored notifications"),
        (name = "safety", description = "blocking other users"),
        (name = "reports", description = "reporting users, cards and messages to the moderators"),
        (name = "admin", description = "moderation and administration"),
        (name = "meta", description = "this document"),
    ),
)]
pub struct Base;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Adds the failures any operation that reaches the database can answer,
/// so the handlers' annotations list only what is particular to them.
pub fn add_server_errors(openapi: &mut OpenApi) {
    let error = |description: &str| -> RefOr<Response> {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorResponse::name())))
                    .build(),
            )
            .build()
            .into()
    };
    for item in openapi.paths.paths.values_mut() {
        for operation in operations(item) {
            if operation.operation_id.as_deref() == Some(DOCUMENT_OPERATION) {
                continue;
            }
            let responses = &mut operation.responses.responses;
            responses
                .entry("500".into())
                .or_insert_with(|| error("an internal error; the cause is logged, not shown"));
            responses
                .entry("503".into())
                .or_insert_with(|| error("the database is unreachable"));
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

const DOCUMENT_OPERATION: &str = "openapi";

/// Serialized once: the document only changes with the binary.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&super::openapi()).expect("the OpenAPI document serializes")
});

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = DOCUMENT_OPERATION,
    tag = "meta",
    responses(
        (status = 200, description = "this document", body = Object, content_type = "application/json"),
    ),
)]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
