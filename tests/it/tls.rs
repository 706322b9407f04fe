//! TLS to the backing services: meshi on a Postgres that presents a
//! certificate of a CA made here, checked by `sslmode` with the CA named in
//! the URL or by `MESHI_DATABASE_CA_FILE`; two nodes on a TLS-only Redis
//! (`rediss://`, `MESHI_REDIS_CA_FILE`); and a CA that signed nothing here
//! refused by both, with a message naming the certificate.
//!
//! Each test runs its own Postgres or Redis (see `crate::common::services`)
//! and fails, saying what to install, when their binaries are missing; the
//! Redis test also needs the shared Postgres.

use std::path::Path;
use std::time::Duration;

use meshi::config::Config;
use sqlx::Connection;

use crate::common::binary::{self, assert_refused};
use crate::common::certs::TestCerts;
use crate::common::chat::{create_room, join, relay};
use crate::common::postgres::fresh_database;
use crate::common::services::{random_prefix, ThrowawayPostgres, ThrowawayRedis};
use crate::common::{test_config, TestServer};

async fn tls_postgres(certs: &TestCerts) -> ThrowawayPostgres {
    ThrowawayPostgres::start_with_tls(certs)
        .await
        .unwrap_or_else(|| {
            panic!(
                "this test runs its own Postgres and needs initdb and postgres under \
             /usr/lib/postgresql/<version>/bin; install them with `apt-get install postgresql`"
            )
        })
}

/// `database` on `pg` with `query` after the `?`.
async fn database_url(pg: &ThrowawayPostgres, database: &str, query: &str) -> String {
    format!("{}?{query}", pg.create_database(database).await)
}

/// Whether each session Postgres holds on `database` is encrypted, as the
/// server itself reports it.
async fn sessions_encrypted(pg: &ThrowawayPostgres, database: &str) -> Vec<bool> {
    let mut admin = sqlx::PgConnection::connect(&pg.admin_url())
        .await
        .expect("connect to the throwaway postgres as its admin");
    let rows: Vec<(bool,)> = sqlx::query_as(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1",
    )
    .bind(database)
    .fetch_all(&mut admin)
    .await
    .expect("read pg_stat_ssl");
    let _ = admin.close().await;
    rows.into_iter().map(|(ssl,)| ssl).collect()
}

/// A server on `config`'s database answers, keeps an account, and holds
/// only encrypted sessions on `database`.
async fn assert_serves_over_tls(pg: &ThrowawayPostgres, database: &str, config: Config) {
    let server = TestServer::start_on(config, tempfile::tempdir().expect("temp dir")).await;
    let (status, ready) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "readyz answered {ready}");
    assert_eq!(ready["database"], "ok", "readyz body {ready}");
    let (token, id) = server.register("tls_user").await;
    let (status, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "me answered {me}");
    assert_eq!(me["id"], id.as_str());

    let sessions = sessions_encrypted(pg, database).await;
    assert!(
        !sessions.is_empty() && sessions.iter().all(|ssl| *ssl),
        "meshi's sessions on {database} are all TLS: pg_stat_ssl says {sessions:?}"
    );
    server.shutdown().await;
}

