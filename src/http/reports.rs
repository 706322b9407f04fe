//! Reports and the moderation queue: anyone reports a user, a card or a
//! message they can see; staff page through the open reports and resolve
//! them, and the reporter hears how without hearing who.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::UserSummary;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::extract::{path_id, Body, Caller, Params};
use super::page::{self, decode_cursor, Page};
use crate::auth::roles::{require, Permission};
use crate::auth::Identity;
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, ErrorResponse, Result};
use crate::notify::kind::REPORT_RESOLVED;
use crate::revisions;
use crate::state::AppState;
use crate::store::{
    Filed, NewAudit, NewReport, QueueFrom, ReportRow, Resolution, Resolved, AUDIT_REPORT_RESOLVE,
};
use crate::validate;

/// Open reports one reporter may have at once, so no one can bury the
/// queue; resolved ones do not count.
const MAX_OPEN_REPORTS: u32 = 50;

/// Longest message id accepted as a target; ours are far shorter.
const MAX_MESSAGE_ID_CHARS: usize = 64;

/// How a moderator resolved a report.
const ACTIONS: [&str; 4] = [
    "dismissed",
    "message_deleted",
    "user_kicked",
    "user_suspended",
];

#[derive(Deserialize, ToSchema)]
pub struct NewReportBody {
    /// `user`, `card`, `room_message` or `dm_message`.
    kind: String,
    /// The user's or card's id, or the message's id.
    target_id: String,
    /// 1-500 characters.
    reason: String,
    /// The room of a `room_message`.
    room_id: Option<String>,
    /// The conversation of a `dm_message`.
    conversation_id: Option<String>,
}

