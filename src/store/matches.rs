//! Matches and the one conversation each matched pair shares.

use super::blocks::BLOCKED_EITHER_WAY;
use super::{measured, Failure};
use super::{on_pool, Pool, Store, StoreError, UserRow};

/// The next `activity_seq` on SQLite. One writer at a time holds the
/// database, so MAX + 1 (one step down the unique index) is unique and
/// grows in commit order.
pub(super) const NEXT_ACTIVITY_SQLITE: &str =
    "(SELECT COALESCE(MAX(a.activity_seq), 0) + 1 FROM conversations a)";

/// The next `activity_seq` on Postgres, where writers run side by side.
const NEXT_ACTIVITY_POSTGRES: &str = "nextval('conversation_activity')";

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
    /// The list's sort key and cursor: see [`Store::conversations_of`].
    pub activity_seq: i64,
    /// When the latest message was sent, else when the pair matched, in ms.
    pub last_activity: i64,
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

impl Failure for MatchError {
    fn is_database_failure(&self) -> bool {
        matches!(self, MatchError::Store(err) if err.is_database_failure())
    }
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
        measured("create_match", async {
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
            let blocked_sql = format!("SELECT {BLOCKED_EITHER_WAY}");
            let next_activity = self.next_activity_sql();
            let open_sql = format!(
                "INSERT INTO conversations \
                 (user_low, user_high, created_at, last_activity, activity_seq) \
                 VALUES ($1, $2, $3, $3, {next_activity}) \
                 ON CONFLICT (user_low, user_high) DO NOTHING"
            );
            // A pair matching again after unmatching is new activity: the
            // conversation comes back at the top of both lists.
            let reopen_sql = format!(
                "UPDATE conversations SET closed_reason = NULL, \
                 activity_seq = {next_activity}, last_activity = $3 \
                 WHERE user_low = $1 AND user_high = $2 AND closed_reason = 'unmatched'"
            );
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let conversation_created = sqlx::query(&open_sql)
                .bind(low)
                .bind(high)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                let (blocked,): (bool,) = sqlx::query_as(&blocked_sql)
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
                sqlx::query(&reopen_sql)
                .bind(low)
                .bind(high)
                .bind(now)
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
        })
        .await
    }

    /// The caller's matches, newest first; fetches `limit` rows.
    pub async fn matches_of(
        &self,
        user_id: i64,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MatchView>, StoreError> {
        measured("matches_of", async {
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
        })
        .await
    }

    /// The caller's open conversations, most recently active first;
    /// fetches `limit` rows with `activity_seq` below `before` (the cursor).
    ///
    /// # Why pages neither skip nor repeat while messages arrive
    /// Every message, and every match that opens or reopens a conversation,
    /// gives its conversation a fresh `activity_seq` from one counter over
    /// the whole database (unique, only ever growing), and the list is in
    /// `activity_seq` order, newest first. A page is the next `limit`
    /// conversations below the last key served. A conversation already
    /// served had a key at or above that cursor, and keys only grow, so no
    /// later page can serve it again. A conversation whose key does not
    /// change while the pages are read sits below the cursor exactly where
    /// it sat, so it is served once, and nothing that moves shifts it. A
    /// conversation that gets a message while the pages are read jumps
    /// above the cursor: this pass does not show it again (or, if it was
    /// not reached yet, at all), and it is first on the next first page,
    /// as the `dm.message` the participants receive says. Unlike an offset
    /// or a cursor of (time, id) re-read against changing times, this
    /// needs no snapshot: it holds whichever order writers commit in,
    /// because a value taken by a writer that commits late still only
    /// moves its conversation up.
    ///
    /// Each side of the pair is read from its own index (user, activity),
    /// newest first and at most `limit` rows, and the two are merged, so a
    /// page costs the same at the top and deep down a long list.
    pub async fn conversations_of(
        &self,
        user_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConversationView>, StoreError> {
        measured("conversations_of", async {
            Ok(
                on_pool!(self, pool => sqlx::query_as::<_, ConversationView>(CONVERSATIONS_OF)
                .bind(user_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await)?,
            )
        })
        .await
    }

    fn next_activity_sql(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => NEXT_ACTIVITY_SQLITE,
            Pool::Postgres(_) => NEXT_ACTIVITY_POSTGRES,
        }
    }
}

/// See [`Store::conversations_of`]; `BENCHMARKS.md` times it.
pub const CONVERSATIONS_OF: &str = "\
    SELECT c.id AS conversation_id, c.last_seq, \
      CASE WHEN c.user_low = $1 THEN c.low_read_seq ELSE c.high_read_seq END AS read_seq, \
      c.activity_seq, c.last_activity, \
      u.id, u.handle, u.display_name, u.bio, u.tags, u.role, u.created_at \
    FROM ( \
      SELECT * FROM (SELECT id FROM conversations \
        WHERE user_low = $1 AND closed_reason IS NULL AND activity_seq < $2 \
        ORDER BY activity_seq DESC LIMIT $3) AS low_side \
      UNION ALL \
      SELECT * FROM (SELECT id FROM conversations \
        WHERE user_high = $1 AND closed_reason IS NULL AND activity_seq < $2 \
        ORDER BY activity_seq DESC LIMIT $3) AS high_side \
    ) AS mine \
    JOIN conversations c ON c.id = mine.id \
    JOIN users u ON u.id = CASE WHEN c.user_low = $1 THEN c.user_high ELSE c.user_low END \
    ORDER BY c.activity_seq DESC LIMIT $3";
