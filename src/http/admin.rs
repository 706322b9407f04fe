//! Moderation and administration: role changes, closing rooms, reading the
//! audit log. Every handler asks [`require`] first, and every action is
//! recorded before or together with its effect.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::RoomClosedReason;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::extract::{path_id, Body, Caller, Params};
use super::page::{self, Page, PageQuery};
use crate::auth::roles::{require, Permission, Role, RoomActor};
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, ErrorResponse, Result};
use crate::moderation;
use crate::state::AppState;
use crate::store::{AuditRow, NewAudit, AUDIT_ROLE_CHANGE};

#[derive(Deserialize, ToSchema)]
pub struct RoleChange {
    /// `member`, `moderator` or `admin`.
    role: String,
}

#[utoipa::path(
    put,
    path = "/admin/users/{id}/role",
    operation_id = "change_role",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    request_body = RoleChange,
    responses(
        (status = 204, description = "the role is changed and recorded in the audit log"),
        (status = 400, description = "`role` is not a role", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is not an admin", body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
/// `PUT /admin/users/{id}/role`: admins set anyone's role.
pub async fn change_role(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(body): Body<RoleChange>,
) -> Result<StatusCode> {
    require(&me, Permission::ChangeRole)?;
    let role: Role = body
        .role
        .parse()
        .map_err(|_| Error::bad("role", "must be member, moderator or admin"))?;
    let user_id = path_id(&id, "user")?;
    let target = format!("user:{user_id}");
    state
        .store
        .change_role(
            user_id,
            role.as_str(),
            NewAudit {
                actor_id: Some(me.user.id),
                action: AUDIT_ROLE_CHANGE,
                target: &target,
                data: "{}",
                now: now_ms(),
            },
        )
        .await?
        .ok_or(Error::NotFound("user"))?;
    tracing::info!(actor_id = me.user.id, user_id, %role, "role changed");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/admin/rooms/{id}",
    operation_id = "close_room",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "room id")),
    responses(
        (status = 204, description = "the room is closed for everyone inside, reason `moderator`"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is neither a moderator nor an admin", body = ErrorResponse),
        (status = 404, description = "no such open room", body = ErrorResponse),
    ),
)]
/// `DELETE /admin/rooms/{id}`: moderators and admins close a room; everyone
/// inside gets `room.closed` with reason `moderator`.
pub async fn close_room(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(room_id): Path<String>,
) -> Result<StatusCode> {
    require(&me, Permission::CloseRoom)?;
    let room = state.rooms.info(&room_id).await?;
    moderation::close_room(
        &state,
        &me,
        RoomActor::Staff,
        &room,
        RoomClosedReason::Moderator,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    id: String,
    actor_id: Option<String>,
    action: String,
    target: String,
    data: serde_json::Value,
    created_at: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            id: row.id.to_string(),
            actor_id: row.actor_id.map(|id| id.to_string()),
            action: row.action,
            target: row.target,
            data: serde_json::from_str(&row.data).unwrap_or_else(|_| json!({})),
            created_at: rfc3339(row.created_at),
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/audit",
    operation_id = "list_audit",
    tag = "admin",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of audit entries, newest first", body = Page<AuditEntry>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is not an admin", body = ErrorResponse),
    ),
)]
/// `GET /admin/audit`: admins page through the log, newest first.
pub async fn audit(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<AuditEntry>>> {
    require(&me, Permission::ReadAudit)?;
    let (limit, before) = query.by_id()?;
    let rows = state.store.audit_entries(before, limit + 1).await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.id],
        AuditEntry::from,
    )))
}
