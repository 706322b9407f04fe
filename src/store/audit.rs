//! The audit log: who did what to whom, append-only. Moderation and role
//! changes write here; only admins read it back.

use super::measured;
use super::{on_pool, Store, StoreError};

/// A user's role was set (`data`: `from`, `to`, and `source` when the
/// configuration rather than a person did it).
pub const AUDIT_ROLE_CHANGE: &str = "role.change";
/// A moderator, an admin or a drop-in room's host closed a room (`data`:
/// the room as it was, and `as`: `host` or `staff`).
pub const AUDIT_ROOM_CLOSE: &str = "room.close";
/// A user was kicked out of a room (`data`: the room, `ban_secs`, `reason`,
/// and `as`: `host` or `staff`).
pub const AUDIT_ROOM_KICK: &str = "room.kick";
/// A moderator or an admin suspended a user (`data`: `until`, RFC 3339 or
/// null for no end, and `reason`).
pub const AUDIT_USER_SUSPEND: &str = "user.suspend";
/// A moderator or an admin lifted a user's suspension.
pub const AUDIT_USER_UNSUSPEND: &str = "user.unsuspend";
/// A moderator or an admin resolved a report (target `report:<id>`;
/// `data`: `kind`, `target_id`, `action`, `note`).
pub const AUDIT_REPORT_RESOLVE: &str = "report.resolve";

/// A room's host or staff deleted someone else's message (`data`: where
/// it was, its author, and `as`: `host` or `staff`). Authors deleting
/// their own are not moderation and are not recorded.
pub const AUDIT_MESSAGE_DELETE: &str = "message.delete";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    /// `None` when the server acted on its own (an admin named by
    /// configuration), or the actor's account is gone.
    pub actor_id: Option<i64>,
    pub action: String,
    /// What was acted on, as `<kind>:<id>` (`user:7`, `room:r9Zx…`).
    pub target: String,
    /// JSON object with the details of the action.
    pub data: String,
    pub created_at: i64,
}

/// An entry to append.
#[derive(Debug, Clone, Copy)]
pub struct NewAudit<'a> {
    pub actor_id: Option<i64>,
    pub action: &'a str,
    pub target: &'a str,
    /// JSON object.
    pub data: &'a str,
    pub now: i64,
}

/// A role change, what it replaced, and the entry that records it.
#[derive(Debug, Clone)]
pub struct RoleChanged {
    pub previous: String,
    pub entry: AuditRow,
}

const AUDIT_COLUMNS: &str = "id, actor_id, action, target, data, created_at";

impl Store {
    pub async fn append_audit(&self, entry: NewAudit<'_>) -> Result<AuditRow, StoreError> {
        measured("append_audit", async {
            let sql = format!(
                "INSERT INTO audit_log (actor_id, action, target, data, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {AUDIT_COLUMNS}"
            );
            Ok(on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(&sql)
                .bind(entry.actor_id)
                .bind(entry.action)
                .bind(entry.target)
                .bind(entry.data)
                .bind(entry.now)
                .fetch_one(pool)
                .await)?)
        })
        .await
    }

    /// Newest first, below `before_id` when given. Ids only grow, so they
    /// order entries the way time does and make a stable keyset.
    pub async fn audit_entries(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        measured("audit_entries", async {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2"
            );
            Ok(on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(&sql)
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await)?)
        })
        .await
    }

    /// Gives `user_id` the role `role` and records it, both or neither.
    /// `None` when there is no such user. `audit.data` is extended with
    /// `from` and `to`.
    pub async fn change_role(
        &self,
        user_id: i64,
        role: &str,
        audit: NewAudit<'_>,
    ) -> Result<Option<RoleChanged>, StoreError> {
        measured("change_role", async {
            let details = |previous: &str| {
                let mut data: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(audit.data).unwrap_or_default();
                data.insert("from".into(), previous.into());
                data.insert("to".into(), role.into());
                serde_json::Value::Object(data).to_string()
            };
            let insert = format!(
                "INSERT INTO audit_log (actor_id, action, target, data, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {AUDIT_COLUMNS}"
            );
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                // Write first: on Postgres this locks the row, on SQLite it takes
                // the write lock, so the role read next is the one being replaced
                // even when two admins change it at once.
                let found = sqlx::query("UPDATE users SET role = role WHERE id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if found == 0 {
                    return Ok(None);
                }
                let previous: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                    .bind(role)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                let entry = sqlx::query_as::<_, AuditRow>(&insert)
                    .bind(audit.actor_id)
                    .bind(audit.action)
                    .bind(audit.target)
                    .bind(details(&previous))
                    .bind(audit.now)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(RoleChanged { previous, entry }))
            })
        })
        .await
    }
}