/// A report as its reporter and the staff see it.
#[derive(Serialize, ToSchema)]
pub struct Report {
    id: String,
    /// `user`, `card`, `room_message` or `dm_message`.
    kind: String,
    target_id: String,
    /// Where a `room_message` was said.
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<String>,
    /// Where a `dm_message` was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<String>,
    reporter: UserSummary,
    reason: String,
    /// The reported text as it was when reported.
    excerpt: String,
    /// `open` or `resolved`.
    status: String,
    created_at: String,
    /// The id of the moderator or admin who resolved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_by: Option<String>,
    /// `dismissed`, `message_deleted`, `user_kicked` or `user_suspended`.
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl From<ReportRow> for Report {
    fn from(row: ReportRow) -> Self {
        Report {
            id: row.id.to_string(),
            kind: row.kind,
            target_id: row.target_id,
            room_id: row.room_id,
            conversation_id: row.conversation_id.map(|id| id.to_string()),
            reporter: UserSummary {
                id: row.reporter_id.to_string(),
                handle: row.reporter_handle,
                display_name: row.reporter_display_name,
            },
            reason: row.reason,
            excerpt: row.excerpt,
            status: row.status,
            created_at: rfc3339(row.created_at),
            resolved_by: row.resolved_by.map(|id| id.to_string()),
            action: row.action,
            note: row.note,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FiledReport {
    report: Report,
}

/// What a report is of, checked to exist and be visible to the reporter,
/// with the text to keep.
struct Target {
    target_id: String,
    room_id: Option<String>,
    conversation_id: Option<i64>,
    excerpt: String,
}

async fn target(state: &AppState, me: &Identity, body: &NewReportBody) -> Result<Target> {
    let plain = |excerpt: String, target_id: i64| Target {
        target_id: target_id.to_string(),
        room_id: None,
        conversation_id: None,
        excerpt,
    };
    match body.kind.as_str() {
        "user" => {
            let user_id = path_id(&body.target_id, "user")?;
            if user_id == me.user.id {
                return Err(Error::bad("target_id", "you cannot report yourself"));
            }
            let user = state
                .store
                .user_by_id(user_id)
                .await?
                .ok_or(Error::NotFound("user"))?;
            let excerpt = format!("{} (@{})\n{}", user.display_name, user.handle, user.bio);
            Ok(plain(excerpt.trim_end().to_owned(), user.id))
        }
        "card" => {
            let card_id = path_id(&body.target_id, "card")?;
            let card = state
                .store
                .card(card_id)
                .await?
                .ok_or(Error::NotFound("card"))?;
            let excerpt = format!("{}\n{}", card.title, card.body);
            Ok(plain(excerpt.trim_end().to_owned(), card.id))
        }
        "room_message" => {
            let message_id = message_id(&body.target_id)?;
            let room_id = body
                .room_id
                .as_deref()
                .ok_or_else(|| Error::bad("room_id", "is required for a room_message"))?;
            let message = state.rooms.find_message(room_id, message_id).await?;
            Ok(Target {
                target_id: message.message_id,
                room_id: Some(message.room_id),
                conversation_id: None,
                excerpt: message.text,
            })
        }
        "dm_message" => {
            let message_id = message_id(&body.target_id)?;
            let raw = body
                .conversation_id
                .as_deref()
                .ok_or_else(|| Error::bad("conversation_id", "is required for a dm_message"))?;
            let conversation_id = path_id(raw, "conversation")?;
            let pair = state
                .store
                .conversation_pair(conversation_id)
                .await?
                .ok_or(Error::NotFound("conversation"))?;
            if !pair.includes(me.user.id) {
                return Err(Error::Forbidden("you are not in this conversation"));
            }
            let message = state
                .store
                .dm_message(conversation_id, message_id)
                .await?
                .filter(|message| !message.deleted)
                .ok_or(Error::NotFound("message"))?;
            Ok(Target {
                target_id: message.message_id,
                room_id: None,
                conversation_id: Some(conversation_id),
                excerpt: message.text,
            })
        }
        _ => Err(Error::bad(
            "kind",
            "must be user, card, room_message or dm_message",
        )),
    }
}

fn message_id(raw: &str) -> Result<&str> {
    if raw.is_empty() || raw.chars().count() > MAX_MESSAGE_ID_CHARS {
        return Err(Error::NotFound("message"));
    }
    Ok(raw)
}

#[utoipa::path(
    post,
    path = "/reports",
    operation_id = "create_report",
    tag = "reports",
    security(("bearer" = [])),
    request_body = NewReportBody,
    responses(
        (status = 201, description = "the report, with a copy of the reported text", body = FiledReport),
        (status = 400, description = "a field is invalid (the message names it), or the caller reports themselves", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is not in the conversation of the reported message", body = ErrorResponse),
        (status = 404, description = "no such user, card, conversation, room or message", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
        (status = 429, description = "the caller has 50 open reports already", body = ErrorResponse),
    ),
)]
/// `POST /reports`: anyone reports what they can see.
pub async fn create(
    State(state): State<AppState>,
    Caller(me): Caller,
    Body(body): Body<NewReportBody>,
) -> Result<(StatusCode, Json<FiledReport>)> {
    let reason = validate::prose("reason", &body.reason, 1, 500)?;
    let target = target(&state, &me, &body).await?;
    let filed = state
        .store
        .file_report(NewReport {
            kind: &body.kind,
            target_id: &target.target_id,
            room_id: target.room_id.as_deref(),
            conversation_id: target.conversation_id,
            reporter_id: me.user.id,
            reason: &reason,
            excerpt: &target.excerpt,
            now: now_ms(),
            max_open: MAX_OPEN_REPORTS,
        })
        .await?;
    match filed {
        Filed::Filed(row) => {
            tracing::info!(report_id = row.id, kind = %row.kind, "report filed");
            Ok((
                StatusCode::CREATED,
                Json(FiledReport {
                    report: (*row).into(),
                }),
            ))
        }
        Filed::TooManyOpen => Err(Error::RateLimited {
            limit: format!(
                "you have {MAX_OPEN_REPORTS} open reports; wait until some are resolved"
            )
            .into(),
            retry_after_ms: 60_000,
        }),
    }
}

/// The query of `GET /admin/reports`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// `open` (the default) or `resolved`.
    status: Option<String>,
    /// 1-100, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/reports",
    operation_id = "list_reports",
    tag = "admin",
    security(("bearer" = [])),
    params(QueueQuery),
    responses(
        (status = 200, description = "a page of reports: open ones oldest first, resolved ones most recently resolved first", body = Page<Report>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is neither a moderator nor an admin", body = ErrorResponse),
    ),
)]
/// `GET /admin/reports`: the queue. Open reports come oldest first, so the
/// longest waiting is handled first; resolved ones come most recently
/// resolved first, which is what a moderator looking back wants.
pub async fn queue(
    State(state): State<AppState>,
    Caller(me): Caller,
    Params(query): Params<QueueQuery>,
) -> Result<Json<Page<Report>>> {
    require(&me, Permission::ReviewReports)?;
    let limit = page::limit(query.limit)?;
    let cursor = query.cursor.as_deref();
    let open = match query.status.as_deref() {
        None | Some("open") => true,
        Some("resolved") => false,
        Some(_) => return Err(Error::bad("status", "must be open or resolved")),
    };
    let from = if open {
        QueueFrom::OpenAfter(
            cursor
                .map(|c| decode_cursor(c, 1))
                .transpose()?
                .map(|k| k[0]),
        )
    } else {
        QueueFrom::ResolvedBefore(
            cursor
                .map(|c| decode_cursor(c, 2))
                .transpose()?
                .map(|k| (k[0], k[1])),
        )
    };
    let rows = state.store.report_queue(from, limit + 1).await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| {
            if open {
                vec![r.id]
            } else {
                vec![r.resolved_at.unwrap_or(0), r.id]
            }
        },
        Report::from,
    )))
}

