//! Production mode of the built binary: a bare `meshi` honours
//! `MESHI_DATABASE_URL`, a JWT key without an audience is refused, unsafe
//! omissions are warned about by name, and `/metrics` can move to an
//! address of its own.

use std::path::Path;
use std::process::Command;

use crate::common::binary::{self, Running};
use crate::common::free_port;

/// A random HS256 secret of 64 hex digits.
fn secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A bare `meshi` in production with everything production asks for.
fn production(dir: &Path) -> Command {
    let mut command = binary::command(dir, &[]);
    command
        .env("MESHI_ENV", "production")
        .env(
            "MESHI_DATABASE_URL",
            format!("sqlite://{}", dir.join("prod.db").display()),
        )
        .env("MESHI_JWT_SECRET", secret())
        .env("MESHI_JWT_AUDIENCE", "meshi-test");
    command
}

#[tokio::test]
async fn a_bare_meshi_in_production_runs_on_the_database_url_it_is_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = Running::start(production(dir.path()), dir.path()).await;
    let ready = reqwest::get(running.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 200);
    assert!(
        dir.path().join("prod.db").exists(),
        "the named database is used"
    );
    assert!(
        !dir.path().join("meshi.db").exists(),
        "the default database is not touched"
    );
    let output = running.stop();
    // Unsafe omissions are named at start.
    for named in ["MESHI_ALLOWED_ORIGINS", "MESHI_METRICS_ADDR"] {
        assert!(
            output
                .lines()
                .any(|l| l.contains("WARN") && l.contains(named)),
            "a warning names {named}:\n{output}"
        );
    }
}

#[tokio::test]
async fn production_with_origins_and_a_metrics_address_warns_of_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut command = production(dir.path());
    command
        .env("MESHI_ALLOWED_ORIGINS", "https://meshi.example")
        .env("MESHI_METRICS_ADDR", &metrics_addr);
    let running = Running::start(command, dir.path()).await;

    let public = reqwest::get(running.url("/metrics"))
        .await
        .expect("metrics");
    assert_eq!(
        public.status(),
        404,
        "metrics are not on the public address"
    );
    let private = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("metrics on their own address");
    assert_eq!(private.status(), 200);
    let text = private.text().await.expect("metrics text");
    assert!(text.contains("# TYPE"), "Prometheus text:\n{text}");
    let other = reqwest::get(format!("http://{metrics_addr}/api/v1/cards"))
        .await
        .expect("the metrics address answers");
    assert_eq!(
        other.status(),
        404,
        "the metrics address serves nothing else"
    );

    let output = running.stop();
    assert!(
        !output.contains("WARN"),
        "nothing left to warn about:\n{output}"
    );
}

#[test]
fn production_refuses_a_jwt_key_without_an_audience() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = production(dir.path());
    command.env_remove("MESHI_JWT_AUDIENCE");
    command.env("MESHI_ADDR", "127.0.0.1:0");
    binary::assert_refused(command, &["MESHI_JWT_AUDIENCE"], &[]);
    assert!(!dir.path().join("prod.db").exists(), "nothing was touched");
}
