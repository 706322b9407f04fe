//! A throwaway Postgres database per test on the shared server.
//!
//! `MESHI_TEST_POSTGRES_URL` points at a server where the user may create
//! databases (default `postgres://postgres@127.0.0.1:5432/postgres`).

use sqlx::{Connection, Executor, PgConnection};

pub fn admin_url() -> String {
    std::env::var("MESHI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database and returns its URL. Fails, saying how to
/// start Postgres, when the server cannot be reached.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "Postgres is needed for this test and is unreachable at {admin} ({e}). Start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set \
             MESHI_TEST_POSTGRES_URL."
        )
    });
    let name = format!("meshi_test_{}_{}", std::process::id(), rand_suffix());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("MESHI_TEST_POSTGRES_URL must end in /<database>"),
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos}_{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}
