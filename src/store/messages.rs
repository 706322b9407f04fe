//! Messages of matched pairs, with a gap-free `seq` per conversation.

use super::dm_rows::{
    refusal, takes_messages, DmOutcome, DmRevision, DmRow, NewDm, Pair, DM_SELECT, REFUSAL,
};
use super::matches::NEXT_ACTIVITY_SQLITE;
use super::measured;
use super::{dm_postgres, on_pool, Pool, Store, StoreError};

impl Store {
    /// Stores a batch of messages in one transaction (group commit), in
    /// order. Postgres takes the batch in one statement (see
    /// `dm_postgres`); here each message takes the next `seq` of its conversation by
    /// incrementing `conversations.last_seq` in the same transaction, so
    /// seqs have no gaps even with several writers: the row update
    /// serializes them. The same update moves the conversation to the top
    /// of both participants' lists (`activity_seq`, see
    /// [`Store::conversations_of`]). The transaction opens with a write so SQLite takes
    /// its write lock up front rather than failing to upgrade a read lock.
    pub async fn append_dms(&self, batch: &[NewDm]) -> Result<Vec<DmOutcome>, StoreError> {
        measured("append_dms", async {
            if let Pool::Postgres(pool) = &self.pool {
                return dm_postgres::append_dms(pool, batch).await;
            }
            let take_seq = format!(
                "UPDATE conversations SET last_seq = last_seq + 1, \
                 low_read_seq = CASE WHEN user_low = $2 THEN last_seq + 1 ELSE low_read_seq END, \
                 high_read_seq = CASE WHEN user_high = $2 THEN last_seq + 1 ELSE high_read_seq END, \
                 activity_seq = {NEXT_ACTIVITY_SQLITE}, last_activity = MAX(last_activity, $3) \
                 WHERE id = $1 AND (user_low = $2 OR user_high = $2) AND {} \
                 RETURNING last_seq, user_low, user_high",
                takes_messages("conversations")
            );
            let by_client_id = format!(
                "{DM_SELECT} WHERE m.conversation_id = $1 AND m.sender_id = $2 AND m.client_msg_id = $3"
            );
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                sqlx::query("UPDATE conversations SET last_seq = last_seq WHERE id = 0")
                    .execute(&mut *tx)
                    .await?;
                let mut outcomes = Vec::with_capacity(batch.len());
                for dm in batch {
                    if let Some(client_msg_id) = &dm.client_msg_id {
                        let first: Option<DmRow> = sqlx::query_as(&by_client_id)
                            .bind(dm.conversation_id)
                            .bind(dm.sender_id)
                            .bind(client_msg_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if let Some(first) = first {
                            outcomes.push(DmOutcome::Duplicate(first));
                            continue;
                        }
                    }
                    // Taking the next seq also checks the sender is in the
                    // conversation and that it takes messages, in one round
                    // trip, so nothing is stored after a block or an unmatch. Sending reads everything
                    // before it: the sender's own messages never count as
                    // unread to them.
                    let taken: Option<(i64, i64, i64)> = sqlx::query_as(&take_seq)
                    .bind(dm.conversation_id)
                    .bind(dm.sender_id)
                    .bind(dm.sent_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((seq, user_low, user_high)) = taken else {
                        let found = sqlx::query_as(REFUSAL)
                            .bind(dm.conversation_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        outcomes.push(refusal(dm.sender_id, found));
                        continue;
                    };
                    sqlx::query(
                        "INSERT INTO conversation_messages \
                         (conversation_id, seq, message_id, sender_id, text, client_msg_id, sent_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(dm.conversation_id)
                    .bind(seq)
                    .bind(&dm.message_id)
                    .bind(dm.sender_id)
                    .bind(&dm.text)
                    .bind(dm.client_msg_id.as_deref())
                    .bind(dm.sent_at)
                    .execute(&mut *tx)
                    .await?;
                    let pair = Pair { user_low, user_high };
                    outcomes.push(DmOutcome::Stored {
                        message: dm.stored_as(seq),
                        other_id: pair.other(dm.sender_id),
                    });
                }
                tx.commit().await?;
                Ok(outcomes)
            })
        })
        .await
    }

    pub async fn conversation_pair(
        &self,
        conversation_id: i64,
    ) -> Result<Option<Pair>, StoreError> {
        measured("conversation_pair", async {
            Ok(on_pool!(self, pool => sqlx::query_as::<_, Pair>(
                "SELECT user_low, user_high FROM conversations WHERE id = $1",
            )
            .bind(conversation_id)
            .fetch_optional(pool)
            .await)?)
        })
        .await
    }

    /// Messages in ascending `seq`: after `after_seq`, or the latest before
    /// `before_seq` (or the latest of all).
    pub async fn dm_history(
        &self,
        conversation_id: i64,
        after_seq: Option<i64>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DmRow>, StoreError> {
        measured("dm_history", async {
            let limit = i64::from(limit);
            let mut rows: Vec<DmRow> = if let Some(after) = after_seq {
                let sql = format!(
                    "{DM_SELECT} WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq < $3 \
                     ORDER BY m.seq ASC LIMIT $4"
                );
                on_pool!(self, pool => sqlx::query_as::<_, DmRow>(&sql)
                    .bind(conversation_id)
                    .bind(after)
                    .bind(before_seq.unwrap_or(i64::MAX))
                    .bind(limit)
                    .fetch_all(pool)
                    .await)?
            } else {
                let sql = format!(
                    "{DM_SELECT} WHERE m.conversation_id = $1 AND m.seq < $2 \
                     ORDER BY m.seq DESC LIMIT $3"
                );
                let mut rows = on_pool!(self, pool => sqlx::query_as::<_, DmRow>(&sql)
                    .bind(conversation_id)
                    .bind(before_seq.unwrap_or(i64::MAX))
                    .bind(limit)
                    .fetch_all(pool)
                    .await)?;
                rows.reverse();
                rows
            };
            rows.sort_by_key(|r| r.seq);
            Ok(rows)
        })
        .await
    }

    /// One message of a conversation, by its id.
    pub async fn dm_message(
        &self,
        conversation_id: i64,
        message_id: &str,
    ) -> Result<Option<DmRow>, StoreError> {
        measured("dm_message", async {
            let sql = format!("{DM_SELECT} WHERE m.conversation_id = $1 AND m.message_id = $2");
            Ok(on_pool!(self, pool => sqlx::query_as::<_, DmRow>(&sql)
                .bind(conversation_id)
                .bind(message_id)
                .fetch_optional(pool)
                .await)?)
        })
        .await
    }

    /// Edits or deletes a message of `sender_id` that is not deleted;
    /// answers the message as it is now, or `None` when there is no such
    /// message left to change.
    pub async fn revise_dm(
        &self,
        conversation_id: i64,
        message_id: &str,
        sender_id: i64,
        revision: DmRevision<'_>,
    ) -> Result<Option<DmRow>, StoreError> {
        measured("revise_dm", async {
            let (text, edited_at, deleted) = match revision {
                DmRevision::Edit { text, at } => (text, Some(at), false),
                DmRevision::Delete => ("", None, true),
            };
            let changed = on_pool!(self, pool => sqlx::query(
                "UPDATE conversation_messages SET text = $1, \
                 edited_at = COALESCE($2, edited_at), deleted = $3 \
                 WHERE conversation_id = $4 AND message_id = $5 AND sender_id = $6 AND NOT deleted",
            )
            .bind(text)
            .bind(edited_at)
            .bind(deleted)
            .bind(conversation_id)
            .bind(message_id)
            .bind(sender_id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
            if changed == 0 {
                return Ok(None);
            }
            self.dm_message(conversation_id, message_id).await
        })
        .await
    }

    /// The newest message of a conversation.
    pub async fn last_dm(&self, conversation_id: i64) -> Result<Option<DmRow>, StoreError> {
        measured("last_dm", async {
            let sql =
                format!("{DM_SELECT} WHERE m.conversation_id = $1 ORDER BY m.seq DESC LIMIT 1");
            Ok(on_pool!(self, pool => sqlx::query_as::<_, DmRow>(&sql)
                .bind(conversation_id)
                .fetch_optional(pool)
                .await)?)
        })
        .await
    }

    /// Moves `user`'s read marker forward to `seq` (never back, never past
    /// the last message). Returns the marker afterwards, or `None` when
    /// the user is not a participant.
    pub async fn mark_dm_read(
        &self,
        conversation_id: i64,
        user: i64,
        seq: i64,
    ) -> Result<Option<i64>, StoreError> {
        measured("mark_dm_read", async {
            // The new marker is `seq`, capped at the last message, and only
            // when it moves forward.
            const SQL: &str = "UPDATE conversations SET \
                low_read_seq = CASE WHEN user_low = $2 AND $3 > low_read_seq \
                  THEN CASE WHEN $3 < last_seq THEN $3 ELSE last_seq END ELSE low_read_seq END, \
                high_read_seq = CASE WHEN user_high = $2 AND $3 > high_read_seq \
                  THEN CASE WHEN $3 < last_seq THEN $3 ELSE last_seq END ELSE high_read_seq END \
                WHERE id = $1 AND (user_low = $2 OR user_high = $2) \
                RETURNING CASE WHEN user_low = $2 THEN low_read_seq ELSE high_read_seq END";
            let row: Option<(i64,)> = on_pool!(self, pool => sqlx::query_as(SQL)
                .bind(conversation_id)
                .bind(user)
                .bind(seq)
                .fetch_optional(pool)
                .await)?;
            Ok(row.map(|(marker,)| marker))
        })
        .await
    }

    /// Everyone `user` shares a conversation with that takes messages:
    /// an unmatched or blocking pair sees nothing of each other.
    pub async fn partner_ids(&self, user: i64) -> Result<Vec<i64>, StoreError> {
        measured("partner_ids", async {
            let sql = format!(
                "SELECT CASE WHEN user_low = $1 THEN user_high ELSE user_low END \
                 FROM conversations WHERE (user_low = $1 OR user_high = $1) AND {}",
                takes_messages("conversations")
            );
            let rows: Vec<(i64,)> = on_pool!(self, pool => sqlx::query_as(
                &sql,
            )
            .bind(user)
            .fetch_all(pool)
            .await)?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
        .await
    }

    pub async fn set_last_seen(&self, user: i64, at: i64) -> Result<(), StoreError> {
        measured("set_last_seen", async {
            on_pool!(self, pool => sqlx::query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
                .bind(at)
                .bind(user)
                .execute(pool)
                .await
                .map(|_| ()))?;
            Ok(())
        })
        .await
    }

    /// `last_seen_at` of each of these users that exists.
    pub async fn last_seen(&self, users: &[i64]) -> Result<Vec<(i64, Option<i64>)>, StoreError> {
        measured("last_seen", async {
            if users.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders: Vec<String> = (1..=users.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT id, last_seen_at FROM users WHERE id IN ({})",
                placeholders.join(", ")
            );
            Ok(on_pool!(self, pool => {
                let mut query = sqlx::query_as::<_, (i64, Option<i64>)>(&sql);
                for &user in users {
                    query = query.bind(user);
                }
                query.fetch_all(pool).await
            })?)
        })
        .await
    }
}
