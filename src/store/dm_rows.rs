//! The shapes of direct messages as both backends store and return them,
//! and the one SELECT that reads them back. A leaf: the SQLite path
//! (`messages`) and the Postgres batch path (`dm_postgres`) both build on
//! it without importing each other both ways.

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DmRow {
    pub conversation_id: i64,
    pub seq: i64,
    pub message_id: String,
    pub sender_id: i64,
    pub sender_handle: String,
    pub sender_display_name: String,
    pub text: String,
    pub client_msg_id: Option<String>,
    pub sent_at: i64,
    pub edited_at: Option<i64>,
    pub deleted: bool,
}

/// A message waiting to be stored.
#[derive(Debug, Clone)]
pub struct NewDm {
    pub conversation_id: i64,
    pub sender_id: i64,
    /// The sender as their socket knows them, for the stored message's
    /// echo; saves reading the user back for every message.
    pub sender_handle: String,
    pub sender_display_name: String,
    pub text: String,
    pub client_msg_id: Option<String>,
    pub message_id: String,
    pub sent_at: i64,
}

impl NewDm {
    /// The message as stored, with the `seq` it took.
    pub(super) fn stored_as(&self, seq: i64) -> DmRow {
        DmRow {
            conversation_id: self.conversation_id,
            seq,
            message_id: self.message_id.clone(),
            sender_id: self.sender_id,
            sender_handle: self.sender_handle.clone(),
            sender_display_name: self.sender_display_name.clone(),
            text: self.text.clone(),
            client_msg_id: self.client_msg_id.clone(),
            sent_at: self.sent_at,
            edited_at: None,
            deleted: false,
        }
    }
}

/// What storing one message came to.
#[derive(Debug, Clone)]
pub enum DmOutcome {
    Stored {
        message: DmRow,
        other_id: i64,
    },
    /// The sender used this `client_msg_id` before; nothing was stored.
    Duplicate(DmRow),
    NotParticipant,
    NoConversation,
    /// The pair unmatched, or one of them blocks the other.
    Closed,
}

/// The two sides of a conversation.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Pair {
    pub user_low: i64,
    pub user_high: i64,
}

impl Pair {
    pub fn includes(&self, user: i64) -> bool {
        self.user_low == user || self.user_high == user
    }

    pub fn other(&self, user: i64) -> i64 {
        if self.user_low == user {
            self.user_high
        } else {
            self.user_low
        }
    }
}

pub(super) const DM_SELECT: &str = "SELECT m.conversation_id, m.seq, m.message_id, m.sender_id, \
    u.handle AS sender_handle, u.display_name AS sender_display_name, m.text, m.client_msg_id, \
    m.sent_at, m.edited_at, m.deleted \
    FROM conversation_messages m JOIN users u ON u.id = m.sender_id";

/// A change to a direct message after it was sent.
#[derive(Debug, Clone, Copy)]
pub enum DmRevision<'a> {
    Edit { text: &'a str, at: i64 },
    Delete,
}

/// The SQL condition that the conversation `c` (a table name or alias)
/// takes messages: nobody closed it, and neither of the pair blocks the
/// other.
pub(super) fn takes_messages(c: &str) -> String {
    format!(
        "{c}.closed_reason IS NULL AND NOT EXISTS (SELECT 1 FROM blocks b WHERE \
         (b.blocker_id = {c}.user_low AND b.blocked_id = {c}.user_high) OR \
         (b.blocker_id = {c}.user_high AND b.blocked_id = {c}.user_low))"
    )
}

/// Why a message to `conversation_id` from `sender_id` was not stored,
/// once the statement storing it left it out.
pub(super) const REFUSAL: &str =
    "SELECT user_low, user_high, closed_reason FROM conversations WHERE id = $1";

pub(super) fn refusal(sender_id: i64, found: Option<(i64, i64, Option<String>)>) -> DmOutcome {
    match found {
        None => DmOutcome::NoConversation,
        Some((low, high, _)) if low != sender_id && high != sender_id => DmOutcome::NotParticipant,
        Some(_) => DmOutcome::Closed,
    }
}
