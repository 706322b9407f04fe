//! Single sign-on against the real server: JWTs from an identity provider
//! (HS256 with a shared secret, RS256 with a public key) accepted over REST
//! and at socket `hello`, users created on first sight, bad tokens refused,
//! sockets closed when the token expires, and the production refusal of
//! the built binary.
//!
//! The RSA key pair is generated when the tests run and lives in memory;
//! only the public half is written, to a temporary file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::binary::{self, assert_refused, collect_lines, KillOnDrop, PROCESS_TIMEOUT};
use crate::common::json::assert_error;
use crate::common::{test_config, Ended, TestServer, WsClient};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use meshi::config::{Config, Secret};
use serde_json::{json, Value};

const SECRET: &str = "hs256-test-secret-that-is-long-enough-for-rfc7518";
const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "meshi-tests";

struct RsaPair {
    private_pem: String,
    public_pem: String,
}

/// One RSA key pair per test run, shared by the tests: generating one
/// takes a moment.
fn rsa_pair() -> &'static RsaPair {
    static PAIR: OnceLock<RsaPair> = OnceLock::new();
    PAIR.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        use rsa::Generate;
        let private = rsa::PrivateKey::generate();
        RsaPair {
            private_pem: private
                .to_pkcs8_pem(LineEnding::LF)
                .expect("encode the private key")
                .to_string(),
            public_pem: private
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("encode the public key"),
        }
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Claims of a token valid for ten minutes from the configured issuer to
/// the configured audience.
fn claims(sub: &str) -> Value {
    json!({
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now_secs(),
        "exp": now_secs() + 600,
    })
}

fn with(mut claims: Value, extra: Value) -> Value {
    for (key, value) in extra.as_object().expect("extra claims are an object") {
        if value.is_null() {
            claims.as_object_mut().expect("claims object").remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn hs256_with(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).expect("an HMAC key"),
    )
    .expect("sign HS256")
}

fn hs256(claims: &Value) -> String {
    hs256_with(SECRET.as_bytes(), claims)
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(rsa_pair().private_pem.as_bytes()).expect("private key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign RS256")
}

/// A server trusting both keys, with issuer and audience checks on.
struct SsoServer {
    server: TestServer,
    _keys: tempfile::TempDir,
}

impl std::ops::Deref for SsoServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

fn public_key_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("idp-public.pem");
    std::fs::write(&path, &rsa_pair().public_pem).expect("write the public key");
    (dir, path)
}

fn sso_config(config: &mut Config, public_key: PathBuf) {
    config.jwt_secret = Some(Secret::new(SECRET));
    config.jwt_public_key_file = Some(public_key);
    config.jwt_issuer = Some(ISSUER.into());
    config.jwt_audience = Some(AUDIENCE.into());
}

async fn sso_server_with(tweak: impl FnOnce(&mut Config)) -> SsoServer {
    let (keys, path) = public_key_file();
    let server = TestServer::start_with(|config| {
        sso_config(config, path);
        tweak(config);
    })
    .await;
    SsoServer {
        server,
        _keys: keys,
    }
}

async fn sso_server() -> SsoServer {
    sso_server_with(|_| {}).await
}

async fn me(server: &TestServer, token: &str) -> (u16, Value) {
    server.get("/api/v1/me", Some(token)).await
}

/// Asserts `hello` with `token` is refused and the socket closes with 4001.
async fn assert_hello_refused(server: &TestServer, token: &str, case: &str) -> String {
    let mut client = WsClient::connect(server).await;
    let error = client
        .err(json!({"type": "hello", "token": token}), "unauthenticated")
        .await;
    assert_eq!(
        client.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4001),
        "{case}: the socket closes with 4001"
    );
    error["message"].as_str().expect("message").to_owned()
}

