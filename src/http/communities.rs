//! Communities: creating them, finding them, joining and leaving.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::UserSummary;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{path_id, Body, Caller, Params};
use super::page::{self, decode_cursor, decode_text_cursor, encode_text_cursor, Page, PageQuery};
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, ErrorResponse, Result};
use crate::profile::summary;
use crate::state::AppState;
use crate::store::{CommunityFilter, CommunityRow, MembershipChange};
use crate::validate;

#[derive(Serialize, ToSchema)]
pub struct Community {
    id: String,
    name: String,
    description: String,
    tags: Vec<String>,
    owner_id: String,
    member_count: i64,
    /// The room every community has for its members.
    room_id: String,
    created_at: String,
    /// Whether the caller belongs; given where one community is answered
    /// for its caller, left out of listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    is_member: Option<bool>,
}

impl Community {
    fn for_caller(row: CommunityRow, is_member: bool) -> Self {
        Community {
            is_member: Some(is_member),
            ..row.into()
        }
    }
}

impl From<CommunityRow> for Community {
    fn from(row: CommunityRow) -> Self {
        Community {
            id: row.id.to_string(),
            name: row.name,
            description: row.description,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            owner_id: row.owner_id.to_string(),
            member_count: row.member_count,
            room_id: format!("community:{}", row.id),
            created_at: rfc3339(row.created_at),
            is_member: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewCommunity {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommunityQuery {
    /// Text searched in names and descriptions (at most 100 characters).
    q: Option<String>,
    /// Only communities with this tag.
    tag: Option<String>,
    /// 1-100, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    post,
    path = "/communities",
    operation_id = "create_community",
    tag = "communities",
    security(("bearer" = [])),
    request_body = NewCommunity,
    responses(
        (status = 201, description = "the new community; the caller is its first member", body = Community),
        (status = 400, description = "a field is invalid; the message names it", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 409, description = "the name is taken", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(me): Caller,
    Body(new): Body<NewCommunity>,
) -> Result<(StatusCode, Json<Community>)> {
    let name = validate::line("name", &new.name, 3, 60)?;
    if name.chars().any(char::is_control) {
        return Err(Error::bad("name", "must not contain control characters"));
    }
    let description = validate::prose("description", &new.description, 0, 1000)?;
    let tags = validate::tags("tags", &new.tags, 10)?;
    let community = state
        .store
        .create_community(me.user.id, &name, &description, &tags, now_ms())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Community::for_caller(community, true)),
    ))
}

#[utoipa::path(
    get,
    path = "/communities",
    operation_id = "list_communities",
    tag = "communities",
    security(("bearer" = [])),
    params(CommunityQuery),
    responses(
        (status = 200, description = "a page of communities by name", body = Page<Community>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
/// Communities by name, ignoring case (ties, which unique names make
/// impossible today, by id). The cursor holds the `(lower-cased name, id)`
/// of the last one served, so communities created between pages never
/// shift the rest: those sorting after the cursor still show up, none
/// twice.
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Params(query): Params<CommunityQuery>,
) -> Result<Json<Page<Community>>> {
    let limit = page::limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(decode_text_cursor)
        .transpose()?;
    let text = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if text.is_some_and(|q| q.chars().count() > 100) {
        return Err(Error::bad("q", "must be at most 100 characters"));
    }
    let tag = query
        .tag
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if tag.is_some_and(|t| t.chars().count() > 30) {
        return Err(Error::bad("tag", "must be at most 30 characters"));
    }
    let rows = state
        .store
        .communities(CommunityFilter {
            tag,
            text,
            after: after.as_ref().map(|(key, id)| (key.as_str(), *id)),
            limit: limit + 1,
        })
        .await?;
    Ok(Json(page::page_by(
        rows,
        limit,
        |r| encode_text_cursor(&r.name_key, r.id),
        Community::from,
    )))
}

#[utoipa::path(
    get,
    path = "/communities/{id}",
    operation_id = "get_community",
    tag = "communities",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "community id")),
    responses(
        (status = 200, description = "the community, with whether the caller belongs", body = Community),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such community", body = ErrorResponse),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<Community>> {
    let id = path_id(&id, "community")?;
    let community = state
        .store
        .community(id)
        .await?
        .ok_or(Error::NotFound("community"))?;
    let is_member = state.store.is_community_member(id, me.user.id).await?;
    Ok(Json(Community::for_caller(community, is_member)))
}

#[utoipa::path(
    put,
    path = "/communities/{id}/membership",
    operation_id = "join_community",
    tag = "communities",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "community id")),
    responses(
        (status = 204, description = "the caller is a member (idempotent)"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such community", body = ErrorResponse),
    ),
)]
pub async fn join(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = path_id(&id, "community")?;
    let change = state.store.join_community(id, me.user.id, now_ms()).await?;
    answered(change)
}

#[utoipa::path(
    delete,
    path = "/communities/{id}/membership",
    operation_id = "leave_community",
    tag = "communities",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "community id")),
    responses(
        (status = 204, description = "the caller is not a member (idempotent)"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such community", body = ErrorResponse),
    ),
)]
pub async fn leave(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = path_id(&id, "community")?;
    let change = state.store.leave_community(id, me.user.id).await?;
    if change != MembershipChange::NoSuchCommunity {
        // Also when nothing changed: a first try that failed here is
        // retried.
        crate::standing::end_access(
            &state.rooms,
            &crate::standing::community_room(id),
            me.user.id,
        )
        .await?;
    }
    answered(change)
}

/// Joining and leaving answer alike whether or not anything changed.
fn answered(change: MembershipChange) -> Result<StatusCode> {
    match change {
        MembershipChange::Changed | MembershipChange::Unchanged => Ok(StatusCode::NO_CONTENT),
        MembershipChange::NoSuchCommunity => Err(Error::NotFound("community")),
    }
}

/// One member of a community.
#[derive(Serialize, ToSchema)]
pub struct Member {
    user: UserSummary,
    joined_at: String,
}

#[utoipa::path(
    get,
    path = "/communities/{id}/members",
    operation_id = "list_members",
    tag = "communities",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "community id"), PageQuery),
    responses(
        (status = 200, description = "a page of members in the order they joined, earliest first (ties by user id)", body = Page<Member>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is not a member", body = ErrorResponse),
        (status = 404, description = "no such community", body = ErrorResponse),
    ),
)]
/// For members only. The cursor holds `(joined_at, user id)` of the last
/// member served: joins land after every cursor and leaves move nobody, so
/// pages stay exact while membership changes.
pub async fn members(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Params(query): Params<PageQuery>,
) -> Result<Json<Page<Member>>> {
    let limit = page::limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, 2).map(|k| (k[0], k[1])))
        .transpose()?;
    let id = path_id(&id, "community")?;
    let access = state
        .store
        .community_room_access(id, me.user.id)
        .await?
        .ok_or(Error::NotFound("community"))?;
    if !access.is_member {
        return Err(Error::Forbidden("only members see who belongs"));
    }
    let rows = state.store.community_members(id, after, limit + 1).await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.joined_at, r.user.id],
        |r| Member {
            user: summary(&r.user),
            joined_at: rfc3339(r.joined_at),
        },
    )))
}
