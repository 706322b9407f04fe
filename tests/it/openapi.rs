//! The OpenAPI document at /api/v1/openapi.json against the real server: it
//! is served without a token, lists every route of the REST contract, and
//! every operation it lists answers on a live server with a status it
//! documents and a body its schema describes.

use crate::common::chat::create_room;
use crate::common::json::text_of;
use crate::common::platform::{create_match, new_card, new_community, new_event, press_interest};
use crate::common::{TestServer, WsClient};
use serde_json::{json, Value};

const ADMIN: &str = "root_admin";

/// Every route of REST-v1, plus the document itself.
const CONTRACT: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/me"),
    ("DELETE", "/api/v1/me"),
    ("GET", "/api/v1/me/export"),
    ("GET", "/api/v1/me/sessions"),
    ("DELETE", "/api/v1/me/sessions"),
    ("DELETE", "/api/v1/me/sessions/{id}"),
    ("POST", "/api/v1/auth/password"),
    ("PATCH", "/api/v1/me"),
    ("GET", "/api/v1/users/{id}"),
    ("POST", "/api/v1/cards"),
    ("GET", "/api/v1/cards"),
    ("GET", "/api/v1/cards/{id}"),
    ("PATCH", "/api/v1/cards/{id}"),
    ("DELETE", "/api/v1/cards/{id}"),
    ("PUT", "/api/v1/cards/{id}/interest"),
    ("DELETE", "/api/v1/cards/{id}/interest"),
    ("GET", "/api/v1/cards/{id}/interests"),
    ("POST", "/api/v1/cards/{id}/matches"),
    ("GET", "/api/v1/matches"),
    ("DELETE", "/api/v1/matches/{id}"),
    ("GET", "/api/v1/conversations"),
    ("GET", "/api/v1/conversations/{id}/messages"),
    ("POST", "/api/v1/events"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/{id}"),
    ("PATCH", "/api/v1/events/{id}"),
    ("DELETE", "/api/v1/events/{id}"),
    ("PUT", "/api/v1/events/{id}/rsvp"),
    ("DELETE", "/api/v1/events/{id}/rsvp"),
    ("GET", "/api/v1/events/{id}/attendees"),
    ("POST", "/api/v1/communities"),
    ("GET", "/api/v1/communities"),
    ("GET", "/api/v1/communities/{id}"),
    ("PUT", "/api/v1/communities/{id}/membership"),
    ("DELETE", "/api/v1/communities/{id}/membership"),
    ("GET", "/api/v1/communities/{id}/members"),
    ("GET", "/api/v1/rooms"),
    ("POST", "/api/v1/users/{id}/block"),
    ("DELETE", "/api/v1/users/{id}/block"),
    ("GET", "/api/v1/me/blocks"),
    ("GET", "/api/v1/notifications"),
    ("POST", "/api/v1/notifications/read"),
    ("PUT", "/api/v1/admin/users/{id}/role"),
    ("DELETE", "/api/v1/admin/rooms/{id}"),
    ("GET", "/api/v1/admin/audit"),
    ("GET", "/api/v1/admin/users"),
    ("POST", "/api/v1/admin/users/{id}/suspend"),
    ("DELETE", "/api/v1/admin/users/{id}/suspend"),
    ("POST", "/api/v1/reports"),
    ("GET", "/api/v1/admin/reports"),
    ("POST", "/api/v1/admin/reports/{id}/resolve"),
    ("GET", "/api/v1/openapi.json"),
];

/// Only these may be called without a bearer token.
const OPEN: &[&str] = &["register", "login", "openapi"];

struct Operation {
    method: String,
    path: String,
    spec: Value,
}

impl Operation {
    fn id(&self) -> &str {
        self.spec["operationId"].as_str().unwrap_or("?")
    }

    fn secured(&self) -> bool {
        self.spec["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()))
    }

    fn documents(&self, status: u16) -> bool {
        self.spec["responses"].get(status.to_string()).is_some()
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

async fn fetch_document(server: &TestServer) -> Value {
    let resp = server
        .http
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("GET the document");
    assert_eq!(resp.status(), 200, "the document is served without a token");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let text = resp.text().await.expect("document body");
    serde_json::from_str(&text).expect("the document is JSON")
}

fn operations(document: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, spec) in item.as_object().expect("path item") {
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&&**method) {
                found.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    spec: spec.clone(),
                });
            }
        }
    }
    found
}

