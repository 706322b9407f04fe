//! The user as REST shows it, and the short form frames carry.

use meshi_protocol::UserSummary;
use serde::Serialize;

use crate::clock::rfc3339;
use crate::store::{UserRow, DELETED_HANDLE, DELETED_HANDLE_PREFIX};

/// The handle everyone sees: a deleted account's shows as `deleted`.
pub fn shown_handle(stored: &str) -> String {
    if stored.starts_with(DELETED_HANDLE_PREFIX) {
        DELETED_HANDLE.to_owned()
    } else {
        stored.to_owned()
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Profile {
    pub id: String,
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub tags: Vec<String>,
    pub role: String,
    pub created_at: String,
}

impl From<&UserRow> for Profile {
    fn from(row: &UserRow) -> Self {
        Profile {
            id: row.id.to_string(),
            handle: shown_handle(&row.handle),
            display_name: row.display_name.clone(),
            bio: row.bio.clone(),
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            role: row.role.clone(),
            created_at: rfc3339(row.created_at),
        }
    }
}

pub fn summary(row: &UserRow) -> UserSummary {
    UserSummary {
        id: row.id.to_string(),
        handle: shown_handle(&row.handle),
        display_name: row.display_name.clone(),
    }
}