/// What `meshi::serve` fails with on `config`; it must fail, and soon.
async fn serve_refused(config: Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let served = tokio::time::timeout(
        Duration::from_secs(20),
        meshi::serve(listener, config, std::future::pending()),
    )
    .await
    .expect("serve gives up within 20 s");
    match served {
        Ok(()) => panic!("serve must refuse this configuration"),
        Err(err) => err.to_string(),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshi_serves_on_postgres_over_tls_however_the_ca_is_named() {
    let certs = TestCerts::make();
    let pg = tls_postgres(&certs).await;
    let ca = path_str(&certs.ca);

    // The CA in the URL, host name and chain both checked.
    let url = database_url(
        &pg,
        "in_url",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    )
    .await;
    assert_serves_over_tls(&pg, "in_url", test_config(url)).await;

    // Encryption without a CA to check against.
    let url = database_url(&pg, "required", "sslmode=require").await;
    assert_serves_over_tls(&pg, "required", test_config(url)).await;

    // The CA from MESHI_DATABASE_CA_FILE, for URLs that cannot carry it.
    let url = database_url(&pg, "ca_file", "sslmode=verify-full").await;
    let mut config = test_config(url);
    config.database_ca_file = Some(certs.ca.clone());
    assert_serves_over_tls(&pg, "ca_file", config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_certificate_of_another_ca_is_refused() {
    let certs = TestCerts::make();
    let pg = tls_postgres(&certs).await;
    let other_ca = path_str(&certs.other_ca);

    let url = database_url(
        &pg,
        "wrong_ca",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    )
    .await;
    let refusal = serve_refused(test_config(url)).await;
    assert!(
        refusal.contains("certificate") && refusal.contains("UnknownIssuer"),
        "the refusal names the certificate problem: {refusal}"
    );

    // A CA makes `require` check the chain, so the operator who names
    // one is not served by a server it did not sign: from the URL here,
    // and below from the environment an operator sets, through the binary.
    let url = database_url(
        &pg,
        "wrong_ca_required",
        &format!("sslmode=require&sslrootcert={other_ca}"),
    )
    .await;
    let refusal = serve_refused(test_config(url)).await;
    assert!(
        refusal.contains("UnknownIssuer"),
        "the refusal names the certificate problem: {refusal}"
    );
    let url = database_url(&pg, "wrong_ca_file", "sslmode=require").await;
    let mut command = binary::command(certs.dir(), &["serve"]);
    command
        .env("MESHI_ADDR", "127.0.0.1:0")
        .env("MESHI_DATABASE_URL", &url)
        .env("MESHI_DATABASE_CA_FILE", &certs.other_ca);
    tokio::task::spawn_blocking(move || {
        assert_refused(command, &["certificate", "UnknownIssuer"], &[]);
    })
    .await
    .expect("the binary ran");
}

/// Node `node` of a cluster on `database_url` and `redis`, its CA unset.
fn node_config(database_url: &str, redis: &ThrowawayRedis, prefix: &str, node: &str) -> Config {
    let mut config = test_config(database_url.to_owned());
    config.redis_url = Some(redis.url());
    config.redis_prefix = prefix.to_owned();
    config.node_id = Some(node.to_owned());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_rooms_over_a_tls_only_redis() {
    let certs = TestCerts::make();
    let redis = ThrowawayRedis::start_with_tls(&certs).await;
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    let database = fresh_database().await;
    let prefix = random_prefix();

    let mut servers = Vec::new();
    for node in ["tls-1", "tls-2"] {
        let mut config = node_config(&database, &redis, &prefix, node);
        config.redis_ca_file = Some(certs.ca.clone());
        servers.push(TestServer::start_on(config, tempfile::tempdir().expect("temp dir")).await);
    }
    for server in &servers {
        let (status, ready) = server.readyz().await;
        assert_eq!(status, 200, "readyz of {} answered {ready}", server.addr);
    }

    let (mut alice, _, _) = servers[0].user("alice").await;
    let (mut bob, _, _) = servers[1].user("bob").await;
    let room = create_room(&mut alice, "over tls").await;
    join(&mut bob, &room).await;
    relay(&mut alice, &mut [("bob", &mut bob)], &room, "sealed").await;

    for server in servers {
        server.shutdown().await;
    }

    // A node that trusts another CA does not join.
    let mut config = node_config(&database, &redis, &prefix, "tls-3");
    config.redis_ca_file = Some(certs.other_ca.clone());
    let refusal = serve_refused(config).await;
    assert!(
        refusal.contains("certificate"),
        "the refusal names the certificate problem: {refusal}"
    );
}

#[tokio::test]
async fn config_check_shows_the_ca_files_and_refuses_what_is_not_a_certificate() {
    let certs = TestCerts::make();
    let ca = certs.ca.clone();
    let url = format!(
        "postgres://meshi:pg-secret@127.0.0.1:1/meshi?sslmode=verify-full&password=query-secret&sslrootcert={}",
        path_str(&ca)
    );
    let mut command = binary::command(certs.dir(), &["config", "check"]);
    command
        .env("MESHI_DATABASE_URL", &url)
        .env("MESHI_DATABASE_CA_FILE", &ca)
        .env("MESHI_REDIS_URL", "rediss://:redis-secret@127.0.0.1:1")
        .env("MESHI_REDIS_CA_FILE", &ca);
    let done = tokio::task::spawn_blocking(move || binary::run_with_timeout(command))
        .await
        .expect("the check ran");
    assert!(done.status.success(), "{}\n{}", done.stdout, done.stderr);
    for line in [
        format!("MESHI_DATABASE_CA_FILE={}  (environment)", ca.display()),
        format!("MESHI_REDIS_CA_FILE={}  (environment)", ca.display()),
        "MESHI_REDIS_URL=rediss://:<redacted>@127.0.0.1:1  (environment)".to_owned(),
        format!(
            "MESHI_DATABASE_URL=postgres://meshi:<redacted>@127.0.0.1:1/meshi\
             ?sslmode=verify-full&password=<redacted>&sslrootcert={}  (environment)",
            ca.display()
        ),
        "the configuration is valid".to_owned(),
    ] {
        assert!(
            done.stdout.lines().any(|l| l == line),
            "{line} in:\n{}",
            done.stdout
        );
    }
    for secret in ["pg-secret", "query-secret", "redis-secret"] {
        assert!(
            !done.stdout.contains(secret) && !done.stderr.contains(secret),
            "{secret} is printed:\n{}\n{}",
            done.stdout,
            done.stderr
        );
    }

    let not_a_certificate = certs.dir().join("notes.txt");
    std::fs::write(&not_a_certificate, "not a certificate\n").expect("write a text file");
    let refused = [
        ("MESHI_DATABASE_CA_FILE", certs.dir().join("missing.pem")),
        ("MESHI_REDIS_CA_FILE", certs.dir().join("missing.pem")),
        // PEM, but a key rather than a certificate.
        ("MESHI_DATABASE_CA_FILE", certs.server_key.clone()),
        ("MESHI_REDIS_CA_FILE", not_a_certificate),
    ];
    for (name, file) in refused {
        let mut command = binary::command(certs.dir(), &["config", "check"]);
        command
            .env(
                "MESHI_DATABASE_URL",
                "postgres://meshi@127.0.0.1:1/meshi?sslmode=verify-full",
            )
            .env("MESHI_REDIS_URL", "rediss://127.0.0.1:1")
            .env(name, &file);
        let file = file.display().to_string();
        tokio::task::spawn_blocking(move || {
            assert_refused(command, &[name, &file], &[]);
        })
        .await
        .expect("the check ran");
    }

    // A CA file beside a URL that would not use it is a mistake to say.
    let unused = [
        (
            "MESHI_REDIS_URL",
            "redis://127.0.0.1:1",
            "MESHI_REDIS_CA_FILE",
        ),
        (
            "MESHI_DATABASE_URL",
            "sqlite://meshi.db",
            "MESHI_DATABASE_CA_FILE",
        ),
        // Below `require` Postgres checks no certificate, CA or not.
        (
            "MESHI_DATABASE_URL",
            "postgres://meshi@127.0.0.1:1/meshi",
            "MESHI_DATABASE_CA_FILE",
        ),
        (
            "MESHI_DATABASE_URL",
            "postgres://meshi@127.0.0.1:1/meshi?sslmode=prefer",
            "MESHI_DATABASE_CA_FILE",
        ),
    ];
    for (url_name, url, ca_name) in unused {
        let mut command = binary::command(certs.dir(), &["config", "check"]);
        command.env(url_name, url).env(ca_name, &certs.ca);
        tokio::task::spawn_blocking(move || {
            assert_refused(command, &[ca_name], &[]);
        })
        .await
        .expect("the check ran");
    }
    let mut command = binary::command(certs.dir(), &["config", "check"]);
    command.env(
        "MESHI_DATABASE_URL",
        format!(
            "postgres://meshi@127.0.0.1:1/meshi?sslmode=prefer&sslrootcert={}",
            certs.ca.display()
        ),
    );
    tokio::task::spawn_blocking(move || {
        assert_refused(command, &["sslrootcert", "sslmode=verify-full"], &[]);
    })
    .await
    .expect("the check ran");
}
