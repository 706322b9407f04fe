//! Everything stored about one user, for `GET /me/export`: each kind of
//! data the platform keeps, read as it is stored (times shown as RFC 3339).
//! A kind of data added to the schema belongs here too.

use super::measured;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::FromRow;

use super::dm_rows::DM_SELECT;
use super::{on_pool, DmRow, Store, StoreError};
use crate::clock::{serialize_ms, serialize_opt_ms};

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedProfile {
    pub id: i64,
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    /// JSON array of strings, as stored.
    pub tags: String,
    pub role: String,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "serialize_opt_ms")]
    pub last_seen_at: Option<i64>,
    #[serde(serialize_with = "serialize_opt_ms")]
    pub suspended_until: Option<i64>,
    pub has_password: bool,
    pub signs_in_with_provider: bool,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedSession {
    pub id: i64,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "serialize_ms")]
    pub expires_at: i64,
    #[serde(serialize_with = "serialize_opt_ms")]
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedCard {
    pub id: i64,
    pub title: String,
    pub body: String,
    pub tags: String,
    pub is_open: bool,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "serialize_ms")]
    pub updated_at: i64,
}

/// An interest: pressed by the user, or on one of the user's cards.
#[derive(Debug, Serialize, FromRow)]
pub struct ExportedInterest {
    pub card_id: i64,
    pub user_id: i64,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedMatch {
    pub id: i64,
    pub card_id: i64,
    pub owner_id: i64,
    pub user_id: i64,
    pub conversation_id: i64,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedConversation {
    pub id: i64,
    pub user_low: i64,
    pub user_high: i64,
    pub closed_reason: Option<String>,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
    #[sqlx(skip)]
    pub messages: Vec<ExportedMessage>,
}

#[derive(Debug, Serialize)]
pub struct ExportedMessage {
    pub seq: i64,
    pub message_id: String,
    pub sender_id: i64,
    pub text: String,
    pub deleted: bool,
    #[serde(serialize_with = "serialize_ms")]
    pub sent_at: i64,
    #[serde(serialize_with = "serialize_opt_ms")]
    pub edited_at: Option<i64>,
}

impl From<DmRow> for ExportedMessage {
    fn from(row: DmRow) -> Self {
        ExportedMessage {
            seq: row.seq,
            message_id: row.message_id,
            sender_id: row.sender_id,
            text: row.text,
            deleted: row.deleted,
            sent_at: row.sent_at,
            edited_at: row.edited_at,
        }
    }
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedRsvp {
    pub event_id: i64,
    pub status: String,
    pub position: i64,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedEvent {
    pub id: i64,
    pub title: String,
    pub description: String,
    #[serde(serialize_with = "serialize_ms")]
    pub starts_at: i64,
    #[serde(serialize_with = "serialize_opt_ms")]
    pub ends_at: Option<i64>,
    pub venue: Option<String>,
    pub online_url: Option<String>,
    pub capacity: i64,
    pub tags: String,
    pub cancelled: bool,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedCommunity {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub tags: String,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedMembership {
    pub community_id: i64,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedBlock {
    pub blocked_id: i64,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedNotification {
    pub id: i64,
    pub kind: String,
    /// JSON object, as stored.
    pub data: String,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

#[derive(Debug, Serialize, FromRow)]
pub struct ExportedReport {
    pub id: i64,
    pub kind: String,
    pub target_id: String,
    pub reason: String,
    pub excerpt: String,
    pub status: String,
    pub action: Option<String>,
    #[serde(serialize_with = "serialize_ms")]
    pub created_at: i64,
}

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Export {
    pub profile: ExportedProfile,
    pub sessions: Vec<ExportedSession>,
    pub cards: Vec<ExportedCard>,
    pub interests: Vec<ExportedInterest>,
    pub interests_received: Vec<ExportedInterest>,
    pub matches: Vec<ExportedMatch>,
    pub conversations: Vec<ExportedConversation>,
    pub rsvps: Vec<ExportedRsvp>,
    pub hosted_events: Vec<ExportedEvent>,
    pub memberships: Vec<ExportedMembership>,
    pub owned_communities: Vec<ExportedCommunity>,
    pub blocks: Vec<ExportedBlock>,
    pub notifications: Vec<ExportedNotification>,
    pub reports: Vec<ExportedReport>,
}

impl Store {
    /// Rows of `sql`, whose one parameter is the user's id.
    async fn rows_of<T>(&self, sql: &str, user_id: i64) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, T>(sql)
            .bind(user_id)
            .fetch_all(pool)
            .await)?)
    }

    /// Everything stored about `user_id`; `None` when there is no such user.
    pub async fn export_of(&self, user_id: i64) -> Result<Option<Export>, StoreError> {
        measured("export_of", async {
            let profile: Option<ExportedProfile> = self
                .rows_of(
                    "SELECT id, handle, display_name, bio, tags, role, created_at, last_seen_at, \
                     suspended_until, password_hash IS NOT NULL AS has_password, \
                     external_sub IS NOT NULL AS signs_in_with_provider FROM users WHERE id = $1",
                    user_id,
                )
                .await?
                .pop();
            let Some(profile) = profile else {
                return Ok(None);
            };
            let mut conversations: Vec<ExportedConversation> = self
                .rows_of(
                    "SELECT id, user_low, user_high, closed_reason, created_at FROM conversations \
                     WHERE user_low = $1 OR user_high = $1 ORDER BY id",
                    user_id,
                )
                .await?;
            let messages_sql = format!("{DM_SELECT} WHERE m.conversation_id = $1 ORDER BY m.seq");
            for conversation in &mut conversations {
                let rows: Vec<DmRow> = self.rows_of(&messages_sql, conversation.id).await?;
                conversation.messages = rows.into_iter().map(ExportedMessage::from).collect();
            }
            Ok(Some(Export {
                profile,
                sessions: self
                    .rows_of(
                        "SELECT id, created_at, expires_at, revoked_at FROM sessions \
                         WHERE user_id = $1 ORDER BY id",
                        user_id,
                    )
                    .await?,
                cards: self
                    .rows_of(
                        "SELECT id, title, body, tags, is_open, created_at, updated_at FROM cards \
                         WHERE owner_id = $1 ORDER BY id",
                        user_id,
                    )
                    .await?,
                interests: self
                    .rows_of(
                        "SELECT card_id, user_id, created_at FROM interests WHERE user_id = $1 \
                         ORDER BY created_at, card_id",
                        user_id,
                    )
                    .await?,
                interests_received: self
                    .rows_of(
                        "SELECT i.card_id, i.user_id, i.created_at FROM interests i \
                         JOIN cards c ON c.id = i.card_id WHERE c.owner_id = $1 \
                         ORDER BY i.created_at, i.card_id, i.user_id",
                        user_id,
                    )
                    .await?,
                matches: self
                    .rows_of(
                        "SELECT id, card_id, owner_id, user_id, conversation_id, created_at \
                         FROM matches WHERE owner_id = $1 OR user_id = $1 ORDER BY id",
                        user_id,
                    )
                    .await?,
                conversations,
                rsvps: self
                    .rows_of(
                        "SELECT event_id, status, CAST(position AS BIGINT) AS position, created_at \
                         FROM rsvps WHERE user_id = $1 ORDER BY event_id",
                        user_id,
                    )
                    .await?,
                hosted_events: self
                    .rows_of(
                        "SELECT id, title, description, starts_at, ends_at, venue, online_url, \
                         CAST(capacity AS BIGINT) AS capacity, tags, cancelled, created_at \
                         FROM events WHERE host_id = $1 ORDER BY id",
                        user_id,
                    )
                    .await?,
                memberships: self
                    .rows_of(
                        "SELECT community_id, created_at FROM memberships WHERE user_id = $1 \
                         ORDER BY community_id",
                        user_id,
                    )
                    .await?,
                owned_communities: self
                    .rows_of(
                        "SELECT id, name, description, tags, created_at FROM communities \
                         WHERE owner_id = $1 ORDER BY id",
                        user_id,
                    )
                    .await?,
                blocks: self
                    .rows_of(
                        "SELECT blocked_id, created_at FROM blocks WHERE blocker_id = $1 \
                         ORDER BY created_at, blocked_id",
                        user_id,
                    )
                    .await?,
                notifications: self
                    .rows_of(
                        "SELECT id, kind, data, created_at FROM notifications WHERE user_id = $1 \
                         ORDER BY id",
                        user_id,
                    )
                    .await?,
                reports: self
                    .rows_of(
                        "SELECT id, kind, target_id, reason, excerpt, status, action, created_at \
                         FROM reports WHERE reporter_id = $1 ORDER BY id",
                        user_id,
                    )
                    .await?,
            }))
        })
        .await
    }
}
