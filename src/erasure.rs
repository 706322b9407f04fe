//! Deleting one's own account (`DELETE /me`): the store erases it in one
//! transaction (see `store::erasure`); then everyone it concerns hears of
//! it. Partners see their conversation closed, the account's messages in
//! rooms' history windows are deleted before everyone's eyes, whoever
//! moved off a waitlist into the freed seat is told, and every socket of
//! the account closes with 4010 on every node.

use meshi_protocol::{close, ConversationClosedReason, ServerFrame, UserSummary};
use serde_json::json;

use crate::auth::Identity;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::hub::subscribers::Topic;
use crate::notify::kind;
use crate::state::Services;
use crate::store::{DELETED_DISPLAY_NAME, DELETED_HANDLE};

/// The close reason of the sockets of a deleted account.
pub const ACCOUNT_DELETED: &str = "account deleted";

/// Erases the caller's account; the caller has checked their password.
pub async fn delete_account(state: &Services, me: &Identity) -> Result<()> {
    let user = me.user.id;
    let erased = state
        .store
        .erase_user(user, now_ms())
        .await?
        .ok_or(Error::NotFound("user"))?;
    state
        .hub
        .close_all(Topic::User(user), close::TOKEN_ENDED, ACCOUNT_DELETED);
    for &(conversation_id, partner) in &erased.conversations {
        state.hub.publish(
            Topic::User(partner),
            &ServerFrame::ConversationClosed {
                conversation_id: conversation_id.to_string(),
                reason: ConversationClosedReason::AccountDeleted,
            },
        );
    }
    // What follows is best effort past the erasure, which is done: a
    // failure here must not read as the account still being there.
    let shown_as = UserSummary {
        id: user.to_string(),
        handle: DELETED_HANDLE.into(),
        display_name: DELETED_DISPLAY_NAME.into(),
    };
    if let Err(error) = state.rooms.erase_author(user, &shown_as).await {
        tracing::warn!(%error, user_id = user, "could not sweep a deleted account's room messages");
    }
    for (event_id, promoted) in &erased.promoted {
        if promoted.is_empty() {
            continue;
        }
        let title = match state.store.event(*event_id).await {
            Ok(Some(event)) => event.title,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, event_id, "could not load an event to tell its promoted");
                continue;
            }
        };
        let notice = json!({ "event_id": event_id.to_string(), "title": title });
        if let Err(error) = state
            .notifier
            .notify_all(promoted, kind::WAITLIST_PROMOTED, notice)
            .await
        {
            tracing::warn!(%error, event_id, "could not tell the promoted of their seat");
        }
    }
    tracing::info!(
        user_id = user,
        conversations = erased.conversations.len(),
        events = erased.events.len(),
        communities = erased.communities.len(),
        "account deleted"
    );
    Ok(())
}
