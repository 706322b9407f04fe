//! Blocks between users, unmatching, and whether a pair's conversation
//! takes messages.

use super::dm_rows::Pair;
use super::measured;
use super::{on_pool, Store, StoreError, UserRow};

/// A user the caller blocks, as `GET /me/blocks` lists them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BlockRow {
    pub blocked_at: i64,
    #[sqlx(flatten)]
    pub user: UserRow,
}

/// Where a conversation stands.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConversationAccess {
    pub user_low: i64,
    pub user_high: i64,
    /// Why it was closed (`unmatched`, `account_deleted`), if it was.
    pub closed_reason: Option<String>,
    /// One of the pair blocks the other.
    pub blocked: bool,
}

impl ConversationAccess {
    pub fn pair(&self) -> Pair {
        Pair {
            user_low: self.user_low,
            user_high: self.user_high,
        }
    }
}

/// A pair that unmatched, and the conversation that closed with it.
#[derive(Debug, Clone, Copy)]
pub struct Unmatched {
    pub conversation_id: i64,
    pub pair: Pair,
}

/// Either of the pair `$1`, `$2` blocks the other.
pub(super) const BLOCKED_EITHER_WAY: &str = "EXISTS (SELECT 1 FROM blocks WHERE \
     (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1))";

impl Store {
    /// `blocker` blocks `blocked`; false when they did already. Interest
    /// either pressed on the other's cards goes with it: a block is no
    /// interest between them, and lifting it brings none back.
    pub async fn block(&self, blocker: i64, blocked: i64, now: i64) -> Result<bool, StoreError> {
        measured("block", async {
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let done = sqlx::query(
                    "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
                )
                .bind(blocker)
                .bind(blocked)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query(
                    "DELETE FROM interests WHERE \
                     (user_id = $2 AND card_id IN (SELECT id FROM cards WHERE owner_id = $1)) OR \
                     (user_id = $1 AND card_id IN (SELECT id FROM cards WHERE owner_id = $2))",
                )
                .bind(blocker)
                .bind(blocked)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done > 0)
            })
        })
        .await
    }

    /// Lifts `blocker`'s block of `blocked`; false when there was none.
    pub async fn unblock(&self, blocker: i64, blocked: i64) -> Result<bool, StoreError> {
        measured("unblock", async {
            let done = on_pool!(self, pool => sqlx::query(
                "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2",
            )
            .bind(blocker)
            .bind(blocked)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
            Ok(done > 0)
        })
        .await
    }

    /// Whether either of `a` and `b` blocks the other.
    pub async fn blocked_between(&self, a: i64, b: i64) -> Result<bool, StoreError> {
        measured("blocked_between", async {
            let sql = format!("SELECT {BLOCKED_EITHER_WAY}");
            let (blocked,): (bool,) = on_pool!(self, pool => sqlx::query_as(&sql)
                .bind(a)
                .bind(b)
                .fetch_one(pool)
                .await)?;
            Ok(blocked)
        })
        .await
    }

    /// Everyone `user` blocks or is blocked by.
    pub async fn blocked_either_way(&self, user: i64) -> Result<Vec<i64>, StoreError> {
        measured("blocked_either_way", async {
            Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
                "SELECT blocked_id FROM blocks WHERE blocker_id = $1 \
                 UNION SELECT blocker_id FROM blocks WHERE blocked_id = $1",
            )
            .bind(user)
            .fetch_all(pool)
            .await)?)
        })
        .await
    }

    /// The users `blocker` blocks, newest block first, before the
    /// `(created_at, id)` key of a previous page; fetches `limit` rows.
    pub async fn blocks_of(
        &self,
        blocker: i64,
        before: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<BlockRow>, StoreError> {
        measured("blocks_of", async {
            let (at, id) = before.unwrap_or((i64::MAX, i64::MAX));
            Ok(on_pool!(self, pool => sqlx::query_as::<_, BlockRow>(
                "SELECT b.created_at AS blocked_at, u.id, u.handle, u.display_name, u.bio, u.tags, \
                 u.role, u.created_at \
                 FROM blocks b JOIN users u ON u.id = b.blocked_id \
                 WHERE b.blocker_id = $1 AND (b.created_at < $2 OR (b.created_at = $2 AND u.id < $3)) \
                 ORDER BY b.created_at DESC, u.id DESC LIMIT $4",
            )
            .bind(blocker)
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?)
        })
        .await
    }

    /// Where the conversation stands, or `None` when there is none.
    pub async fn conversation_access(
        &self,
        conversation_id: i64,
    ) -> Result<Option<ConversationAccess>, StoreError> {
        measured("conversation_access", async {
            let sql = "SELECT c.user_low, c.user_high, c.closed_reason, \
                       EXISTS (SELECT 1 FROM blocks b WHERE \
                         (b.blocker_id = c.user_low AND b.blocked_id = c.user_high) OR \
                         (b.blocker_id = c.user_high AND b.blocked_id = c.user_low)) AS blocked \
                       FROM conversations c WHERE c.id = $1";
            Ok(
                on_pool!(self, pool => sqlx::query_as::<_, ConversationAccess>(sql)
                .bind(conversation_id)
                .fetch_optional(pool)
                .await)?,
            )
        })
        .await
    }

    /// The conversation of the pair `a`, `b`, if they ever matched.
    pub async fn conversation_of_pair(&self, a: i64, b: i64) -> Result<Option<i64>, StoreError> {
        measured("conversation_of_pair", async {
            let (low, high) = if a < b { (a, b) } else { (b, a) };
            Ok(on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
                "SELECT id FROM conversations WHERE user_low = $1 AND user_high = $2",
            )
            .bind(low)
            .bind(high)
            .fetch_optional(pool)
            .await)?)
        })
        .await
    }

    /// `user` unmatches the pair of match `match_id`: every match of the
    /// pair goes, whichever card made it, and their conversation closes
    /// until they match again. `None` when the match is not `user`'s.
    pub async fn unmatch(&self, match_id: i64, user: i64) -> Result<Option<Unmatched>, StoreError> {
        measured("unmatch", async {
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                // The write comes first so SQLite takes its write lock at once.
                let closed: Option<(i64, i64, i64)> = sqlx::query_as(
                    "UPDATE conversations SET closed_reason = 'unmatched' \
                     WHERE id = (SELECT conversation_id FROM matches \
                       WHERE id = $1 AND (owner_id = $2 OR user_id = $2)) \
                     RETURNING id, user_low, user_high",
                )
                .bind(match_id)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((conversation_id, user_low, user_high)) = closed else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                sqlx::query("DELETE FROM matches WHERE conversation_id = $1")
                    .bind(conversation_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(Unmatched {
                    conversation_id,
                    pair: Pair { user_low, user_high },
                }))
            })
        })
        .await
    }
}
