//! Deleting an account at its owner's request, in one transaction: either
//! all of it is erased or, after a failure, none of it.

use super::events::{Locked, GOING_COUNT, PROMOTE};
use super::measured;
use super::{on_pool, Store, StoreError};

/// What `users.handle` becomes: `-` is never in a handle anyone can
/// register, so the row keeps a unique handle nobody can take or mistake.
pub const DELETED_HANDLE_PREFIX: &str = "deleted-";
/// How a deleted account shows to others.
pub const DELETED_HANDLE: &str = "deleted";
pub const DELETED_DISPLAY_NAME: &str = "Deleted user";

/// What erasing an account changed for others, for the caller to tell.
#[derive(Debug, Default)]
pub struct Erased {
    /// Sessions that ended with it.
    pub sessions: Vec<i64>,
    /// Each conversation that closed, with the partner in it.
    pub conversations: Vec<(i64, i64)>,
    /// Events whose seat it gave up, with who moved off the waitlist into
    /// it, first promoted first.
    pub promoted: Vec<(i64, Vec<i64>)>,
    /// Events and communities it was in, whose rooms it must leave.
    pub events: Vec<i64>,
    pub communities: Vec<i64>,
}

impl Store {
    /// Erases `user_id`'s account. The profile is emptied, the handle
    /// retired (an identity provider's subject stays, so that its tokens
    /// keep finding this account, deleted, rather than open a new one);
    /// cards, interests, matches, RSVPs (seats go to the
    /// waitlist in order), memberships, blocks and notifications go; the
    /// user's messages stay in place deleted; conversations close;
    /// sessions end. `None` when there is no such live account.
    pub async fn erase_user(&self, user_id: i64, now: i64) -> Result<Option<Erased>, StoreError> {
        measured("erase_user", async {
            let lock_sql = self.lock_event_sql();
            let deleted_handle = format!("{DELETED_HANDLE_PREFIX}{user_id}");
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                // The write comes first, so SQLite takes its write lock at once;
                // the old handle is read back before it is overwritten.
                let old: Option<(String,)> = sqlx::query_as(
                    "UPDATE users SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL \
                     RETURNING handle",
                )
                .bind(user_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((old_handle,)) = old else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                sqlx::query("INSERT INTO retired_handles (handle, retired_at) VALUES ($1, $2)")
                    .bind(&old_handle)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE users SET handle = $2, display_name = $3, bio = '', tags = '[]', \
                     password_hash = NULL, last_seen_at = NULL, \
                     suspended_until = NULL, suspension_reason = NULL WHERE id = $1",
                )
                .bind(user_id)
                .bind(&deleted_handle)
                .bind(DELETED_DISPLAY_NAME)
                .execute(&mut *tx)
                .await?;

                let mut erased = Erased::default();
                // Seats first, event by event in id order (so two erasures
                // never lock the same events in opposite orders), under each
                // event's lock as an RSVP withdrawn by hand would be.
                let rsvps: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT event_id, status FROM rsvps WHERE user_id = $1 ORDER BY event_id",
                )
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                for (event_id, status) in rsvps {
                    let locked: Option<Locked> = sqlx::query_as(&lock_sql)
                        .bind(event_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM rsvps WHERE event_id = $1 AND user_id = $2")
                        .bind(event_id)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                    erased.events.push(event_id);
                    let Some(event) = locked else { continue };
                    if status != "going" || event.cancelled {
                        continue;
                    }
                    let (going,): (i64,) = sqlx::query_as(GOING_COUNT)
                        .bind(event_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    if event.capacity > going {
                        let mut promoted: Vec<(i64, i64)> = sqlx::query_as(PROMOTE)
                            .bind(event_id)
                            .bind(event.capacity - going)
                            .fetch_all(&mut *tx)
                            .await?;
                        promoted.sort_by_key(|&(_, position)| position);
                        erased
                            .promoted
                            .push((event_id, promoted.into_iter().map(|(user, _)| user).collect()));
                    }
                }
                erased.communities = sqlx::query_scalar(
                    "DELETE FROM memberships WHERE user_id = $1 RETURNING community_id",
                )
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                erased.conversations = sqlx::query_as(
                    "UPDATE conversations SET closed_reason = 'account_deleted' \
                     WHERE user_low = $1 OR user_high = $1 \
                     RETURNING id, CASE WHEN user_low = $1 THEN user_high ELSE user_low END",
                )
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE conversation_messages SET text = '', deleted = $2 WHERE sender_id = $1",
                )
                .bind(user_id)
                .bind(true)
                .execute(&mut *tx)
                .await?;
                for sql in [
                    "DELETE FROM matches WHERE owner_id = $1 OR user_id = $1",
                    "DELETE FROM interests WHERE user_id = $1",
                    "DELETE FROM cards WHERE owner_id = $1",
                    "DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1",
                    "DELETE FROM notifications WHERE user_id = $1",
                ] {
                    sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
                }
                erased.sessions = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL \
                     RETURNING id",
                )
                .bind(user_id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                super::accounts::count_revoked("account_deleted", erased.sessions.len());
                Ok(Some(erased))
            })
        })
        .await
    }
}