#[tokio::test]
async fn hs256_tokens_work_over_rest_and_socket() {
    let server = sso_server().await;
    let token = hs256(&with(
        claims("hs|ada"),
        json!({"preferred_username": "Ada.Lovelace", "name": "Ada Lovelace"}),
    ));
    let (status, profile) = me(&server, &token).await;
    assert_eq!(status, 200, "me answered {profile}");
    assert_eq!(profile["handle"], "ada_lovelace");
    assert_eq!(profile["display_name"], "Ada Lovelace");
    assert_eq!(profile["role"], "member");
    let user_id = profile["id"].as_str().expect("id").to_owned();

    let mut client = WsClient::connect(&server).await;
    let hello = client.ok(json!({"type": "hello", "token": token})).await;
    assert_eq!(hello["user"]["id"], user_id.as_str());
    assert_eq!(hello["user"]["handle"], "ada_lovelace");
    let session_id = hello["session_id"].as_str().expect("session_id");
    assert!(
        session_id.starts_with("jwt_"),
        "a JWT socket names no stored session: {session_id}"
    );
    assert!(
        !token.contains(session_id.trim_start_matches("jwt_")),
        "nothing of the token shows"
    );
    let room = client
        .ok(json!({"type": "room.create", "name": "sso room"}))
        .await;
    assert_eq!(room["room"]["host_id"], user_id.as_str());
    client.close().await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn rs256_tokens_work_over_rest_and_socket() {
    let server = sso_server().await;
    let token = rs256(&with(
        claims("rs|grace"),
        json!({"nickname": "grace", "name": "Grace H."}),
    ));
    let (status, profile) = me(&server, &token).await;
    assert_eq!(status, 200, "me answered {profile}");
    assert_eq!(profile["handle"], "grace");
    assert_eq!(profile["display_name"], "Grace H.");
    let user_id = profile["id"].as_str().expect("id").to_owned();

    let mut client = WsClient::connect(&server).await;
    let hello = client.ok(json!({"type": "hello", "token": token})).await;
    assert_eq!(hello["user"]["id"], user_id.as_str());
    assert_eq!(hello["user"]["display_name"], "Grace H.");
    client.ok(json!({"type": "ping"})).await;

    // Other REST routes take the JWT as a bearer token too.
    let (status, rooms) = server.get("/api/v1/rooms", Some(&token)).await;
    assert_eq!(status, 200, "{rooms}");
    client.close().await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn users_are_created_on_first_sight_and_found_again() {
    let server = sso_server().await;
    let first = hs256(&with(
        claims("sub-42"),
        json!({"preferred_username": "kim"}),
    ));
    let (_, created) = me(&server, &first).await;
    assert_eq!(created["handle"], "kim");
    assert_eq!(created["display_name"], "kim", "no name claim: the handle");

    // Same subject, other claims, other algorithm: the same user, unchanged.
    let later = rs256(&with(
        claims("sub-42"),
        json!({"preferred_username": "kim_renamed", "name": "Kim K."}),
    ));
    let (status, again) = me(&server, &later).await;
    assert_eq!(status, 200);
    assert_eq!(again, created, "found again, not created twice");

    // Another subject wanting the same handle gets a suffix.
    let other = hs256(&with(
        claims("sub-43"),
        json!({"preferred_username": "Kim"}),
    ));
    let (_, second) = me(&server, &other).await;
    assert_ne!(second["id"], created["id"]);
    assert_eq!(second["handle"], "kim_2");

    // A password account already holding a handle is never taken over.
    let (_, password_user_id) = server.register("taken_name").await;
    let wants_it = hs256(&with(
        claims("sub-44"),
        json!({"preferred_username": "taken_name"}),
    ));
    let (_, third) = me(&server, &wants_it).await;
    assert_ne!(third["id"], password_user_id.as_str());
    assert_eq!(third["handle"], "taken_name_2");

    // No name claims at all: the handle comes from the subject.
    let bare = hs256(&claims("auth0|5F7C8EC7C33C"));
    let (_, from_sub) = me(&server, &bare).await;
    assert_eq!(from_sub["handle"], "auth0_5f7c8ec7c33c");

    // A name with nothing usable still yields a valid handle.
    let odd = hs256(&with(
        claims("sub-45"),
        json!({"preferred_username": "山田", "name": "山田 太郎"}),
    ));
    let (_, yamada) = me(&server, &odd).await;
    assert_eq!(yamada["handle"], "user");
    assert_eq!(yamada["display_name"], "山田 太郎");

    // A password login never opens a provider account: it has no password.
    let (status, body) = server.login_with("kim", "password123").await;
    assert_error(status, &body, 401, "unauthenticated");
    server.server.shutdown().await;
}

#[tokio::test]
async fn concurrent_first_sign_ons_make_one_user_per_subject() {
    let server = sso_server().await;
    let token = hs256(&with(
        claims("racing-sub"),
        json!({"preferred_username": "racer"}),
    ));
    let same_subject = (0..12).map(|_| me(&server, &token));
    let answers = futures_util::future::join_all(same_subject).await;
    let ids: Vec<Value> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["id"].clone()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one user: {ids:?}");

    // Many subjects wanting one handle at once all get distinct ones.
    let tokens: Vec<String> = (0..12)
        .map(|i| {
            hs256(&with(
                claims(&format!("crowd-{i}")),
                json!({"preferred_username": "crowd"}),
            ))
        })
        .collect();
    let answers = futures_util::future::join_all(tokens.iter().map(|t| me(&server, t))).await;
    let mut handles: Vec<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["handle"].as_str().expect("handle").to_owned()
        })
        .collect();
    for handle in &handles {
        assert!(
            handle.starts_with("crowd")
                && (3..=32).contains(&handle.len())
                && handle
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "valid handle: {handle}"
        );
    }
    handles.sort();
    handles.dedup();
    assert_eq!(handles.len(), 12, "distinct handles: {handles:?}");
    server.server.shutdown().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_over_rest_and_socket() {
    let server = sso_server().await;
    let good = claims("bad-cases");
    let public_pem = rsa_pair().public_pem.clone();
    let tampered = {
        let token = rs256(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = with(good.clone(), json!({"sub": "someone-else"}));
        let payload = base64_url(forged_claims.to_string().as_bytes());
        format!("{}.{}.{}", parts[0], payload, parts[2])
    };
    let alg_none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(good.to_string().as_bytes())
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong secret",
            hs256_with(b"another-secret-that-is-long-enough-too!", &good),
            "invalid token",
        ),
        ("tampered RS256 payload", tampered, "invalid token"),
        (
            "HS256 signed with the RSA public key (algorithm confusion)",
            hs256_with(public_pem.as_bytes(), &good),
            "invalid token",
        ),
        (
            "expired",
            hs256(&with(good.clone(), json!({"exp": now_secs() - 3600}))),
            "token expired",
        ),
        (
            "expired RS256",
            rs256(&with(good.clone(), json!({"exp": now_secs() - 3600}))),
            "token expired",
        ),
        (
            "not yet valid",
            hs256(&with(good.clone(), json!({"nbf": now_secs() + 3600}))),
            "token not valid yet",
        ),
        (
            "wrong issuer",
            hs256(&with(good.clone(), json!({"iss": "https://evil.test"}))),
            "invalid token",
        ),
        (
            "no issuer",
            hs256(&with(good.clone(), json!({"iss": null}))),
            "invalid token",
        ),
        (
            "wrong audience",
            rs256(&with(good.clone(), json!({"aud": "someone-else"}))),
            "invalid token",
        ),
        (
            "no audience",
            hs256(&with(good.clone(), json!({"aud": null}))),
            "invalid token",
        ),
        (
            "no exp",
            hs256(&with(good.clone(), json!({"exp": null}))),
            "invalid token",
        ),
        (
            "no sub",
            hs256(&with(good.clone(), json!({"sub": null}))),
            "invalid token",
        ),
        (
            "empty sub",
            hs256(&with(good.clone(), json!({"sub": ""}))),
            "invalid token",
        ),
        // An empty signature is not JWT-shaped: refused as an unknown
        // session token.
        ("alg none", alg_none, "invalid or expired token"),
        (
            "garbage in three parts",
            "abc.def.ghi".into(),
            "invalid token",
        ),
    ];
    for (case, token, want) in &cases {
        let (status, body) = me(&server, token).await;
        let message = assert_error(status, &body, 401, "unauthenticated");
        assert_eq!(message, *want, "{case}");
        let message = assert_hello_refused(&server, token, case).await;
        assert_eq!(message, *want, "{case} at hello");
    }
    // None of them created a user: the first good token makes user 1.
    let (_, created) = me(&server, &hs256(&good)).await;
    assert_eq!(created["handle"], "bad_cases");
    assert_eq!(created["id"], "1", "the refused tokens left no rows behind");
    server.server.shutdown().await;
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn jwts_are_refused_when_no_provider_is_configured() {
    let server = TestServer::start().await;
    let token = hs256(&claims("nobody"));
    let (status, body) = me(&server, &token).await;
    assert_eq!(
        assert_error(status, &body, 401, "unauthenticated"),
        "invalid token"
    );
    assert_hello_refused(&server, &token, "no provider").await;
    server.shutdown().await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_only_when_configured() {
    let server = sso_server_with(|config| {
        config.jwt_issuer = None;
        config.jwt_audience = None;
    })
    .await;
    let bare = hs256(&with(claims("loose"), json!({"iss": null, "aud": null})));
    let (status, body) = me(&server, &bare).await;
    assert_eq!(status, 200, "{body}");
    let any = rs256(&with(
        claims("loose"),
        json!({"iss": "https://other.test", "aud": ["x", "y"]}),
    ));
    let (status, again) = me(&server, &any).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], body["id"]);
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_jwt_socket_closes_with_4010_when_the_token_expires() {
    let server = sso_server_with(|config| config.jwt_leeway_secs = 0).await;
    let token = hs256(&with(claims("short-lived"), json!({"exp": now_secs() + 2})));
    let mut client = WsClient::connect(&server).await;
    client.ok(json!({"type": "hello", "token": token})).await;
    let opened = Instant::now();
    client.ok(json!({"type": "ping"})).await;
    assert_eq!(
        client.closed_with(Duration::from_secs(8)).await,
        Ended::Closed(4010),
        "the socket closes when the token expires"
    );
    let lived = opened.elapsed();
    assert!(
        lived >= Duration::from_millis(500),
        "not before expiry: {lived:?}"
    );
    assert!(
        lived <= Duration::from_secs(4),
        "soon after expiry: {lived:?}"
    );
    let (status, body) = me(&server, &token).await;
    assert_eq!(
        assert_error(status, &body, 401, "unauthenticated"),
        "token expired"
    );
    server.server.shutdown().await;
}

#[tokio::test]
async fn auth_refresh_with_a_fresh_jwt_keeps_the_socket_open() {
    let server = sso_server_with(|config| config.jwt_leeway_secs = 0).await;
    let short = hs256(&with(claims("refresher"), json!({"exp": now_secs() + 2})));
    let long = rs256(&claims("refresher"));
    let mut client = WsClient::connect(&server).await;
    client.ok(json!({"type": "hello", "token": short})).await;
    client
        .ok(json!({"type": "auth.refresh", "token": long}))
        .await;
    // Past the first token's expiry, the socket still answers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    client.ok(json!({"type": "ping"})).await;

    // A JWT of another subject is not this user's token.
    let stranger = hs256(&claims("stranger"));
    client
        .err(
            json!({"type": "auth.refresh", "token": stranger}),
            "forbidden",
        )
        .await;
    client.close().await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn logout_with_a_jwt_answers_204_and_revokes_nothing() {
    let server = sso_server().await;
    let token = hs256(&claims("leaver"));
    let mut client = WsClient::connect(&server).await;
    client.ok(json!({"type": "hello", "token": token})).await;
    let (status, body) = server
        .post("/api/v1/auth/logout", Some(&token), json!({}))
        .await;
    assert_eq!(status, 204, "logout answered {body}");
    // The provider's token is the provider's to end; it works until `exp`.
    let (status, _) = me(&server, &token).await;
    assert_eq!(status, 200);
    client.assert_no("error", Duration::from_millis(300)).await;
    client.ok(json!({"type": "ping"})).await;

    // Session tokens still end at logout, sockets included.
    let (mut password_client, password_token, _) = server.user("with_password").await;
    let (status, _) = server
        .post("/api/v1/auth/logout", Some(&password_token), json!({}))
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        password_client.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4010)
    );
    client.close().await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn provider_users_never_take_a_configured_admin_handle() {
    let server = sso_server_with(|config| config.admin_handles = vec!["boss".into()]).await;
    let token = hs256(&with(
        claims("pretender"),
        json!({"preferred_username": "boss"}),
    ));
    let (status, profile) = me(&server, &token).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["handle"], "boss_2");
    assert_eq!(profile["role"], "member");
    // The operator can still make the real admin under that handle.
    let (admin_token, _) = server.server.admin("boss").await;
    let (_, admin) = me(&server, &admin_token).await;
    assert_eq!(admin["role"], "admin");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_bad_public_key_file_stops_the_server_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "this is not a PEM key\n").expect("write");
    for (path, want) in [
        (not_a_key, "MESHI_JWT_PUBLIC_KEY_FILE"),
        (dir.path().join("missing.pem"), "MESHI_JWT_PUBLIC_KEY_FILE"),
    ] {
        let mut config = test_config(format!(
            "sqlite://{}",
            dir.path().join("meshi.db").display()
        ));
        config.jwt_public_key_file = Some(path);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            meshi::serve(listener, config, std::future::pending()),
        )
        .await
        .expect("refuses at once");
        let err = result.expect_err("a bad key file must stop the start");
        assert!(err.to_string().contains(want), "{err}");
    }
    assert!(
        !dir.path().join("meshi.db").exists(),
        "the refusal comes before the database is touched"
    );
}

