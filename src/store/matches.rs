//! Matches and the one conversation each matched pair shares.

use super::{on_pool, Store, StoreError, UserRow};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MatchRow {
    pub id: i64,
    pub card_id: i64,
    pub owner_id: i64,
    pub user_id: i64,
    pub conversation_id: i64,
    pub created_at: i64,
}

/// What matching a card's owner with an interested user did.
pub struct Matched {
    pub record: MatchRow,
    /// The pair had no conversation before.
    pub conversation_created: bool,
    /// This card had not matched this user before.
    pub match_created: bool,
}

/// A match as one side sees it: the other user is the interesting part.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MatchView {
    pub match_id: i64,
    pub card_id: i64,
    pub conversation_id: i64,
    pub matched_at: i64,
    #[sqlx(flatten)]
    pub other: UserRow,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConversationView {
    pub conversation_id: i64,
    pub last_seq: i64,
    pub read_seq: i64,
    #[sqlx(flatten)]
    pub other: UserRow,
}

#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error("the user has not pressed interested on this card")]
    NotInterested,
    #[error("one of the pair blocks the other")]
    Blocked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for MatchError {
    fn from(err: sqlx::Error) -> Self {
        MatchError::Store(err.into())
    }
}

const MATCH_COLUMNS: &str = "id, card_id, owner_id, user_id, conversation_id, created_at";

impl Store {
    /// Matches `owner_id`'s card with `user_id`, who must have pressed
    /// interested. A pair has one conversation whatever the card, so the
    /// conversation is found or created first; then the match of this card
    /// is found or created. Writes come first so SQLite takes its write
    /// lock at once instead of upgrading a read lock mid-transaction.
    pub async fn create_match(
        &self,
        card_id: i64,
        owner_id: i64,
        user_id: i64,
        now: i64,
    ) -> Result<Matched, MatchError> {
        // An owner never presses interested on their own card; catching it
        // here also keeps a pair of one person out of `conversations`.
        if owner_id == user_id {
            return Err(MatchError::NotInterested);
        }
        let (low, high) = if owner_id < user_id {
            (owner_id, user_id)
        } else {
            (user_id, owner_id)
        };
        let match_sql = format!(
            "INSERT INTO matches (card_id, owner_id, user_id, conversation_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (card_id, user_id) DO NOTHING \
             RETURNING {MATCH_COLUMNS}"
        );
        let existing_sql =
            format!("SELECT {MATCH_COLUMNS} FROM matches WHERE card_id = $1 AND user_id = $2");
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let conversation_created = sqlx::query(
                "INSERT INTO conversations (user_low, user_high, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_low, user_high) DO NOTHING",
            )
            .bind(low)
            .bind(high)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            let (blocked,): (bool,) = sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM blocks WHERE \
                 (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1))",
            )
            .bind(low)
            .bind(high)
            .fetch_one(&mut *tx)
            .await?;
            if blocked {
                tx.rollback().await?;
                return Err(MatchError::Blocked);
            }
            let interested: Option<(i64,)> = sqlx::query_as(
                "SELECT CAST(1 AS BIGINT) FROM interests WHERE card_id = $1 AND user_id = $2",
            )
            .bind(card_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
            if interested.is_none() {
                tx.rollback().await?;
                return Err(MatchError::NotInterested);
            }
            // Matching again opens a conversation the pair unmatched, with
            // its history.
            sqlx::query(
                "UPDATE conversations SET closed_reason = NULL \
                 WHERE user_low = $1 AND user_high = $2 AND closed_reason = 'unmatched'",
            )
            .bind(low)
            .bind(high)
            .execute(&mut *tx)
            .await?;
            let (conversation_id,): (i64,) = sqlx::query_as(
                "SELECT id FROM conversations WHERE user_low = $1 AND user_high = $2",
            )
            .bind(low)
            .bind(high)
            .fetch_one(&mut *tx)
            .await?;
            let inserted: Option<MatchRow> = sqlx::query_as(&match_sql)
                .bind(card_id)
                .bind(owner_id)
                .bind(user_id)
                .bind(conversation_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let match_created = inserted.is_some();
            let record = match inserted {
                Some(record) => record,
                None => sqlx::query_as(&existing_sql)
                    .bind(card_id)
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?,
            };
            tx.commit().await?;
            Ok(Matched {
                record,
                conversation_created,
                match_created,
            })
        })
    }

    /// The caller's matches, newest first; fetches `limit` rows.
    pub async fn matches_of(
        &self,
        user_id: i64,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MatchView>, StoreError> {
        let sql =
            "SELECT m.id AS match_id, m.card_id, m.conversation_id, m.created_at AS matched_at, \
                   u.id, u.handle, u.display_name, u.bio, u.tags, u.role, u.created_at \
                   FROM matches m JOIN users u ON u.id = \
                     CASE WHEN m.owner_id = $1 THEN m.user_id ELSE m.owner_id END \
                   WHERE (m.owner_id = $1 OR m.user_id = $1) AND m.id < $2 \
                   ORDER BY m.id DESC LIMIT $3";
        Ok(on_pool!(self, pool => sqlx::query_as::<_, MatchView>(sql)
            .bind(user_id)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?)
    }

    /// The caller's conversations, newest first; fetches `limit` rows.
    pub async fn conversations_of(
        &self,
        user_id: i64,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConversationView>, StoreError> {
        let sql = "SELECT c.id AS conversation_id, c.last_seq, \
                   CASE WHEN c.user_low = $1 THEN c.low_read_seq ELSE c.high_read_seq END AS read_seq, \
                   u.id, u.handle, u.display_name, u.bio, u.tags, u.role, u.created_at \
                   FROM conversations c JOIN users u ON u.id = \
                     CASE WHEN c.user_low = $1 THEN c.user_high ELSE c.user_low END \
                   WHERE (c.user_low = $1 OR c.user_high = $1) AND c.id < $2 \
                   AND (c.closed_reason IS NULL OR c.closed_reason = 'account_deleted') \
                   ORDER BY c.id DESC LIMIT $3";
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ConversationView>(sql)
            .bind(user_id)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?,
        )
    }
}
