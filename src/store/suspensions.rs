//! Suspended accounts: the suspension itself, the sessions it ends, and
//! the lookups authentication, the revocation sweep and the admin listing
//! make. A user is suspended while `users.suspended_until` is after now.

use super::accounts::{SessionRow, UserRow};
use super::audit::{AuditRow, NewAudit};
use super::cards::like_pattern;
use super::measured;
use super::{on_pool, Store, StoreError};

/// Appends a [`NewAudit`] inside the caller's transaction, on either
/// backend (the body is expanded once per pool type by `on_pool!`).
macro_rules! insert_audit {
    ($tx:expr, $audit:expr) => {{
        let audit: NewAudit<'_> = $audit;
        sqlx::query_as::<_, AuditRow>(
            "INSERT INTO audit_log (actor_id, action, target, data, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, actor_id, action, target, data, created_at",
        )
        .bind(audit.actor_id)
        .bind(audit.action)
        .bind(audit.target)
        .bind(audit.data)
        .bind(audit.now)
        .fetch_one(&mut *$tx)
        .await
    }};
}
pub(super) use insert_audit;

/// Why a suspension's UPDATE matched no row, inside its transaction: the
/// user is gone, or their role changed since the caller's right to act
/// was judged.
macro_rules! missed {
    ($tx:expr, $user_id:expr) => {{
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
            .bind($user_id)
            .fetch_optional(&mut *$tx)
            .await?;
        if exists.is_some() {
            Suspension::RoleChanged
        } else {
            Suspension::NoSuchUser
        }
    }};
}

/// What a suspension without an end stores: 9999-12-31T23:59:59.999Z, the
/// last instant RFC 3339 can write, so it still shows as a time.
pub const SUSPENDED_INDEFINITELY: i64 = 253_402_300_799_999;

/// A user as the admin listing shows them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListedUser {
    #[sqlx(flatten)]
    pub user: UserRow,
    /// Set only while the suspension lasts; a lapsed one reads as `None`.
    pub suspended_until: Option<i64>,
}

/// Which users the admin listing shows; newest account first.
#[derive(Debug, Clone, Copy)]
pub struct UserFilter<'a> {
    /// Part of the handle or display name, any case.
    pub text: Option<&'a str>,
    pub role: Option<&'a str>,
    pub suspended: Option<bool>,
    pub before_id: Option<i64>,
    pub limit: u32,
    pub now: i64,
}

/// What suspending or lifting came to.
#[derive(Debug, Clone)]
pub enum Suspension {
    Done(AuditRow),
    NoSuchUser,
    /// The user's role is no longer the one the caller's right to act was
    /// judged by (someone changed it meanwhile); nothing was written.
    RoleChanged,
}

/// What a bearer token of ours comes to.
#[derive(Debug, Clone)]
pub enum TokenLookup {
    Live(SessionRow, UserRow),
    /// Its user is suspended until then, whatever the session's state.
    Suspended {
        until: i64,
    },
    /// Unknown, revoked or expired.
    Ended,
}

impl Store {
    /// The session behind a token hash, with its user's suspension weighed
    /// in the same read: a session made while a suspension was being
    /// written (a login racing it) still opens nothing.
    pub async fn session_for_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<TokenLookup, StoreError> {
        measured("session_for_token", async {
            #[derive(sqlx::FromRow)]
            struct Row {
                session_id: i64,
                expires_at: i64,
                revoked_at: Option<i64>,
                suspended_until: Option<i64>,
                #[sqlx(flatten)]
                user: UserRow,
            }
            let sql = "SELECT s.id AS session_id, s.expires_at, s.revoked_at, u.suspended_until, \
                       u.id, u.handle, u.display_name, u.bio, u.tags, u.role, u.created_at \
                       FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1";
            let row = on_pool!(self, pool => sqlx::query_as::<_, Row>(sql).bind(token_hash).fetch_optional(pool).await)?;
            let Some(row) = row else {
                return Ok(TokenLookup::Ended);
            };
            if row.expires_at <= now {
                return Ok(TokenLookup::Ended);
            }
            if let Some(until) = row.suspended_until.filter(|until| *until > now) {
                return Ok(TokenLookup::Suspended { until });
            }
            if row.revoked_at.is_some() {
                return Ok(TokenLookup::Ended);
            }
            let session = SessionRow {
                id: row.session_id,
                user_id: row.user.id,
                expires_at: row.expires_at,
            };
            Ok(TokenLookup::Live(session, row.user))
        })
        .await
    }

