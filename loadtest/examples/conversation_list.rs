//! Times one page of `GET /conversations` (the store query behind it) for
//! a user with 10,000 conversations, on SQLite and on Postgres, with and
//! without the per-side activity indexes of migration 0016, and prints the
//! query plans. A measurement, not a test: nothing here asserts a time.
//!
//! ```sh
//! cargo run --release -p meshi-loadtest --example conversation_list
//! ```
//!
//! SQLite runs on a fresh file in a temporary directory; Postgres on a
//! fresh database of the server `MESHI_TEST_POSTGRES_URL` names (else the
//! local one the tests use), dropped afterwards. Results go to stdout as
//! the markdown BENCHMARKS.md quotes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use meshi::store::{Store, CONVERSATIONS_OF};
use sqlx::{Connection, Executor, PgConnection};

/// Conversations of the measured user.
const CONVERSATIONS: i64 = 10_000;
/// Rows per page as the handler asks: the default limit and one more.
const PAGE: u32 = 51;
/// Timed calls per figure.
const RUNS: usize = 200;
/// How many of the user's conversations lie above the deep page.
const DEEP: i64 = 9_900;
/// Each other user shares a conversation with this many next users.
const SPREAD: i64 = 10;

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    measure("SQLite", &sqlite_url).await?;

    let admin = meshi_testkit::postgres_admin_url().to_owned();
    let name = format!("meshi_bench_conversations_{}", std::process::id());
    let mut conn = PgConnection::connect(&admin)
        .await
        .with_context(|| format!("connect to {admin}"))?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let base = admin.rsplit_once('/').context("admin URL ends in /db")?.0;
    let outcome = measure("Postgres", &format!("{base}/{name}")).await;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    outcome
}

async fn measure(backend: &str, url: &str) -> Result<()> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let seeding = Instant::now();
    let hub = seed(url).await?;
    println!(
        "### {backend}: seeded in {:.1} s\n",
        seeding.elapsed().as_secs_f64()
    );
    let deep = deep_cursor(url, hub).await?;

    println!("| index | page | median | p95 | rows |\n|---|---|---|---|---|");
    for indexed in [true, false] {
        if !indexed {
            run_sql(
                url,
                &[
                    "DROP INDEX conversations_low_activity",
                    "DROP INDEX conversations_high_activity",
                    "ANALYZE",
                ],
            )
            .await?;
        }
        let label = if indexed { "with" } else { "without" };
        for (page, cursor) in [("first", None), ("deep (after 9,900)", Some(deep))] {
            let (median, p95, rows) = time_page(&store, hub, cursor).await?;
            println!(
                "| {label} | {page} | {} | {} | {rows} |",
                ms(median),
                ms(p95)
            );
        }
        for (page, cursor) in [("first", i64::MAX), ("deep", deep)] {
            let plan = explain(url, hub, cursor).await?;
            eprintln!("--- {backend}, {label} index, {page} page:\n{plan}");
        }
    }
    println!();
    store.close().await;
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn time_page(
    store: &Store,
    hub: i64,
    cursor: Option<i64>,
) -> Result<(Duration, Duration, usize)> {
    // Warm the caches the way a busy server has them.
    let rows = store.conversations_of(hub, cursor, PAGE).await?.len();
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        store.conversations_of(hub, cursor, PAGE).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[RUNS / 2], times[RUNS * 95 / 100], rows))
}

/// 10,001 users; the middle one (the hub) shares a conversation with
/// every other, half as `user_low` and half as `user_high`; about 100,000
/// more conversations between the others (each with its next
/// [`SPREAD`] users) make the hub's share of the table a tenth, as on a
/// server with many users. Activity is scattered, so id order says
/// nothing about it.
async fn seed(url: &str) -> Result<i64> {
    let users = CONVERSATIONS + 1;
    let statements = [
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users}) \
             INSERT INTO users (handle, display_name, created_at) \
             SELECT 'u' || CAST(i AS TEXT), 'User', 0 FROM n ORDER BY i"
        ),
        // Activity is the rank of a multiplicative hash of the pair, so it
        // is unique and both sides of the hub's pairs interleave in it.
        // Rows are stored in pair order, not activity order, as matches
        // and later messages leave them; stored in activity order, the
        // planner would find the global activity index as good as the
        // per-side ones only because the table happened to be sorted.
        format!(
            "WITH RECURSIVE d(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM d WHERE j < {SPREAD}) \
             INSERT INTO conversations \
             (user_low, user_high, created_at, last_activity, activity_seq) \
             SELECT lo, hi, 0, 1700000000000 + k, k FROM ( \
               SELECT lo, hi, ROW_NUMBER() OVER \
                 (ORDER BY ((lo * 100003 + hi) * 2654435761) % 1000000007, lo, hi) AS k FROM ( \
                 SELECT CASE WHEN h.id < u.id THEN h.id ELSE u.id END AS lo, \
                        CASE WHEN h.id < u.id THEN u.id ELSE h.id END AS hi \
                 FROM users h JOIN users u ON u.id <> h.id WHERE h.handle = 'u5001' \
                 UNION ALL \
                 SELECT a.id, b.id FROM users a JOIN d ON 1 = 1 JOIN users b ON b.id = a.id + d.j \
                 WHERE a.handle <> 'u5001' AND b.handle <> 'u5001' \
               ) AS pairs \
             ) AS keyed ORDER BY lo, hi"
        ),
        "ANALYZE".to_owned(),
    ];
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    run_sql(url, &statements).await?;
    let hub = query_i64(url, "SELECT id FROM users WHERE handle = 'u5001'").await?;
    Ok(hub)
}

/// The cursor that starts the page after the hub's first [`DEEP`].
async fn deep_cursor(url: &str, hub: i64) -> Result<i64> {
    query_i64(
        url,
        &format!(
            "SELECT activity_seq FROM conversations WHERE user_low = {hub} OR user_high = {hub} \
             ORDER BY activity_seq DESC LIMIT 1 OFFSET {}",
            DEEP - 1
        ),
    )
    .await
}

async fn run_sql(url: &str, statements: &[&str]) -> Result<()> {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        for sql in statements {
            conn.execute(*sql).await.with_context(|| sql.to_string())?;
        }
    } else {
        let mut conn = PgConnection::connect(url).await?;
        for sql in statements {
            conn.execute(*sql).await.with_context(|| sql.to_string())?;
        }
    }
    Ok(())
}

async fn query_i64(url: &str, sql: &str) -> Result<i64> {
    let (value,): (i64,) = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query_as(sql).fetch_one(&mut conn).await?
    } else {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query_as(sql).fetch_one(&mut conn).await?
    };
    Ok(value)
}

/// The plan of the store's query: SQLite's `EXPLAIN QUERY PLAN`, or
/// Postgres's `EXPLAIN ANALYZE` with these parameters.
async fn explain(url: &str, hub: i64, cursor: i64) -> Result<String> {
    let lines: Vec<String> = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {CONVERSATIONS_OF}"))
                .bind(hub)
                .bind(cursor)
                .bind(i64::from(PAGE))
                .fetch_all(&mut conn)
                .await?;
        rows.into_iter().map(|(_, _, _, detail)| detail).collect()
    } else {
        let mut conn = PgConnection::connect(url).await?;
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {CONVERSATIONS_OF}"
        ))
        .bind(hub)
        .bind(cursor)
        .bind(i64::from(PAGE))
        .fetch_all(&mut conn)
        .await?;
        rows.into_iter().map(|(line,)| line).collect()
    };
    Ok(lines.join("\n"))
}
