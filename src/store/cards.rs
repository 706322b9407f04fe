//! Talk-topic cards and the interest people press on them.

use super::measured;
use super::{on_pool, Store, StoreError, UserRow};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CardRow {
    pub id: i64,
    pub owner_id: i64,
    pub title: String,
    pub body: String,
    /// JSON array of strings.
    pub tags: String,
    pub is_open: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub owner_handle: String,
    pub owner_display_name: String,
}

pub struct CardFilter<'a> {
    pub tag: Option<&'a str>,
    /// Matched case-insensitively against title and body.
    pub text: Option<&'a str>,
    pub owner_id: Option<i64>,
    /// Closed cards are listed only with an owner filter.
    pub before_id: Option<i64>,
    pub limit: u32,
}

pub struct CardChanges<'a> {
    pub title: Option<&'a str>,
    pub body: Option<&'a str>,
    pub tags: Option<&'a [String]>,
    pub is_open: Option<bool>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InterestRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub pressed_at: i64,
}

const CARD_SELECT: &str = "SELECT c.id, c.owner_id, c.title, c.body, c.tags, c.is_open, \
    c.created_at, c.updated_at, u.handle AS owner_handle, u.display_name AS owner_display_name \
    FROM cards c JOIN users u ON u.id = c.owner_id";

/// Escapes `%`, `_` and `\` so user text matches literally in LIKE.
pub(super) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for ch in text.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    pattern
}

impl Store {
    pub async fn create_card(
        &self,
        owner_id: i64,
        title: &str,
        body: &str,
        tags: &[String],
        now: i64,
    ) -> Result<CardRow, StoreError> {
        measured("create_card", async {
            let tags_json = serde_json::to_string(tags).unwrap_or_else(|_| "[]".into());
            let id: i64 = on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO cards (owner_id, title, body, tags, is_open, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                )
                .bind(owner_id)
                .bind(title)
                .bind(body)
                .bind(&tags_json)
                .bind(true)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                for tag in tags {
                    sqlx::query("INSERT INTO card_tags (card_id, tag) VALUES ($1, $2)")
                        .bind(id)
                        .bind(tag)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                id
            });
            self.card(id)
                .await?
                .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
        })
        .await
    }

    pub async fn card(&self, id: i64) -> Result<Option<CardRow>, StoreError> {
        measured("card", async {
            let sql = format!("{CARD_SELECT} WHERE c.id = $1");
            Ok(
                on_pool!(self, pool => sqlx::query_as::<_, CardRow>(&sql).bind(id).fetch_optional(pool).await)?,
            )
        })
        .await
    }

    /// Newest first; fetches `limit` rows.
    pub async fn cards(&self, filter: CardFilter<'_>) -> Result<Vec<CardRow>, StoreError> {
        measured("cards", async {
            let sql = format!(
                "{CARD_SELECT} WHERE c.id < $1 \
                 AND (CAST($2 AS TEXT) IS NULL OR EXISTS \
                     (SELECT 1 FROM card_tags t WHERE t.card_id = c.id AND t.tag = $2)) \
                 AND (CAST($3 AS TEXT) IS NULL OR LOWER(c.title) LIKE $3 ESCAPE '\\' \
                     OR LOWER(c.body) LIKE $3 ESCAPE '\\') \
                 AND (CAST($4 AS BIGINT) IS NULL AND c.is_open = $5 OR c.owner_id = $4) \
                 ORDER BY c.id DESC LIMIT $6"
            );
            let pattern = filter.text.map(like_pattern);
            Ok(on_pool!(self, pool => sqlx::query_as::<_, CardRow>(&sql)
                .bind(filter.before_id.unwrap_or(i64::MAX))
                .bind(filter.tag)
                .bind(pattern.as_deref())
                .bind(filter.owner_id)
                .bind(true)
                .bind(i64::from(filter.limit))
                .fetch_all(pool)
                .await)?)
        })
        .await
    }

    pub async fn update_card(
        &self,
        id: i64,
        changes: CardChanges<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        measured("update_card", async {
            let tags_json = changes
                .tags
                .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into()));
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "UPDATE cards SET title = COALESCE($1, title), body = COALESCE($2, body), \
                     tags = COALESCE($3, tags), is_open = COALESCE($4, is_open), updated_at = $5 \
                     WHERE id = $6",
                )
                .bind(changes.title)
                .bind(changes.body)
                .bind(tags_json.as_deref())
                .bind(changes.is_open)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if let Some(tags) = changes.tags {
                    sqlx::query("DELETE FROM card_tags WHERE card_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    for tag in tags {
                        sqlx::query("INSERT INTO card_tags (card_id, tag) VALUES ($1, $2)")
                            .bind(id)
                            .bind(tag)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    pub async fn delete_card(&self, id: i64) -> Result<(), StoreError> {
        measured("delete_card", async {
            on_pool!(self, pool => sqlx::query("DELETE FROM cards WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|_| ()))?;
            Ok(())
        })
        .await
    }

    /// Records interest; true when it is new (pressing twice changes nothing).
    pub async fn press_interest(
        &self,
        card_id: i64,
        user_id: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        measured("press_interest", async {
            let added = on_pool!(self, pool => sqlx::query(
                "INSERT INTO interests (card_id, user_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (card_id, user_id) DO NOTHING",
            )
            .bind(card_id)
            .bind(user_id)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
            Ok(added > 0)
        })
        .await
    }

    pub async fn withdraw_interest(&self, card_id: i64, user_id: i64) -> Result<(), StoreError> {
        measured("withdraw_interest", async {
            on_pool!(self, pool => sqlx::query("DELETE FROM interests WHERE card_id = $1 AND user_id = $2")
                .bind(card_id)
                .bind(user_id)
                .execute(pool)
                .await
                .map(|_| ()))?;
            Ok(())
        })
        .await
    }

    /// Who pressed interested, newest first, before the `(created_at,
    /// user_id)` cursor; fetches `limit` rows.
    pub async fn interests(
        &self,
        card_id: i64,
        before: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<InterestRow>, StoreError> {
        measured("interests", async {
            let (before_at, before_user) = before.unwrap_or((i64::MAX, i64::MAX));
            let sql = "SELECT u.id, u.handle, u.display_name, u.bio, u.tags, u.role, u.created_at, \
                       i.created_at AS pressed_at \
                       FROM interests i JOIN users u ON u.id = i.user_id \
                       WHERE i.card_id = $1 AND (i.created_at < $2 OR (i.created_at = $2 AND i.user_id < $3)) \
                       ORDER BY i.created_at DESC, i.user_id DESC LIMIT $4";
            Ok(on_pool!(self, pool => sqlx::query_as::<_, InterestRow>(sql)
                .bind(card_id)
                .bind(before_at)
                .bind(before_user)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await)?)
        })
        .await
    }

    pub async fn has_interest(&self, card_id: i64, user_id: i64) -> Result<bool, StoreError> {
        measured("has_interest", async {
            let found: Option<(i64,)> = on_pool!(self, pool => sqlx::query_as(
                "SELECT CAST(1 AS BIGINT) FROM interests WHERE card_id = $1 AND user_id = $2",
            )
            .bind(card_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await)?;
            Ok(found.is_some())
        })
        .await
    }
}