    /// Until when `user_id` is suspended, if they are at `now`.
    pub async fn suspension_of(&self, user_id: i64, now: i64) -> Result<Option<i64>, StoreError> {
        measured("suspension_of", async {
            let until: Option<Option<i64>> = on_pool!(self, pool => sqlx::query_scalar(
                "SELECT suspended_until FROM users WHERE id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await)?;
            Ok(until.flatten().filter(|until| *until > now))
        })
        .await
    }

    /// Of `user_ids`, those suspended at `now`.
    pub async fn suspended_among(
        &self,
        user_ids: &[i64],
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        measured("suspended_among", async {
            let mut suspended = Vec::new();
            // Well under either backend's limit on bound parameters.
            for chunk in user_ids.chunks(500) {
                let placeholders: Vec<String> =
                    (2..=chunk.len() + 1).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT id FROM users WHERE suspended_until > $1 AND id IN ({})",
                    placeholders.join(", ")
                );
                let found: Vec<i64> = on_pool!(self, pool => {
                    let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(now);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query.fetch_all(pool).await
                })?;
                suspended.extend(found);
            }
            Ok(suspended)
        })
        .await
    }

    /// Suspends `user_id`, whose role is still `role`, until `until`, ends
    /// every session they have and records it, all or nothing.
    pub async fn suspend_user(
        &self,
        user_id: i64,
        role: &str,
        until: i64,
        reason: &str,
        audit: NewAudit<'_>,
    ) -> Result<Suspension, StoreError> {
        measured("suspend_user", async {
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let found = sqlx::query(
                    "UPDATE users SET suspended_until = $1, suspension_reason = $2 \
                     WHERE id = $3 AND role = $4",
                )
                .bind(until)
                .bind(reason)
                .bind(user_id)
                .bind(role)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if found == 0 {
                    return Ok(missed!(tx, user_id));
                }
                let ended = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                )
                .bind(audit.now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let entry = insert_audit!(tx, audit)?;
                tx.commit().await?;
                super::accounts::count_revoked("suspended", ended);
                Ok(Suspension::Done(entry))
            })
        })
        .await
    }

    /// Lifts any suspension of `user_id`, whose role is still `role`, and
    /// records it. Ended sessions stay ended.
    pub async fn unsuspend_user(
        &self,
        user_id: i64,
        role: &str,
        audit: NewAudit<'_>,
    ) -> Result<Suspension, StoreError> {
        measured("unsuspend_user", async {
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let found = sqlx::query(
                    "UPDATE users SET suspended_until = NULL, suspension_reason = NULL \
                     WHERE id = $1 AND role = $2",
                )
                .bind(user_id)
                .bind(role)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if found == 0 {
                    return Ok(missed!(tx, user_id));
                }
                let entry = insert_audit!(tx, audit)?;
                tx.commit().await?;
                Ok(Suspension::Done(entry))
            })
        })
        .await
    }

    /// Users by `filter`, newest account first; fetches `limit` rows.
    pub async fn list_users(&self, filter: UserFilter<'_>) -> Result<Vec<ListedUser>, StoreError> {
        measured("list_users", async {
            // `$5` is now: a suspension that has lapsed lists as none, and
            // `suspended=false` finds it.
            let sql = "SELECT id, handle, display_name, bio, tags, role, created_at, \
                       CASE WHEN suspended_until > $5 THEN suspended_until END AS suspended_until \
                       FROM users WHERE id < $1 \
                       AND (CAST($2 AS TEXT) IS NULL OR LOWER(handle) LIKE $2 ESCAPE '\\' \
                           OR LOWER(display_name) LIKE $2 ESCAPE '\\') \
                       AND (CAST($3 AS TEXT) IS NULL OR role = $3) \
                       AND (CAST($4 AS INTEGER) IS NULL \
                           OR ($4 = 1) = (suspended_until IS NOT NULL AND suspended_until > $5)) \
                       ORDER BY id DESC LIMIT $6";
            let pattern = filter.text.map(like_pattern);
            let suspended = filter.suspended.map(i32::from);
            Ok(on_pool!(self, pool => sqlx::query_as::<_, ListedUser>(sql)
                .bind(filter.before_id.unwrap_or(i64::MAX))
                .bind(pattern.as_deref())
                .bind(filter.role)
                .bind(suspended)
                .bind(filter.now)
                .bind(i64::from(filter.limit))
                .fetch_all(pool)
                .await)?)
        })
        .await
    }
}
