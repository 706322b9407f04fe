//! Users and their sessions.

use super::measured;
use super::{conflict_on_unique, on_pool, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    /// JSON array of strings.
    pub tags: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: i64,
    pub expires_at: i64,
}

pub struct NewUser<'a> {
    pub handle: &'a str,
    pub display_name: &'a str,
    pub password_hash: Option<&'a str>,
    pub external_sub: Option<&'a str>,
    pub role: &'a str,
    pub now: i64,
}

const HANDLE_TAKEN: &str = "handle is taken";

const USER_COLUMNS: &str = "id, handle, display_name, bio, tags, role, created_at";

impl Store {
    pub async fn create_user(&self, user: NewUser<'_>) -> Result<UserRow, StoreError> {
        measured("create_user", async {
            // A deleted account's handle is retired, never given out again.
            let sql = format!(
                "INSERT INTO users (handle, display_name, password_hash, external_sub, role, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6 \
                 WHERE NOT EXISTS (SELECT 1 FROM retired_handles WHERE handle = $1) \
                 RETURNING {USER_COLUMNS}"
            );
            let created = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(&sql)
                .bind(user.handle)
                .bind(user.display_name)
                .bind(user.password_hash)
                .bind(user.external_sub)
                .bind(user.role)
                .bind(user.now)
                .fetch_optional(pool)
                .await)
            .map_err(conflict_on_unique(HANDLE_TAKEN))?;
            created.ok_or(StoreError::Conflict(HANDLE_TAKEN))
        })
        .await
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        measured("user_by_id", async {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
            Ok(
                on_pool!(self, pool => sqlx::query_as::<_, UserRow>(&sql).bind(id).fetch_optional(pool).await)?,
            )
        })
        .await
    }

    /// The user an identity provider knows by `sub`.
    pub async fn user_by_external_sub(&self, sub: &str) -> Result<Option<UserRow>, StoreError> {
        measured("user_by_external_sub", async {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE external_sub = $1");
            Ok(
                on_pool!(self, pool => sqlx::query_as::<_, UserRow>(&sql).bind(sub).fetch_optional(pool).await)?,
            )
        })
        .await
    }

    /// The user with this handle and their password hash, for login.
    pub async fn user_with_password(
        &self,
        handle: &str,
    ) -> Result<Option<(UserRow, Option<String>)>, StoreError> {
        measured("user_with_password", async {
            #[derive(sqlx::FromRow)]
            struct Row {
                #[sqlx(flatten)]
                user: UserRow,
                password_hash: Option<String>,
            }
            let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE handle = $1");
            let row = on_pool!(self, pool => sqlx::query_as::<_, Row>(&sql).bind(handle).fetch_optional(pool).await)?;
            Ok(row.map(|r| (r.user, r.password_hash)))
        })
        .await
    }

    pub async fn set_role(&self, user_id: i64, role: &str) -> Result<(), StoreError> {
        measured("set_role", async {
            on_pool!(self, pool => sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                .bind(role)
                .bind(user_id)
                .execute(pool)
                .await
                .map(|_| ()))?;
            Ok(())
        })
        .await
    }

    pub async fn create_session(
        &self,
        user_id: i64,
        token_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<SessionRow, StoreError> {
        measured("create_session", async {
            Ok(on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(
                "INSERT INTO sessions (user_id, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id, user_id, expires_at",
            )
            .bind(user_id)
            .bind(token_hash)
            .bind(now)
            .bind(expires_at)
            .fetch_one(pool)
            .await)?)
        })
        .await
    }

    /// The live session behind a token hash and its user, if the session
    /// is neither revoked nor expired at `now`.
    pub async fn live_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(SessionRow, UserRow)>, StoreError> {
        measured("live_session", async {
            #[derive(sqlx::FromRow)]
            struct Row {
                session_id: i64,
                expires_at: i64,
                #[sqlx(flatten)]
                user: UserRow,
            }
            let sql = "SELECT s.id AS session_id, s.expires_at, \
                       u.id, u.handle, u.display_name, u.bio, u.tags, u.role, u.created_at \
                       FROM sessions s JOIN users u ON u.id = s.user_id \
                       WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2";
            let row = on_pool!(self, pool => sqlx::query_as::<_, Row>(sql).bind(token_hash).bind(now).fetch_optional(pool).await)?;
            Ok(row.map(|r| {
                let session = SessionRow {
                    id: r.session_id,
                    user_id: r.user.id,
                    expires_at: r.expires_at,
                };
                (session, r.user)
            }))
        })
        .await
    }

    /// Of `ids`, the sessions that open nothing any more: revoked, or gone
    /// from the table. Sessions past their expiry are not named; their
    /// sockets end on their own timers.
    pub async fn ended_sessions(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        measured("ended_sessions", async {
            let mut ended = Vec::new();
            // Well under either backend's limit on bound parameters.
            for chunk in ids.chunks(500) {
                let placeholders: Vec<String> =
                    (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT id FROM sessions WHERE revoked_at IS NULL AND id IN ({})",
                    placeholders.join(", ")
                );
                let live: Vec<i64> = on_pool!(self, pool => {
                    let mut query = sqlx::query_scalar::<_, i64>(&sql);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query.fetch_all(pool).await
                })?;
                ended.extend(chunk.iter().filter(|id| !live.contains(id)));
            }
            Ok(ended)
        })
        .await
    }

    /// Marks a session revoked; true when it was live.
    pub async fn revoke_session(&self, session_id: i64, now: i64) -> Result<bool, StoreError> {
        measured("revoke_session", async {
            let done = on_pool!(self, pool => sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(session_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
            count_revoked("signed_out", done);
            Ok(done > 0)
        })
        .await
    }
}

/// `meshi_sessions_revoked_total{reason}`, counted once the revocation is
/// stored.
pub(super) fn count_revoked(reason: &'static str, sessions: impl TryInto<u64>) {
    debug_assert!(crate::metrics::SESSION_END_REASONS.contains(&reason));
    let sessions = sessions.try_into().unwrap_or(0);
    metrics::counter!("meshi_sessions_revoked_total", "reason" => reason).increment(sessions);
}

/// A live session as its owner lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionListing {
    pub id: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// `user_id`'s sessions that open something at `now`, newest first,
    /// below `before_id`; fetches `limit` rows.
    pub async fn live_sessions_of(
        &self,
        user_id: i64,
        now: i64,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SessionListing>, StoreError> {
        measured("live_sessions_of", async {
            Ok(on_pool!(self, pool => sqlx::query_as::<_, SessionListing>(
                "SELECT id, created_at, expires_at FROM sessions \
                 WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND id < $3 \
                 ORDER BY id DESC LIMIT $4",
            )
            .bind(user_id)
            .bind(now)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?)
        })
        .await
    }

    /// Ends `user_id`'s session `session_id`; false when it is not theirs
    /// or has ended already.
    pub async fn revoke_session_of(
        &self,
        user_id: i64,
        session_id: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        measured("revoke_session_of", async {
            let done = on_pool!(self, pool => sqlx::query(
                "UPDATE sessions SET revoked_at = $1 \
                 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(session_id)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
            count_revoked("revoked", done);
            Ok(done > 0)
        })
        .await
    }

    /// Ends every session of `user_id` but `keep`; returns those ended.
    pub async fn revoke_sessions_of(
        &self,
        user_id: i64,
        keep: Option<i64>,
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        measured("revoke_sessions_of", async {
            let ended = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
                "UPDATE sessions SET revoked_at = $1 \
                 WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3 RETURNING id",
            )
            .bind(now)
            .bind(user_id)
            .bind(keep.unwrap_or(0))
            .fetch_all(pool)
            .await)?;
            count_revoked("revoked", ended.len());
            Ok(ended)
        })
        .await
    }

    /// Sets a new password hash and ends every other session, in one
    /// transaction: an old session must not outlive the password it was
    /// opened with. Returns the sessions ended.
    pub async fn change_password(
        &self,
        user_id: i64,
        password_hash: &str,
        keep: Option<i64>,
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        measured("change_password", async {
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(password_hash)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                let ended: Vec<i64> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $1 \
                     WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3 RETURNING id",
                )
                .bind(now)
                .bind(user_id)
                .bind(keep.unwrap_or(0))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                count_revoked("password_changed", ended.len());
                Ok(ended)
            })
        })
        .await
    }
}

/// Profile fields to change; `None` keeps the stored value.
pub struct ProfileChanges<'a> {
    pub display_name: Option<&'a str>,
    pub bio: Option<&'a str>,
    pub tags: Option<&'a [String]>,
}

impl Store {
    pub async fn update_profile(
        &self,
        user_id: i64,
        changes: ProfileChanges<'_>,
    ) -> Result<Option<UserRow>, StoreError> {
        measured("update_profile", async {
            let tags_json = changes
                .tags
                .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into()));
            on_pool!(self, pool => sqlx::query(
                "UPDATE users SET display_name = COALESCE($1, display_name), \
                 bio = COALESCE($2, bio), tags = COALESCE($3, tags) WHERE id = $4",
            )
            .bind(changes.display_name)
            .bind(changes.bio)
            .bind(tags_json.as_deref())
            .bind(user_id)
            .execute(pool)
            .await
            .map(|_| ()))?;
            self.user_by_id(user_id).await
        })
        .await
    }
}
