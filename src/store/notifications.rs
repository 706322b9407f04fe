//! Stored notifications and each user's read marker.

use super::measured;
use super::{on_pool, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: i64,
    pub user_id: i64,
    pub kind: String,
    /// JSON object.
    pub data: String,
    pub created_at: i64,
}

impl Store {
    pub async fn add_notification(
        &self,
        user_id: i64,
        kind: &str,
        data: &str,
        now: i64,
    ) -> Result<NotificationRow, StoreError> {
        measured("add_notification", async {
            Ok(on_pool!(self, pool => sqlx::query_as::<_, NotificationRow>(
                "INSERT INTO notifications (user_id, kind, data, created_at) VALUES ($1, $2, $3, $4) \
                 RETURNING id, user_id, kind, data, created_at",
            )
            .bind(user_id)
            .bind(kind)
            .bind(data)
            .bind(now)
            .fetch_one(pool)
            .await)?)
        })
        .await
    }

    /// Newest first, below `before_id` when given; `unread` keeps only
    /// those above the user's read marker. Fetches `limit` rows.
    pub async fn notifications(
        &self,
        user_id: i64,
        unread: bool,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        measured("notifications", async {
            let sql = "SELECT n.id, n.user_id, n.kind, n.data, n.created_at \
                       FROM notifications n JOIN users u ON u.id = n.user_id \
                       WHERE n.user_id = $1 AND n.id < $2 \
                       AND ($3 = 0 OR n.id > u.notifications_read_up_to) \
                       ORDER BY n.id DESC LIMIT $4";
            Ok(
                on_pool!(self, pool => sqlx::query_as::<_, NotificationRow>(sql)
                .bind(user_id)
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(i64::from(unread))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await)?,
            )
        })
        .await
    }

    /// Moves the read marker forward (never back). The marker lands on the
    /// user's own newest notification at or below `up_to_id`, so an id
    /// from the future cannot hide notifications that arrive later.
    pub async fn mark_notifications_read(
        &self,
        user_id: i64,
        up_to_id: i64,
    ) -> Result<(), StoreError> {
        measured("mark_notifications_read", async {
            on_pool!(self, pool => sqlx::query(
                "UPDATE users SET notifications_read_up_to = \
                   (SELECT COALESCE(MAX(n.id), 0) FROM notifications n \
                    WHERE n.user_id = $2 AND n.id <= $1) \
                 WHERE id = $2 AND notifications_read_up_to < \
                   (SELECT COALESCE(MAX(n.id), 0) FROM notifications n \
                    WHERE n.user_id = $2 AND n.id <= $1)",
            )
            .bind(up_to_id)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|_| ()))?;
            Ok(())
        })
        .await
    }
}