#[tokio::test]
async fn sign_on_races_resolve_on_postgres() {
    let (keys, public_key) = public_key_file();
    let server = TestServer::start_on_postgres(|config| sso_config(config, public_key)).await;
    let token = rs256(&with(
        claims("pg-racer"),
        json!({"preferred_username": "pg_racer"}),
    ));
    let answers = futures_util::future::join_all((0..10).map(|_| me(&server, &token))).await;
    let racer_id = answers[0].1["id"].clone();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["id"], racer_id);
        assert_eq!(body["handle"], "pg_racer");
    }
    let tokens: Vec<String> = (0..10)
        .map(|i| {
            hs256(&with(
                claims(&format!("pg-crowd-{i}")),
                json!({"preferred_username": "pg_crowd"}),
            ))
        })
        .collect();
    let answers = futures_util::future::join_all(tokens.iter().map(|t| me(&server, t))).await;
    let mut handles: Vec<&str> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["handle"].as_str().expect("handle")
        })
        .collect();
    handles.sort_unstable();
    handles.dedup();
    assert_eq!(handles.len(), 10, "{handles:?}");
    let mut client = WsClient::connect(&server).await;
    let hello = client.ok(json!({"type": "hello", "token": token})).await;
    assert_eq!(hello["user"]["id"], racer_id);
    client.close().await;
    server.shutdown().await;
    drop(keys);
}

