//! `meshi config check`: the effective configuration, secrets redacted,
//! and a non-zero exit on an invalid one, without starting anything.

use crate::common::binary::{self, assert_refused};

#[tokio::test]
async fn config_check_prints_every_setting_redacted_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = binary::command(dir.path(), &["config", "check"]);
    command
        .env(
            "MESHI_DATABASE_URL",
            "postgres://meshi:hunter2-pw@127.0.0.1:1/meshi",
        )
        .env("MESHI_JWT_SECRET", "a-jwt-secret-of-thirty-two-bytes!")
        .env("MESHI_ROOM_HISTORY", "777");
    let done = tokio::task::spawn_blocking(move || binary::run_with_timeout(command))
        .await
        .expect("the check ran");
    assert!(done.status.success(), "{}\n{}", done.stdout, done.stderr);
    for line in [
        "MESHI_ROOM_HISTORY=777  (environment)",
        "MESHI_ADDR=127.0.0.1:8080  (default)",
        "MESHI_DATABASE_URL=postgres://meshi:<redacted>@127.0.0.1:1/meshi  (environment)",
        "MESHI_JWT_SECRET=<redacted>  (environment)",
        "the configuration is valid",
    ] {
        assert!(
            done.stdout.lines().any(|l| l == line),
            "{line} in:\n{}",
            done.stdout
        );
    }
    for secret in ["hunter2-pw", "a-jwt-secret-of-thirty-two-bytes!"] {
        assert!(
            !done.stdout.contains(secret) && !done.stderr.contains(secret),
            "a secret is printed:\n{}",
            done.stdout
        );
    }

    let mut invalid = binary::command(dir.path(), &["config", "check"]);
    invalid.env("MESHI_RATE_PER_SEC", "0");
    tokio::task::spawn_blocking(move || {
        assert_refused(invalid, &["MESHI_RATE_PER_SEC"], &[]);
    })
    .await
    .expect("the check ran");
}
