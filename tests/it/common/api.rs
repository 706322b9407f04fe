//! The REST client every server of the tests is spoken to with: the
//! in-process [`super::TestServer`], a cluster [`super::cluster::Node`] and
//! the `meshi` binary ([`super::binary::Running`]) each hold one and
//! dereference to it, so `server.get(…)` and `node.get(…)` are one code.
//!
//! Every call answers the status and the body as JSON (`Null` when there
//! is none or it is not JSON); the helpers that must succeed assert so,
//! naming the server.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

use super::WsClient;

/// The password every test user is registered with.
pub const PASSWORD: &str = "password123";

/// One server's REST API.
pub struct Api {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    /// Who this is in failure messages, e.g. `node node-2`.
    name: String,
}

/// Sends a request built by the caller (odd headers, raw bodies) and
/// answers the status and the JSON body.
pub async fn send(req: RequestBuilder) -> (u16, Value) {
    answer(req.send().await.expect("request is answered")).await
}

async fn answer(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Api {
    pub fn new(addr: SocketAddr, http: reqwest::Client, name: impl Into<String>) -> Self {
        Api {
            addr,
            http,
            name: name.into(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Whether `/healthz` answers 2xx right now.
    pub async fn healthy(&self) -> bool {
        self.http
            .get(self.url("/healthz"))
            .send()
            .await
            .is_ok_and(|resp| resp.status().is_success())
    }

    /// `/readyz`, or status 0 with the reason when it does not answer.
    pub async fn readyz(&self) -> (u16, Value) {
        // The store's pool waits up to 5 s for a connection, so a check
        // against a dead database takes that long before it answers 503.
        match tokio::time::timeout(
            Duration::from_secs(10),
            self.http.get(self.url("/readyz")).send(),
        )
        .await
        {
            Ok(Ok(resp)) => answer(resp).await,
            Ok(Err(e)) => (0, json!(format!("request failed: {e}"))),
            Err(_) => (0, json!("no answer within 10 s")),
        }
    }

    /// `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.name));
        answer(resp).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(Method::GET, path, token, None).await
    }

    /// GET with these query pairs, URL-encoded.
    pub async fn get_query(&self, path: &str, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let req = self
            .http
            .get(self.url(path))
            .query(query)
            .bearer_auth(token);
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} {query:?} on {}: {e}", self.name));
        answer(resp).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// PUT without a body.
    pub async fn put(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::PUT, path, Some(token), None).await
    }

    pub async fn put_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    /// DELETE without a body.
    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A registration of `handle` (display name the same), answered
    /// whatever it is.
    pub async fn register_with(&self, handle: &str, password: &str) -> (u16, Value) {
        self.post(
            "/api/v1/auth/register",
            None,
            json!({"handle": handle, "password": password, "display_name": handle}),
        )
        .await
    }

    /// Registers `handle` (password [`PASSWORD`]); returns token and id.
    pub async fn register(&self, handle: &str) -> (String, String) {
        let (status, body) = self.register_with(handle, PASSWORD).await;
        assert_eq!(status, 201, "register {handle} on {}: {body}", self.name);
        token_and_id(&body)
    }

    /// A login attempt, answered whatever it is.
    pub async fn login_with(&self, handle: &str, password: &str) -> (u16, Value) {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"handle": handle, "password": password}),
        )
        .await
    }

    /// Logs `handle` in (password [`PASSWORD`]); returns a new token and
    /// the user's id.
    pub async fn sign_in(&self, handle: &str) -> (String, String) {
        let (status, body) = self.login_with(handle, PASSWORD).await;
        assert_eq!(status, 200, "login {handle} on {}: {body}", self.name);
        token_and_id(&body)
    }

    /// [`Api::sign_in`], for when only the new token matters.
    pub async fn login(&self, handle: &str) -> String {
        self.sign_in(handle).await.0
    }

    pub async fn logout(&self, token: &str) {
        let (status, body) = self
            .post("/api/v1/auth/logout", Some(token), json!({}))
            .await;
        assert_eq!(status, 204, "logout on {}: {body}", self.name);
    }

    /// An admin (by `admin_token`) gives `user_id` this role.
    pub async fn set_role(&self, admin_token: &str, user_id: &str, role: &str) {
        let (status, body) = self
            .put_json(
                &format!("/api/v1/admin/users/{user_id}/role"),
                admin_token,
                json!({"role": role}),
            )
            .await;
        assert_eq!(
            status, 204,
            "{user_id} becomes {role} on {}: {body}",
            self.name
        );
    }

    /// A socket here that has said hello with `token`.
    pub async fn client(&self, token: &str) -> WsClient {
        WsClient::hello(self, token).await
    }

    /// Registers a user here and opens a socket here.
    pub async fn user(&self, handle: &str) -> (WsClient, String, String) {
        let (token, id) = self.register(handle).await;
        let client = self.client(&token).await;
        (client, token, id)
    }

    /// GETs a page that must answer 200; returns its items and its next
    /// cursor (`next_cursor` must be there, `null` on the last page).
    pub async fn page(&self, path: &str, token: &str) -> (Vec<Value>, Option<String>) {
        let (status, page) = self.get(path, Some(token)).await;
        assert_eq!(status, 200, "GET {path} on {}: {page}", self.name);
        assert!(page.get("next_cursor").is_some(), "a page: {page}");
        let items = page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("items is an array: {page}"))
            .clone();
        (items, page["next_cursor"].as_str().map(str::to_owned))
    }

    /// The open rooms per GET /api/v1/rooms.
    pub async fn rooms(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/rooms", Some(token)).await;
        assert_eq!(status, 200, "GET /api/v1/rooms on {}: {body}", self.name);
        body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("items in {body}"))
            .clone()
    }
}

fn token_and_id(body: &Value) -> (String, String) {
    (
        body["token"].as_str().expect("token").to_owned(),
        body["user"]["id"].as_str().expect("user id").to_owned(),
    )
}