fn already_resolved() -> Error {
    Error::Conflict("the report is resolved already".into())
}

/// Deletes the message a report is of, as staff (audited as
/// `message.delete`). A message gone already, deleted by its author or
/// out of its room's history window, is no reason to leave the report
/// open: nobody can be shown it any more.
async fn delete_reported_message(
    state: &AppState,
    me: &Identity,
    report: &ReportRow,
) -> Result<()> {
    let deleted = match (
        report.kind.as_str(),
        &report.room_id,
        report.conversation_id,
    ) {
        ("room_message", Some(room_id), _) => {
            revisions::delete_room_message(state, me, room_id, &report.target_id).await
        }
        ("dm_message", _, Some(conversation_id)) => {
            revisions::delete_reported_dm(state, me, conversation_id, &report.target_id).await
        }
        _ => {
            return Err(Error::bad(
                "action",
                "message_deleted is for reports of messages",
            ))
        }
    };
    match deleted {
        Ok(()) | Err(Error::NotFound(_)) => Ok(()),
        Err(other) => Err(other),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct Resolve {
    /// `dismissed`, `message_deleted`, `user_kicked` or `user_suspended`.
    action: String,
    /// At most 500 characters, for the staff.
    note: Option<String>,
}

#[utoipa::path(
    post,
    path = "/admin/reports/{id}/resolve",
    operation_id = "resolve_report",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "report id")),
    request_body = Resolve,
    responses(
        (status = 200, description = "the resolved report; its reporter is notified (`report_resolved`)", body = Report),
        (status = 400, description = "`action` is not an action (or is `message_deleted` for a report of no message), or `note` is too long", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is neither a moderator nor an admin", body = ErrorResponse),
        (status = 404, description = "no such report", body = ErrorResponse),
        (status = 409, description = "the report is resolved already", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
/// `POST /admin/reports/{id}/resolve`: staff close a report, once, saying
/// what they did about it.
pub async fn resolve(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(body): Body<Resolve>,
) -> Result<Json<Report>> {
    require(&me, Permission::ReviewReports)?;
    let action = ACTIONS
        .into_iter()
        .find(|a| *a == body.action)
        .ok_or_else(|| {
            Error::bad(
                "action",
                "must be dismissed, message_deleted, user_kicked or user_suspended",
            )
        })?;
    let note = body
        .note
        .as_deref()
        .map(|note| validate::prose("note", note, 0, 500))
        .transpose()?
        .filter(|note| !note.is_empty());
    let report_id = path_id(&id, "report")?;
    let target = format!("report:{report_id}");
    let existing = state
        .store
        .report(report_id)
        .await?
        .ok_or(Error::NotFound("report"))?;
    if existing.status != "open" {
        return Err(already_resolved());
    }
    if action == "message_deleted" {
        delete_reported_message(&state, &me, &existing).await?;
    }
    let data = json!({
        "kind": existing.kind,
        "target_id": existing.target_id,
        "action": action,
        "note": note,
    })
    .to_string();
    let resolved = state
        .store
        .resolve_report(
            report_id,
            Resolution {
                resolver_id: me.user.id,
                action,
                note: note.as_deref(),
            },
            NewAudit {
                actor_id: Some(me.user.id),
                action: AUDIT_REPORT_RESOLVE,
                target: &target,
                data: &data,
                now: now_ms(),
            },
        )
        .await?;
    let row = match resolved {
        Resolved::Resolved(row) => *row,
        Resolved::AlreadyResolved => return Err(already_resolved()),
        Resolved::NotFound => return Err(Error::NotFound("report")),
    };
    tracing::info!(actor_id = me.user.id, report_id, action, "report resolved");
    // The resolution stands whether or not the reporter hears of it.
    let told = state
        .notifier
        .notify(
            row.reporter_id,
            REPORT_RESOLVED,
            json!({"report_id": row.id.to_string(), "kind": row.kind, "action": action}),
        )
        .await;
    if let Err(error) = told {
        tracing::warn!(%error, report_id, "the reporter was not notified");
    }
    Ok(Json(row.into()))
}
