//! A throwaway Postgres database per test on the shared server, which
//! `meshi_testkit` finds or starts.

use sqlx::{Connection, Executor, PgConnection};

pub fn admin_url() -> String {
    meshi_testkit::postgres_admin_url().to_owned()
}

/// Creates an empty database and returns its URL. Fails, saying how to
/// start Postgres, when the server cannot be reached.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "Postgres is needed for this test and is unreachable at {admin} ({e}). Start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, stop \
             whatever holds 5432 so the tests start their own, or set MESHI_TEST_POSTGRES_URL."
        )
    });
    sweep_leftovers(&mut conn).await;
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

/// Drops databases left by earlier test processes that have exited, once
/// per process, so runs do not pile databases up on the shared server.
async fn sweep_leftovers(conn: &mut PgConnection) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'meshi\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for (name,) in names {
        let owner_pid = name
            .strip_prefix("meshi_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = owner_pid else { continue };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Another process may be sweeping the same one; either wins.
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}