// ---- the built binary -------------------------------------------------

/// The built binary with a clean `MESHI_*` environment, run in `dir` so a
/// stray default database lands in a throwaway place, on a port of its
/// own choosing.
fn meshi(dir: &Path, args: &[&str]) -> Command {
    let mut command = binary::command(dir, args);
    command.env("MESHI_ADDR", "127.0.0.1:0");
    command
}

#[test]
fn production_refuses_to_start_naming_every_missing_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = meshi(dir.path(), &["serve"]);
    command.env("MESHI_ENV", "production");
    let done = assert_refused(
        command,
        &[
            "MESHI_DATABASE_URL",
            "MESHI_JWT_SECRET",
            "MESHI_JWT_SECRET_FILE",
            "MESHI_JWT_PUBLIC_KEY_FILE",
            "MESHI_JWT_AUDIENCE",
        ],
        &[],
    );
    // Both on one line: every missing name at once, not one per attempt.
    assert!(
        done.stderr
            .lines()
            .any(|l| l.contains("MESHI_DATABASE_URL") && l.contains("MESHI_JWT_PUBLIC_KEY_FILE")),
        "{}",
        done.stderr
    );
    assert!(
        !dir.path().join("meshi.db").exists(),
        "a refused start touches no database"
    );

    let mut command = meshi(dir.path(), &["serve", "--production"]);
    command.env(
        "MESHI_DATABASE_URL",
        format!("sqlite://{}", dir.path().join("prod.db").display()),
    );
    assert_refused(
        command,
        &["MESHI_JWT_SECRET", "MESHI_JWT_PUBLIC_KEY_FILE"],
        &["MESHI_DATABASE_URL"],
    );
    assert!(
        !dir.path().join("prod.db").exists(),
        "a refused start touches no database"
    );

    let mut command = meshi(dir.path(), &["serve", "--production"]);
    command
        .env("MESHI_JWT_SECRET", SECRET)
        .env("MESHI_JWT_AUDIENCE", AUDIENCE);
    let done = assert_refused(command, &["MESHI_DATABASE_URL"], &["MESHI_JWT"]);
    assert!(
        !done.stderr.contains(SECRET) && !done.stdout.contains(SECRET),
        "the secret never shows"
    );
}