#[tokio::test]
async fn the_document_is_openapi_3_with_info_and_a_bearer_scheme() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await;
    let version = document["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "openapi {version}");
    assert_eq!(document["info"]["title"], "meshi");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer"})
    );

    let operations = operations(&document);
    let mut ids: Vec<&str> = operations.iter().map(Operation::id).collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids are unique: {ids:?}");
    for op in &operations {
        assert!(
            op.spec["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{op} has a tag"
        );
        assert_eq!(
            op.secured(),
            !OPEN.contains(&op.id()),
            "{op}: only register, login and the document go without a token"
        );
        for (status, response) in op.spec["responses"].as_object().expect("responses") {
            if !status.starts_with('2') {
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ErrorResponse",
                    "{op} answers {status} with the contract's error body"
                );
            }
        }
        if op.secured() {
            assert!(op.documents(401), "{op} documents 401");
        }
    }
}

#[tokio::test]
async fn the_document_lists_every_route_of_the_contract() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await;
    let listed: Vec<(String, String)> = operations(&document)
        .into_iter()
        .map(|op| (op.method, op.path))
        .collect();
    let missing: Vec<_> = CONTRACT
        .iter()
        .filter(|(method, path)| !listed.iter().any(|(m, p)| m == method && p == path))
        .collect();
    assert!(missing.is_empty(), "not in the document: {missing:?}");
}

/// Real resources of each kind, so every path id names something.
struct World {
    server: TestServer,
    owner: String,
    other: String,
    other_id: String,
    /// Logs out during the sweep; the others keep working.
    leaving: String,
    card_id: String,
    event_id: String,
    community_id: String,
    conversation_id: String,
    match_id: String,
    room_id: String,
    /// Suspended and let back in during the sweep.
    suspended_id: String,
    /// A report of `other` by `leaving`, resolved during the sweep.
    report_id: String,
    /// Changes their password during the sweep.
    changer: String,
    /// Lists and ends their sessions during the sweep; `session_id` is
    /// their second one.
    sessions_user: String,
    session_id: String,
    /// Deletes their account during the sweep.
    doomed: String,
    /// Holds the room open.
    _host: WsClient,
}

impl World {
    async fn build() -> Self {
        let server =
            TestServer::start_with(|config| config.admin_handles = vec![ADMIN.into()]).await;
        let (owner, _) = server.admin(ADMIN).await;
        let (other, other_id) = server.register("bob").await;
        let (leaving, _) = server.register("carol").await;

        let card = new_card(&server, &owner, "async Rust", "", &["rust"]).await;
        let card_id = text_of(&card["id"]);
        press_interest(&server, &card_id, &other).await;
        let matched = create_match(&server, &card_id, &owner, &other_id).await;
        let conversation_id = text_of(&matched["conversation_id"]);
        // Unmatching runs after the first card is deleted (and its match
        // with it), so it takes the match of a second card.
        let second = new_card(&server, &owner, "sqlx", "", &[]).await;
        let second_id = text_of(&second["id"]);
        press_interest(&server, &second_id, &other).await;
        let (status, body) = server
            .post(
                &format!("/api/v1/cards/{second_id}/matches"),
                Some(&owner),
                json!({"user_id": other_id}),
            )
            .await;
        assert_eq!(status, 200, "the pair's second match: {body}");
        let match_id = text_of(&body["match"]["id"]);

        let event = new_event(&server, &owner, event_body()).await;
        let community = new_community(
            &server,
            &owner,
            json!({"name": "rustaceans", "tags": ["rust"]}),
        )
        .await;

        let mut host = WsClient::hello(&server, &owner).await;
        let room_id = create_room(&mut host, "ramen after work").await;

        let (_, suspended_id) = server.register("erin").await;
        let (status, report) = server
            .post(
                "/api/v1/reports",
                Some(&leaving),
                json!({"kind": "user", "target_id": other_id, "reason": "spam"}),
            )
            .await;
        assert_eq!(status, 201, "a report to resolve: {report}");
        let report_id = text_of(&report["report"]["id"]);

        let (changer, _) = server.register("frank").await;
        let (sessions_user, _) = server.register("gina").await;
        server.sign_in("gina").await;
        let (listed, _) = server.page("/api/v1/me/sessions", &sessions_user).await;
        let session_id = listed
            .iter()
            .find(|s| s["current"] == false)
            .map(|s| text_of(&s["id"]))
            .expect("gina's second session");
        let (doomed, _) = server.register("harry").await;

        World {
            changer,
            sessions_user,
            session_id,
            doomed,
            owner,
            other,
            other_id,
            leaving,
            card_id,
            event_id: text_of(&event["id"]),
            community_id: text_of(&community["id"]),
            conversation_id,
            match_id,
            room_id,
            suspended_id,
            report_id,
            _host: host,
            server,
        }
    }

