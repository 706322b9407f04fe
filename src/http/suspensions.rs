//! Suspending accounts and the staff's listing of users. A suspension ends
//! every session of the user and closes their sockets on every node; the
//! revocation sweep closes any a node missed, and authentication refuses
//! the user's tokens until the suspension ends or is lifted.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::close;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::extract::{path_id, Body, Caller, Params};
use super::page::{self, Page};
use crate::auth::revocation::SUSPENDED;
use crate::auth::roles::{require, require_suspend, Permission, Role};
use crate::auth::Identity;
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, ErrorResponse, Result};
use crate::hub::subscribers::Topic;
use crate::profile::Profile;
use crate::state::AppState;
use crate::store::{
    ListedUser, NewAudit, Suspension, UserFilter, UserRow, AUDIT_USER_SUSPEND,
    AUDIT_USER_UNSUSPEND, SUSPENDED_INDEFINITELY,
};
use crate::validate;

/// Longest `q` of the user listing; a name is at most 50 characters.
const MAX_QUERY_CHARS: usize = 64;

#[derive(Deserialize, ToSchema)]
pub struct Suspend {
    /// RFC 3339, in the future; without it the suspension lasts until
    /// lifted.
    until: Option<String>,
    /// 1-500 characters, kept in the audit log.
    reason: String,
}

/// The user a suspension acts on, once the caller may act on them.
async fn target(state: &AppState, me: &Identity, id: &str) -> Result<UserRow> {
    let user_id = path_id(id, "user")?;
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .ok_or(Error::NotFound("user"))?;
    require_suspend(me, user.id, Role::from_stored(&user.role))?;
    Ok(user)
}

/// The store's answer as the caller hears it. The role is compared in the
/// write itself, so a promotion racing a moderator's suspension cannot
/// leave a moderator suspended by a moderator.
fn written(outcome: Suspension) -> Result<()> {
    match outcome {
        Suspension::Done(_) => Ok(()),
        Suspension::NoSuchUser => Err(Error::NotFound("user")),
        Suspension::RoleChanged => Err(Error::Conflict(
            "the user's role changed meanwhile; try again".into(),
        )),
    }
}

#[utoipa::path(
    post,
    path = "/admin/users/{id}/suspend",
    operation_id = "suspend_user",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    request_body = Suspend,
    responses(
        (status = 204, description = "the user is suspended, every session of theirs ended and their sockets closed with 4010"),
        (status = 400, description = "`until` is not a future RFC 3339 time, or `reason` is not 1-500 characters", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is not staff, or the user is an admin, a moderator (unless the caller is an admin) or the caller", body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
        (status = 409, description = "the user's role changed while this was asked; try again", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
/// `POST /admin/users/{id}/suspend`: staff keep a user out until `until`,
/// or until lifted.
pub async fn suspend(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(body): Body<Suspend>,
) -> Result<StatusCode> {
    require(&me, Permission::SuspendUser)?;
    let now = now_ms();
    let until = match body.until.as_deref() {
        None => SUSPENDED_INDEFINITELY,
        Some(text) => {
            let until = validate::timestamp("until", text)?;
            if until <= now {
                return Err(Error::bad("until", "must be in the future"));
            }
            if until >= SUSPENDED_INDEFINITELY {
                return Err(Error::bad("until", "must be before the year 10000"));
            }
            until
        }
    };
    let reason = validate::prose("reason", &body.reason, 1, 500)?;
    let user = target(&state, &me, &id).await?;
    let target = format!("user:{}", user.id);
    let shown_until = (until != SUSPENDED_INDEFINITELY).then(|| rfc3339(until));
    let data = json!({"until": shown_until, "reason": reason}).to_string();
    let done = state
        .store
        .suspend_user(
            user.id,
            &user.role,
            until,
            &reason,
            NewAudit {
                actor_id: Some(me.user.id),
                action: AUDIT_USER_SUSPEND,
                target: &target,
                data: &data,
                now,
            },
        )
        .await?;
    written(done)?;
    // Sessions and JWT sockets alike listen on the user's topic.
    state
        .hub
        .close_all(Topic::User(user.id), close::TOKEN_ENDED, SUSPENDED);
    tracing::info!(actor_id = me.user.id, user_id = user.id, "user suspended");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/admin/users/{id}/suspend",
    operation_id = "unsuspend_user",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "the suspension is lifted; the user logs in again"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller may not suspend this user", body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
        (status = 409, description = "the user's role changed while this was asked; try again", body = ErrorResponse),
    ),
)]
/// `DELETE /admin/users/{id}/suspend`: staff lift a suspension. Whoever
/// may suspend the user may lift it; lifting none is not an error.
pub async fn unsuspend(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    require(&me, Permission::SuspendUser)?;
    let user = target(&state, &me, &id).await?;
    let target = format!("user:{}", user.id);
    let done = state
        .store
        .unsuspend_user(
            user.id,
            &user.role,
            NewAudit {
                actor_id: Some(me.user.id),
                action: AUDIT_USER_UNSUSPEND,
                target: &target,
                data: "{}",
                now: now_ms(),
            },
        )
        .await?;
    written(done)?;
    tracing::info!(
        actor_id = me.user.id,
        user_id = user.id,
        "suspension lifted"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// The query of `GET /admin/users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Part of the handle or the display name, any case; at most 64
    /// characters.
    q: Option<String>,
    /// `member`, `moderator` or `admin`.
    role: Option<String>,
    /// `true` for suspended users only, `false` for the others.
    suspended: Option<String>,
    /// 1-100, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A full profile with the account's suspension, for staff.
#[derive(Serialize, ToSchema)]
pub struct ListedProfile {
    id: String,
    handle: String,
    display_name: String,
    bio: String,
    tags: Vec<String>,
    role: String,
    created_at: String,
    /// RFC 3339 while suspended (9999-12-31T23:59:59.999Z when the
    /// suspension has no end), else null.
    suspended_until: Option<String>,
}

impl From<ListedUser> for ListedProfile {
    fn from(listed: ListedUser) -> Self {
        let profile = Profile::from(&listed.user);
        ListedProfile {
            id: profile.id,
            handle: profile.handle,
            display_name: profile.display_name,
            bio: profile.bio,
            tags: profile.tags,
            role: profile.role,
            created_at: profile.created_at,
            suspended_until: listed.suspended_until.map(rfc3339),
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/users",
    operation_id = "list_users",
    tag = "admin",
    security(("bearer" = [])),
    params(UsersQuery),
    responses(
        (status = 200, description = "a page of users, newest account first", body = Page<ListedProfile>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is neither a moderator nor an admin", body = ErrorResponse),
    ),
)]
/// `GET /admin/users`: staff find users by name, role and suspension.
pub async fn list(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<UsersQuery>,
) -> Result<Json<Page<ListedProfile>>> {
    require(&me, Permission::ListUsers)?;
    let text = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if text.is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
        return Err(Error::bad("q", "must be at most 64 characters"));
    }
    let role: Option<Role> = query
        .role
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|_| Error::bad("role", "must be member, moderator or admin"))?;
    let suspended = match query.suspended.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(Error::bad("suspended", "must be true or false")),
    };
    let (limit, before_id) = page::PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .by_id()?;
    let rows = state
        .store
        .list_users(UserFilter {
            text,
            role: role.map(Role::as_str),
            suspended,
            before_id,
            limit: limit + 1,
            now: now_ms(),
        })
        .await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.user.id],
        ListedProfile::from,
    )))
}