#[test]
fn a_short_jwt_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = meshi(dir.path(), &["serve"]);
    command.env("MESHI_JWT_SECRET", "too-short");
    let done = assert_refused(command, &["MESHI_JWT_SECRET", "32 bytes"], &[]);
    assert!(!done.stderr.contains("too-short") && !done.stdout.contains("too-short"));
}

/// Production with every secret from files starts, serves a JWT, and
/// never prints the secret or the token, even with debug logs.
#[tokio::test]
async fn production_starts_with_secrets_from_files_and_never_logs_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret");
    let (_keys, public_key) = public_key_file();
    let mut command = meshi(dir.path(), &["serve", "--production"]);
    command
        .env(
            "MESHI_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("prod.db").display()),
        )
        .env("MESHI_JWT_SECRET_FILE", &secret_file)
        .env("MESHI_JWT_PUBLIC_KEY_FILE", &public_key)
        .env("MESHI_JWT_ISSUER", ISSUER)
        .env("MESHI_JWT_AUDIENCE", AUDIENCE)
        .env("MESHI_LOG_FORMAT", "json")
        .env("MESHI_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawn the meshi binary");
    let mut child = KillOnDrop(child);
    let (tx, lines) = mpsc::channel();
    let output = Arc::new(Mutex::new(String::new()));
    let out_reader = collect_lines(
        child.0.stdout.take().expect("stdout"),
        tx.clone(),
        output.clone(),
    );
    let err_reader = collect_lines(child.0.stderr.take().expect("stderr"), tx, output.clone());

    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let addr = tokio::task::spawn_blocking(move || loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the server logs `listening` within the time limit");
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        // JSON lines are flat: an event's fields beside its level and time.
        if entry["message"] == "listening" {
            break entry["addr"].as_str().expect("addr").to_owned();
        }
    })
    .await
    .expect("the reader thread");

    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let mut ready = false;
    for _ in 0..100 {
        if http
            .get(url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the production server became healthy");
    let tokens = [
        hs256(&with(
            claims("prod-user"),
            json!({"preferred_username": "prod_user"}),
        )),
        rs256(&claims("prod-user")),
    ];
    for token in &tokens {
        let resp = http
            .get(url("/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("me");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["handle"], "prod_user");
    }
    let refused = hs256(&with(
        claims("prod-user"),
        json!({"exp": now_secs() - 3600}),
    ));
    let resp = http
        .get(url("/api/v1/me"))
        .bearer_auth(&refused)
        .send()
        .await
        .expect("me");
    assert_eq!(resp.status(), 401);

    assert!(child.0.try_wait().expect("poll").is_none(), "still serving");
    drop(child);
    let _ = out_reader.join();
    let _ = err_reader.join();
    let output = output.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(output.contains("serving"), "the logs were read:\n{output}");
    assert!(
        !output.contains(SECRET),
        "the secret never shows:\n{output}"
    );
    for token in tokens.iter().chain([&refused]) {
        let signature = token.rsplit('.').next().expect("signature");
        assert!(!output.contains(signature), "no token shows:\n{output}");
    }
}

#[tokio::test]
async fn a_provider_account_deletes_itself_without_a_password_and_its_token_opens_nothing() {
    let server = sso_server().await;
    let token = hs256(&with(
        claims("hs|gone"),
        json!({"preferred_username": "gone"}),
    ));
    let (status, profile) = me(&server, &token).await;
    assert_eq!(status, 200, "{profile}");
    let (status, body) = server
        .post(
            "/api/v1/auth/password",
            Some(&token),
            json!({"current_password": "whatever it is", "new_password": "a new password"}),
        )
        .await;
    assert_eq!(status, 400, "no password to change: {body}");
    let (status, body) = server.delete("/api/v1/me", &token).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = me(&server, &token).await;
    assert_eq!(status, 401, "the still-valid token opens nothing: {body}");
    assert_hello_refused(&server, &token, "deleted account").await;
    server.server.shutdown().await;
}