    fn concrete(&self, path: &str) -> String {
        let rest = path.strip_prefix("/api/v1/").unwrap_or(path);
        let id = match rest.split('/').next() {
            Some("users") => &self.other_id,
            Some("cards") => &self.card_id,
            Some("events") => &self.event_id,
            Some("communities") => &self.community_id,
            Some("conversations") => &self.conversation_id,
            Some("matches") => &self.match_id,
            Some("me") => &self.session_id,
            Some("admin") if rest.starts_with("admin/users/") && rest.ends_with("/suspend") => {
                &self.suspended_id
            }
            Some("admin") if rest.starts_with("admin/users/") => &self.other_id,
            Some("admin") if rest.starts_with("admin/reports/") => &self.report_id,
            Some("admin") if rest.starts_with("admin/rooms/") => &self.room_id,
            _ => "1",
        };
        let path = path.replace("{id}", id);
        assert!(!path.contains('{'), "give the test a value for {path}");
        path
    }

    /// Interest and RSVPs are for people other than the owner or host;
    /// logging out ends a token no other call needs.
    fn token_for(&self, op: &Operation) -> Option<&str> {
        if !op.secured() {
            return None;
        }
        if op.path.ends_with("/interest") || op.path.ends_with("/rsvp") {
            return Some(&self.other);
        }
        match op.id() {
            "logout" => return Some(&self.leaving),
            "change_password" => return Some(&self.changer),
            "list_sessions" | "end_session" | "end_other_sessions" => {
                return Some(&self.sessions_user)
            }
            "delete_me" => return Some(&self.doomed),
            _ => {}
        }
        Some(&self.owner)
    }
}

fn event_body() -> Value {
    json!({
        "title": "ramen night",
        "starts_at": "2099-03-02T19:00:00Z",
        "venue": "Shibuya",
        "capacity": 8,
    })
}

/// A valid body for each operation the document says takes one.
fn body_for(world: &World, op: &Operation) -> Option<Value> {
    op.spec.get("requestBody")?;
    let body = match op.id() {
        "register" => json!({"handle": "dave", "password": "password123", "display_name": "Dave"}),
        "login" => json!({"handle": "bob", "password": "password123"}),
        "change_password" => {
            json!({"current_password": "password123", "new_password": "an even better one"})
        }
        "delete_me" => json!({"password": "password123"}),
        "update_me" => json!({"bio": "likes ramen"}),
        "create_card" => json!({"title": "sqlx tips"}),
        "update_card" => json!({"title": "async Rust, again"}),
        "create_match" => json!({"user_id": world.other_id}),
        "create_event" => event_body(),
        "update_event" => json!({"capacity": 10}),
        "create_community" => json!({"name": "gophers"}),
        "mark_notifications_read" => json!({"up_to_id": "1"}),
        "change_role" => json!({"role": "moderator"}),
        "suspend_user" => json!({"reason": "checking the document"}),
        "create_report" => json!({"kind": "card", "target_id": world.card_id, "reason": "spam"}),
        "resolve_report" => json!({"action": "dismissed"}),
        other => panic!("give the test a body for {other} ({op})"),
    };
    Some(body)
}

async fn call(world: &World, op: &Operation, token: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(op.method.as_bytes()).expect("method");
    let mut req = world
        .server
        .http
        .request(method, world.server.url(&world.concrete(&op.path)));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body_for(world, op) {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{op}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("response body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{op} answers JSON: {text}"))
    };
    (status, body)
}

