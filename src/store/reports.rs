//! Reports of users, cards and messages, and the moderation queue they
//! make: filed by anyone, read and resolved by staff.

use super::audit::NewAudit;
use super::measured;
use super::suspensions::insert_audit;
use super::{on_pool, AuditRow, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub id: i64,
    /// `user`, `card`, `room_message` or `dm_message`.
    pub kind: String,
    pub target_id: String,
    pub room_id: Option<String>,
    pub conversation_id: Option<i64>,
    pub reporter_id: i64,
    pub reporter_handle: String,
    pub reporter_display_name: String,
    pub reason: String,
    /// The reported text as it was when the report was made.
    pub excerpt: String,
    /// `open` or `resolved`.
    pub status: String,
    pub created_at: i64,
    pub resolved_by: Option<i64>,
    pub resolved_at: Option<i64>,
    pub action: Option<String>,
    pub note: Option<String>,
}

/// A report to file; the caller has checked the target and copied its text.
#[derive(Debug, Clone, Copy)]
pub struct NewReport<'a> {
    pub kind: &'a str,
    pub target_id: &'a str,
    pub room_id: Option<&'a str>,
    pub conversation_id: Option<i64>,
    pub reporter_id: i64,
    pub reason: &'a str,
    pub excerpt: &'a str,
    pub now: i64,
    /// How many open reports one reporter may have at once.
    pub max_open: u32,
}

#[derive(Debug, Clone)]
pub enum Filed {
    Filed(Box<ReportRow>),
    /// The reporter has `max_open` open reports already.
    TooManyOpen,
}

#[derive(Debug, Clone)]
pub enum Resolved {
    Resolved(Box<ReportRow>),
    AlreadyResolved,
    NotFound,
}

/// How a report was resolved.
#[derive(Debug, Clone, Copy)]
pub struct Resolution<'a> {
    pub resolver_id: i64,
    pub action: &'a str,
    pub note: Option<&'a str>,
}

/// Where a page of the queue starts.
#[derive(Debug, Clone, Copy)]
pub enum QueueFrom {
    /// Open reports, oldest first: after this id.
    OpenAfter(Option<i64>),
    /// Resolved reports, most recently resolved first: below this
    /// `(resolved_at, id)`.
    ResolvedBefore(Option<(i64, i64)>),
}

const REPORT_SELECT: &str = "SELECT r.id, r.kind, r.target_id, r.room_id, r.conversation_id, \
    r.reporter_id, u.handle AS reporter_handle, u.display_name AS reporter_display_name, \
    r.reason, r.excerpt, r.status, r.created_at, r.resolved_by, r.resolved_at, r.action, r.note \
    FROM reports r JOIN users u ON u.id = r.reporter_id";

impl Store {
    pub async fn report(&self, id: i64) -> Result<Option<ReportRow>, StoreError> {
        measured("report", async {
            let sql = format!("{REPORT_SELECT} WHERE r.id = $1");
            Ok(on_pool!(self, pool => sqlx::query_as::<_, ReportRow>(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await)?)
        })
        .await
    }

    /// Files a report unless its reporter has too many open already. Two
    /// reports filed at the same instant may both pass the count; the
    /// bound is there against floods, not to the unit.
    pub async fn file_report(&self, report: NewReport<'_>) -> Result<Filed, StoreError> {
        measured("file_report", async {
            let id: Option<i64> = on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let open: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM reports WHERE reporter_id = $1 AND status = 'open'",
                )
                .bind(report.reporter_id)
                .fetch_one(&mut *tx)
                .await?;
                if open >= i64::from(report.max_open) {
                    None
                } else {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO reports (kind, target_id, room_id, conversation_id, reporter_id, \
                         reason, excerpt, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         RETURNING id",
                    )
                    .bind(report.kind)
                    .bind(report.target_id)
                    .bind(report.room_id)
                    .bind(report.conversation_id)
                    .bind(report.reporter_id)
                    .bind(report.reason)
                    .bind(report.excerpt)
                    .bind(report.now)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Some(id)
                }
            });
            let Some(id) = id else {
                return Ok(Filed::TooManyOpen);
            };
            let row = self
                .report(id)
                .await?
                .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
            Ok(Filed::Filed(Box::new(row)))
        })
        .await
    }

    /// A page of the queue from `from`; fetches `limit` rows.
    pub async fn report_queue(
        &self,
        from: QueueFrom,
        limit: u32,
    ) -> Result<Vec<ReportRow>, StoreError> {
        measured("report_queue", async {
            let limit = i64::from(limit);
            Ok(match from {
                QueueFrom::OpenAfter(after) => {
                    let sql = format!(
                        "{REPORT_SELECT} WHERE r.status = 'open' AND r.id > $1 \
                         ORDER BY r.id ASC LIMIT $2"
                    );
                    on_pool!(self, pool => sqlx::query_as::<_, ReportRow>(&sql)
                        .bind(after.unwrap_or(0))
                        .bind(limit)
                        .fetch_all(pool)
                        .await)?
                }
                QueueFrom::ResolvedBefore(before) => {
                    let (at, id) = before.unwrap_or((i64::MAX, i64::MAX));
                    let sql = format!(
                        "{REPORT_SELECT} WHERE r.status = 'resolved' \
                         AND (r.resolved_at < $1 OR (r.resolved_at = $1 AND r.id < $2)) \
                         ORDER BY r.resolved_at DESC, r.id DESC LIMIT $3"
                    );
                    on_pool!(self, pool => sqlx::query_as::<_, ReportRow>(&sql)
                        .bind(at)
                        .bind(id)
                        .bind(limit)
                        .fetch_all(pool)
                        .await)?
                }
            })
        })
        .await
    }

    /// Resolves an open report and records it, both or neither; a report
    /// resolves once.
    pub async fn resolve_report(
        &self,
        id: i64,
        resolution: Resolution<'_>,
        audit: NewAudit<'_>,
    ) -> Result<Resolved, StoreError> {
        measured("resolve_report", async {
            let select = format!("{REPORT_SELECT} WHERE r.id = $1");
            let outcome: Resolved = on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let changed = sqlx::query(
                    "UPDATE reports SET status = 'resolved', resolved_by = $1, resolved_at = $2, \
                     action = $3, note = $4 WHERE id = $5 AND status = 'open'",
                )
                .bind(resolution.resolver_id)
                .bind(audit.now)
                .bind(resolution.action)
                .bind(resolution.note)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM reports WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if exists.is_some() {
                        Resolved::AlreadyResolved
                    } else {
                        Resolved::NotFound
                    }
                } else {
                    let _: AuditRow = insert_audit!(tx, audit)?;
                    let row = sqlx::query_as::<_, ReportRow>(&select)
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Resolved::Resolved(Box::new(row))
                }
            });
            Ok(outcome)
        })
        .await
    }
}
