//! Persistence: the only module that runs SQL.
//!
//! One [`Store`] fronts either SQLite (the embedded default) or Postgres.
//! Queries are written once in the dialect both accept (`$n` parameters,
//! `RETURNING`, integer milliseconds for time) and run on whichever pool is
//! open through [`on_pool!`]; where the dialects part, the function says so.
//! Migrations live in `migrations/<backend>/` and are compiled in.

mod accounts;
mod audit;
mod blocks;
mod cards;
mod communities;
mod dm_postgres;
mod dm_rows;
mod erasure;
mod events;
mod export;
mod matches;
mod messages;
mod notifications;
mod reports;
mod suspensions;

pub use accounts::{NewUser, ProfileChanges, SessionListing, SessionRow, UserRow};
pub use audit::{
    AuditRow, NewAudit, RoleChanged, AUDIT_MESSAGE_DELETE, AUDIT_REPORT_RESOLVE, AUDIT_ROLE_CHANGE,
    AUDIT_ROOM_CLOSE, AUDIT_ROOM_KICK, AUDIT_USER_SUSPEND, AUDIT_USER_UNSUSPEND,
};
pub use blocks::{BlockRow, ConversationAccess, Unmatched};
pub use cards::{CardChanges, CardFilter, CardRow, InterestRow};
pub use communities::{
    CommunityAccess, CommunityFilter, CommunityRow, MemberRow, MembershipChange,
};
pub use dm_rows::{DmOutcome, DmRevision, DmRow, NewDm, Pair};
pub use erasure::{Erased, DELETED_DISPLAY_NAME, DELETED_HANDLE, DELETED_HANDLE_PREFIX};
pub use events::{
    Attendee, AttendeeList, EventAccess, EventChanges, EventError, EventFilter, EventRow,
    EventUpdated, Left, NewEvent, Rsvp, RsvpStatus,
};
pub use export::Export;
pub use matches::{ConversationView, MatchError, MatchRow, MatchView, Matched, CONVERSATIONS_OF};
pub use notifications::NotificationRow;
pub use reports::{Filed, NewReport, QueueFrom, ReportRow, Resolution, Resolved};
pub use suspensions::{ListedUser, Suspension, TokenLookup, UserFilter, SUSPENDED_INDEFINITELY};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; the text names what clashed.
    #[error("{0}")]
    Conflict(&'static str),
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: use sqlite:// or postgres://")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(err),
            // Postgres shutting down or restarting ends its sessions with
            // an error of class 57 (operator intervention) before the
            // socket closes; class 08 is a connection exception.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")) =>
            {
                StoreError::Unavailable(err)
            }
            _ => StoreError::Database(err),
        }
    }
}

/// Times one store operation as `meshi_db_seconds{query}` and counts its
/// database failures as `meshi_db_errors_total{query}`. The label is the
/// method's name, so it is bounded by the code, never by the data; a refusal
/// the caller expects (a clash, a missing event) is an answer, not an error.
async fn measured<T, E: Failure>(
    query: &'static str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let labels = [("query", query)];
    crate::metrics::timed(
        "meshi_db_seconds",
        "meshi_db_errors_total",
        &labels,
        Failure::is_database_failure,
        work,
    )
    .await
}

/// Whether an error of a store operation means the database failed.
trait Failure {
    fn is_database_failure(&self) -> bool;
}

impl Failure for StoreError {
    fn is_database_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Database(_) | StoreError::Migrate(_)
        )
    }
}

/// Maps a unique-constraint failure to [`StoreError::Conflict`].
fn conflict_on_unique(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => err.into(),
    }
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

/// Runs the same body against whichever pool is open. The body sees `$pool`
/// as a `&SqlitePool` or a `&PgPool`; generic sqlx calls compile for both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            crate::store::Pool::Sqlite($pool) => $body,
            crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// What a database URL cannot carry.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// PEM certificates of the authorities that sign the Postgres server's
    /// certificate; they replace the URL's `sslrootcert`.
    pub root_cert_pem: Option<Vec<u8>>,
}

impl Store {
    /// Opens a pool for `url` without touching the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Opens a pool for `url` with what `options` adds to it.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?,
            )
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    // A ping before every checkout is a round trip per
                    // query; a dead connection fails its query instead,
                    // is dropped by the pool, and `/readyz` pings anyway.
                    .test_before_acquire(false)
                    .connect_with(postgres_options(url, options)?)
                    .await?,
            )
        } else {
            return Err(StoreError::UnsupportedUrl(redact(url)));
        };
        Ok(Store { pool })
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Round trip used by `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        measured("ping", async {
            on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
            Ok(())
        })
        .await
    }

    /// The pool's connections now: open in all, and idle among them.
    pub fn pool_connections(&self) -> (u32, usize) {
        on_pool!(self, pool => (pool.size(), pool.num_idle()))
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }
}

/// `url` parsed, with the root certificates of `options`. A root
/// certificate makes `sslmode=require` check the chain as `verify-ca`
/// does, which is what libpq does: sqlx would otherwise take any
/// certificate, and an operator who names a CA means it to be checked.
fn postgres_options(url: &str, options: &ConnectOptions) -> Result<PgConnectOptions, StoreError> {
    let mut pg = PgConnectOptions::from_str(url)?;
    let names_root = crate::config::url_param(url, crate::config::ROOT_CERT_PARAMS).is_some();
    if let Some(pem) = &options.root_cert_pem {
        pg = pg.ssl_root_cert_from_pem(pem.clone());
    }
    if (names_root || options.root_cert_pem.is_some())
        && matches!(pg.get_ssl_mode(), PgSslMode::Require)
    {
        pg = pg.ssl_mode(PgSslMode::VerifyCa);
    }
    Ok(pg)
}

/// A URL fit for error messages: scheme only, never credentials.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://…"),
        None => "…".into(),
    }
}
