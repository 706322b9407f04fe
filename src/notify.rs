//! Notifications: stored for listing over REST, then pushed live to every
//! open socket of the user, on every node.

use meshi_protocol::{Notification, ServerFrame};
use serde_json::Value;

use crate::clock::{now_ms, rfc3339};
use crate::error::Result;
use crate::hub::subscribers::Topic;
use crate::hub::Hub;
use crate::store::{NotificationRow, Store};

/// The kinds a notification can be.
pub mod kind {
    pub const INTEREST_RECEIVED: &str = "interest_received";
    pub const MATCHED: &str = "matched";
    pub const WAITLIST_PROMOTED: &str = "waitlist_promoted";
    pub const EVENT_UPDATED: &str = "event_updated";
    pub const EVENT_CANCELLED: &str = "event_cancelled";
    /// A report the user filed was resolved (`data`: `report_id`, `kind`,
    /// `action`; never who resolved it).
    pub const REPORT_RESOLVED: &str = "report_resolved";
}

#[derive(Clone)]
pub struct Notifier {
    store: Store,
    hub: Hub,
}

impl Notifier {
    pub fn new(store: Store, hub: Hub) -> Self {
        Notifier { store, hub }
    }

    /// Stores the notification, then pushes it. Storing comes first so a
    /// pushed notification can always be listed again.
    pub async fn notify(&self, user_id: i64, kind: &str, data: Value) -> Result<()> {
        let row = self
            .store
            .add_notification(user_id, kind, &data.to_string(), now_ms())
            .await?;
        self.hub.publish(
            Topic::User(user_id),
            &ServerFrame::Notification {
                notification: view(&row),
            },
        );
        Ok(())
    }

    /// Notifies several users of something `by` did, leaving out everyone
    /// who blocks `by` or whom `by` blocks.
    pub async fn notify_all_from(
        &self,
        by: i64,
        user_ids: &[i64],
        kind: &str,
        data: Value,
    ) -> Result<()> {
        let blocked = self.store.blocked_either_way(by).await?;
        let told: Vec<i64> = user_ids
            .iter()
            .copied()
            .filter(|user| !blocked.contains(user))
            .collect();
        self.notify_all(&told, kind, data).await
    }

    /// Notifies several users, carrying on past a failure so one bad write
    /// does not silence the rest; the first error is returned.
    pub async fn notify_all(&self, user_ids: &[i64], kind: &str, data: Value) -> Result<()> {
        let mut first_error = None;
        for &user_id in user_ids {
            if let Err(err) = self.notify(user_id, kind, data.clone()).await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

pub fn view(row: &NotificationRow) -> Notification {
    Notification {
        id: row.id.to_string(),
        kind: row.kind.clone(),
        data: serde_json::from_str(&row.data).unwrap_or(Value::Null),
        created_at: rfc3339(row.created_at),
    }
}