/// Deletions last, deepest paths first, so nothing a later call needs is
/// gone when it runs.
fn in_safe_order(mut operations: Vec<Operation>) -> Vec<Operation> {
    operations.sort_by_key(|op| {
        let deleting = op.method == "DELETE";
        let depth = op.path.matches('/').count();
        (deleting, if deleting { usize::MAX - depth } else { 0 })
    });
    operations
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let world = World::build().await;
    let document = fetch_document(&world.server).await;
    let operations = in_safe_order(operations(&document));
    assert!(operations.len() >= CONTRACT.len());

    for op in &operations {
        let (status, body) = call(&world, op, world.token_for(op)).await;
        assert_ne!(status, 405, "{op} is served with this method");
        assert!(
            !(status == 404 && body["error"]["message"] == "route not found"),
            "{op} is served"
        );
        assert!(
            (200..300).contains(&status),
            "{op} succeeds on resources that exist: {status} {body}"
        );
        assert!(op.documents(status), "{op} documents its answer {status}");
        let described = &op.spec["responses"][status.to_string()]["content"]["application/json"];
        if let Some(schema) = described.get("schema") {
            if op.id() != "openapi" {
                conforms(&document, schema, &body, &op.to_string());
            }
        } else {
            assert!(body.is_null(), "{op} answers {status} with no body: {body}");
        }
    }
}

#[tokio::test]
async fn every_secured_operation_refuses_a_missing_token_as_documented() {
    let world = World::build().await;
    let document = fetch_document(&world.server).await;
    for op in operations(&document).iter().filter(|op| op.secured()) {
        let (status, body) = call(&world, op, None).await;
        assert_eq!(status, 401, "{op} without a token: {body}");
        let schema = &op.spec["responses"]["401"]["content"]["application/json"]["schema"];
        conforms(&document, schema, &body, &op.to_string());
        assert_eq!(body["error"]["code"], "unauthenticated", "{op}");
    }
}

/// Checks `value` against the parts of a schema the document uses: every
/// required property is there, and nothing is there that the schema does
/// not name, recursively.
fn conforms(document: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(document, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        let mut named: Vec<String> = Vec::new();
        for part in parts {
            let part = resolve(document, part);
            check_required(part, value, at);
            check_properties(document, part, value, at);
            if let Some(props) = part["properties"].as_object() {
                named.extend(props.keys().cloned());
            }
        }
        check_no_extra(value, &named, at);
        return;
    }
    if let Some(variants) = schema["oneOf"].as_array() {
        // How the document writes an optional reference: null or the type.
        let null = json!({"type": "null"});
        if value.is_null() && variants.contains(&null) {
            return;
        }
        let other: Vec<&Value> = variants.iter().filter(|v| **v != null).collect();
        assert_eq!(other.len(), 1, "{at}: one schema besides null: {schema}");
        return conforms(document, other[0], value, at);
    }
    if value.is_null() {
        let nullable = schema["type"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("null")));
        assert!(
            nullable || schema.as_object().is_some_and(|s| s.is_empty()),
            "{at}: null where the schema does not allow it: {schema}"
        );
        return;
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            conforms(document, items, item, &format!("{at}[{i}]"));
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        check_required(schema, value, at);
        check_properties(document, schema, value, at);
        check_no_extra(value, &props.keys().cloned().collect::<Vec<_>>(), at);
    }
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .expect("a component reference");
            let found = &document["components"]["schemas"][name];
            assert!(!found.is_null(), "{reference} is defined");
            found
        }
        None => schema,
    }
}

fn check_required(schema: &Value, value: &Value, at: &str) {
    for field in schema["required"].as_array().into_iter().flatten() {
        let field = field.as_str().expect("field name");
        assert!(
            value.get(field).is_some(),
            "{at}: required `{field}` is missing from {value}"
        );
    }
}

fn check_properties(document: &Value, schema: &Value, value: &Value, at: &str) {
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        if let Some(inner) = value.get(name) {
            conforms(document, property, inner, &format!("{at}.{name}"));
        }
    }
}

fn check_no_extra(value: &Value, named: &[String], at: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{at}: an object: {value}"));
    for key in object.keys() {
        assert!(
            named.contains(key),
            "{at}: `{key}` is answered but not documented"
        );
    }
}
