//! What ends a matched pair's contact: unmatching, which closes their
//! conversation until they match again, and blocking, which closes it
//! (and interest, matching, presence and notifications between them) for
//! as long as the block lasts. Whether a conversation takes messages is
//! decided here for every op that needs to know; storing a message checks
//! the same in its own statement, so none slips in after a block.

use meshi_protocol::{ConversationClosedReason, ServerFrame};

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::hub::subscribers::Topic;
use crate::state::Services;
use crate::store::{ConversationAccess, Pair};

/// The `closed_reason` of a pair that unmatched.
const UNMATCHED: &str = "unmatched";

/// The refusal of an op on a conversation that takes no messages.
pub const CLOSED: Error = Error::Forbidden("this conversation is closed");

/// The conversation, if `user` is in it and the pair did not unmatch. A
/// block leaves it readable, and so does the partner deleting their
/// account: what was said stays, theirs shown deleted.
pub async fn require_readable(
    state: &Services,
    conversation_id: i64,
    user: i64,
) -> Result<ConversationAccess> {
    let access = state
        .store
        .conversation_access(conversation_id)
        .await?
        .ok_or(Error::NotFound("conversation"))?;
    if !access.pair().includes(user) {
        return Err(Error::Forbidden("you are not in this conversation"));
    }
    if access.closed_reason.as_deref() == Some(UNMATCHED) {
        return Err(CLOSED);
    }
    Ok(access)
}

/// Like [`require_readable`], and open for messages too.
pub async fn require_writable(state: &Services, conversation_id: i64, user: i64) -> Result<Pair> {
    let access = require_readable(state, conversation_id, user).await?;
    if access.blocked || access.closed_reason.is_some() {
        return Err(CLOSED);
    }
    Ok(access.pair())
}

/// Refuses what one of a blocking pair would do to the other.
pub async fn require_not_blocked(state: &Services, a: i64, b: i64) -> Result<()> {
    if state.store.blocked_between(a, b).await? {
        Err(Error::Forbidden("one of you blocks the other"))
    } else {
        Ok(())
    }
}

/// `me` blocks `other` (idempotent). Their conversation, if they have
/// one, closes for both at once.
pub async fn block(state: &Services, me: i64, other: i64) -> Result<()> {
    if me == other {
        return Err(Error::bad("id", "you cannot block yourself"));
    }
    state
        .store
        .user_by_id(other)
        .await?
        .ok_or(Error::NotFound("user"))?;
    if !state.store.block(me, other, now_ms()).await? {
        return Ok(());
    }
    if let Some(conversation_id) = state.store.conversation_of_pair(me, other).await? {
        let pair = pair_of(me, other);
        tell_closed(
            state,
            conversation_id,
            pair,
            ConversationClosedReason::Blocked,
        );
    }
    tracing::info!(user_id = me, "user blocked another");
    Ok(())
}

/// Lifts `me`'s block of `other` (idempotent); whatever it refused
/// meanwhile stays refused.
pub async fn unblock(state: &Services, me: i64, other: i64) -> Result<()> {
    if me == other {
        return Err(Error::bad("id", "you cannot block yourself"));
    }
    state.store.unblock(me, other).await?;
    Ok(())
}

/// `me` unmatches the pair of `match_id`; both hear their conversation
/// closed.
pub async fn unmatch(state: &Services, me: i64, match_id: i64) -> Result<()> {
    let unmatched = state
        .store
        .unmatch(match_id, me)
        .await?
        .ok_or(Error::NotFound("match"))?;
    tell_closed(
        state,
        unmatched.conversation_id,
        unmatched.pair,
        ConversationClosedReason::Unmatched,
    );
    tracing::info!(user_id = me, "pair unmatched");
    Ok(())
}

fn pair_of(a: i64, b: i64) -> Pair {
    Pair {
        user_low: a.min(b),
        user_high: a.max(b),
    }
}

/// Every socket of both, on every node.
fn tell_closed(
    state: &Services,
    conversation_id: i64,
    pair: Pair,
    reason: ConversationClosedReason,
) {
    let closed = ServerFrame::ConversationClosed {
        conversation_id: conversation_id.to_string(),
        reason,
    };
    tell_pair(state, pair, &closed);
}

/// Sends `frame`, serialized once, to every socket of both of the pair, on
/// every node.
pub fn tell_pair(state: &Services, pair: Pair, frame: &ServerFrame) {
    let frame = crate::hub::encode(frame);
    state
        .hub
        .publish_frame(Topic::User(pair.user_low), frame.clone());
    state.hub.publish_frame(Topic::User(pair.user_high), frame);
}
