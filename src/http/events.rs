//! Meal and meetup events, RSVPs and the waitlist. Seat-keeping lives in
//! the store (see `Store::rsvp`); this module checks input and roles and
//! tells attendees what changed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshi_protocol::UserSummary;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::extract::{path_id, Body, Caller, Params};
use super::page::{self, decode_cursor, Page};
use crate::clock::{now_ms, rfc3339};
use crate::error::{Error, ErrorResponse, Result};
use crate::notify::kind;
use crate::profile::summary;
use crate::state::AppState;
use crate::store::{
    Attendee as AttendeeRow, AttendeeList, EventChanges, EventError, EventFilter, EventRow,
    NewEvent, RsvpStatus,
};
use crate::validate;

const TITLE_MAX: usize = 80;
const DESCRIPTION_MAX: usize = 2000;
const VENUE_MAX: usize = 200;
const ONLINE_URL_MAX: usize = 500;
const CAPACITY_MAX: i64 = 500;
const TAGS_MAX: usize = 5;

#[derive(Serialize, ToSchema)]
pub struct Event {
    id: String,
    host: UserSummary,
    host_id: String,
    title: String,
    description: String,
    starts_at: String,
    ends_at: Option<String>,
    venue: Option<String>,
    online_url: Option<String>,
    capacity: i64,
    tags: Vec<String>,
    /// `scheduled` or `cancelled`.
    status: &'static str,
    going_count: i64,
    waitlist_count: i64,
    room_id: String,
    created_at: String,
    updated_at: String,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        Event {
            id: row.id.to_string(),
            host: UserSummary {
                id: row.host_id.to_string(),
                handle: crate::profile::shown_handle(&row.host_handle),
                display_name: row.host_display_name,
            },
            host_id: row.host_id.to_string(),
            title: row.title,
            description: row.description,
            starts_at: rfc3339(row.starts_at),
            ends_at: row.ends_at.map(rfc3339),
            venue: row.venue,
            online_url: row.online_url,
            capacity: row.capacity,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            status: if row.cancelled {
                "cancelled"
            } else {
                "scheduled"
            },
            going_count: row.going_count,
            waitlist_count: row.waitlist_count,
            room_id: room_id(row.id),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// The id of the event's room, open to its host and going attendees.
pub fn room_id(event_id: i64) -> String {
    format!("event:{event_id}")
}

/// One event as a particular caller sees it.
#[derive(Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    event: Event,
    /// `going`, `waitlisted`, or null (no RSVP; the host has none).
    my_rsvp: Option<&'static str>,
}

/// Give a `venue`, an `online_url` or both.
#[derive(Deserialize, ToSchema)]
pub struct NewEventBody {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    starts_at: String,
    ends_at: Option<String>,
    venue: Option<String>,
    online_url: Option<String>,
    capacity: i64,
    #[serde(default)]
    tags: Vec<String>,
}

/// A partial edit: absent fields stay; `null` clears `ends_at`, `venue`
/// and `online_url`.
#[derive(Deserialize, ToSchema)]
pub struct EventPatch {
    title: Option<String>,
    description: Option<String>,
    starts_at: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    ends_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    venue: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    online_url: Option<Option<String>>,
    capacity: Option<i64>,
    tags: Option<Vec<String>>,
}

impl EventPatch {
    fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.starts_at.is_none()
            && self.ends_at.is_none()
            && self.venue.is_none()
            && self.online_url.is_none()
            && self.capacity.is_none()
            && self.tags.is_none()
    }
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`).
fn nullable<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events starting at or after this RFC 3339 time; default now.
    from: Option<String>,
    /// Only events with this tag.
    tag: Option<String>,
    /// 1-100, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RsvpAnswer {
    /// `going` or `waitlisted`.
    status: &'static str,
    /// 1-based place in the waitlist; only when waitlisted.
    #[serde(skip_serializing_if = "Option::is_none")]
    waitlist_position: Option<i64>,
}

fn capacity(value: i64) -> Result<i64> {
    if (1..=CAPACITY_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(Error::bad("capacity", "must be 1-500"))
    }
}

/// An optional text: blank counts as absent.
fn optional_text(field: &str, value: &str, max: usize) -> Result<Option<String>> {
    let clean = validate::line(field, value, 0, max)?;
    Ok((!clean.is_empty()).then_some(clean))
}

fn optional_url(value: &str) -> Result<Option<String>> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    validate::http_url("online_url", value, ONLINE_URL_MAX).map(Some)
}

fn event_error(err: EventError) -> Error {
    match err {
        EventError::NotFound => Error::NotFound("event"),
        EventError::Cancelled => Error::Conflict("the event is cancelled".into()),
        EventError::CapacityBelowGoing { going } => Error::Conflict(format!(
            "capacity: cannot drop below the {going} people already going"
        )),
        EventError::EndsBeforeStart => Error::bad("ends_at", "must be after starts_at"),
        EventError::NoPlace => Error::bad("venue", "give a venue or an online_url"),
        EventError::Store(err) => err.into(),
    }
}

#[utoipa::path(
    post,
    path = "/events",
    operation_id = "create_event",
    tag = "events",
    security(("bearer" = [])),
    request_body = NewEventBody,
    responses(
        (status = 201, description = "the new event", body = Event),
        (status = 400, description = "a field is invalid; the message names it", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(me): Caller,
    Body(new): Body<NewEventBody>,
) -> Result<(StatusCode, Json<Event>)> {
    let title = validate::line("title", &new.title, 1, TITLE_MAX)?;
    let description = validate::prose("description", &new.description, 0, DESCRIPTION_MAX)?;
    let starts_at = validate::timestamp("starts_at", &new.starts_at)?;
    let ends_at = new
        .ends_at
        .as_deref()
        .map(|t| validate::timestamp("ends_at", t))
        .transpose()?;
    if ends_at.is_some_and(|end| end <= starts_at) {
        return Err(event_error(EventError::EndsBeforeStart));
    }
    let venue = match new.venue.as_deref() {
        Some(v) => optional_text("venue", v, VENUE_MAX)?,
        None => None,
    };
    let online_url = match new.online_url.as_deref() {
        Some(u) => optional_url(u)?,
        None => None,
    };
    if venue.is_none() && online_url.is_none() {
        return Err(event_error(EventError::NoPlace));
    }
    let capacity = capacity(new.capacity)?;
    let tags = validate::tags("tags", &new.tags, TAGS_MAX)?;
    let event = state
        .store
        .create_event(
            me.user.id,
            NewEvent {
                title: &title,
                description: &description,
                starts_at,
                ends_at,
                venue: venue.as_deref(),
                online_url: online_url.as_deref(),
                capacity,
                tags: &tags,
            },
            now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(event.into())))
}

#[utoipa::path(
    get,
    path = "/events",
    operation_id = "list_events",
    tag = "events",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 200, description = "a page of events, soonest first", body = Page<Event>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Params(query): Params<EventQuery>,
) -> Result<Json<Page<Event>>> {
    let limit = page::limit(query.limit)?;
    let from = match query.from.as_deref() {
        Some(from) => validate::timestamp("from", from)?,
        None => now_ms(),
    };
    let after = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, 2).map(|k| (k[0], k[1])))
        .transpose()?;
    let tag = query.tag.as_deref().map(str::trim);
    if tag.is_some_and(|t| t.chars().count() > 30) {
        return Err(Error::bad("tag", "must be at most 30 characters"));
    }
    let rows = state
        .store
        .events(EventFilter {
            from,
            tag,
            after,
            limit: limit + 1,
        })
        .await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.starts_at, r.id],
        Event::from,
    )))
}

async fn load(state: &AppState, raw_id: &str) -> Result<EventRow> {
    let id = path_id(raw_id, "event")?;
    state.store.event(id).await?.ok_or(Error::NotFound("event"))
}

async fn load_hosted(state: &AppState, raw_id: &str, me: i64) -> Result<EventRow> {
    let event = load(state, raw_id).await?;
    if event.host_id != me {
        return Err(Error::Forbidden("only the event's host may do this"));
    }
    Ok(event)
}

#[utoipa::path(
    get,
    path = "/events/{id}",
    operation_id = "get_event",
    tag = "events",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "event id")),
    responses(
        (status = 200, description = "the event as the caller sees it", body = EventDetail),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such event", body = ErrorResponse),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>> {
    let event = load(&state, &id).await?;
    let my_rsvp = state.store.rsvp_status(event.id, me.user.id).await?;
    Ok(Json(EventDetail {
        event: event.into(),
        my_rsvp: my_rsvp.map(RsvpStatus::as_str),
    }))
}

#[utoipa::path(
    patch,
    path = "/events/{id}",
    operation_id = "update_event",
    tag = "events",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "event id")),
    request_body = EventPatch,
    responses(
        (status = 200, description = "the event after the change", body = Event),
        (status = 400, description = "a field is invalid; the message names it", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is not the event's host", body = ErrorResponse),
        (status = 404, description = "no such event", body = ErrorResponse),
        (status = 409, description = "the event is cancelled, or the capacity would drop below those going", body = ErrorResponse),
        (status = 413, description = "the body is too large", body = ErrorResponse),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Body(patch): Body<EventPatch>,
) -> Result<Json<Event>> {
    let title = patch
        .title
        .as_deref()
        .map(|t| validate::line("title", t, 1, TITLE_MAX))
        .transpose()?;
    let description = patch
        .description
        .as_deref()
        .map(|d| validate::prose("description", d, 0, DESCRIPTION_MAX))
        .transpose()?;
    let starts_at = patch
        .starts_at
        .as_deref()
        .map(|t| validate::timestamp("starts_at", t))
        .transpose()?;
    let ends_at = match &patch.ends_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(t)) => Some(Some(validate::timestamp("ends_at", t)?)),
    };
    let venue = match &patch.venue {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(optional_text("venue", v, VENUE_MAX)?),
    };
    let online_url = match &patch.online_url {
        None => None,
        Some(None) => Some(None),
        Some(Some(u)) => Some(optional_url(u)?),
    };
    let capacity = patch.capacity.map(capacity).transpose()?;
    let tags = patch
        .tags
        .as_deref()
        .map(|t| validate::tags("tags", t, TAGS_MAX))
        .transpose()?;
    let event = load_hosted(&state, &id, me.user.id).await?;
    if patch.is_empty() {
        return Ok(Json(event.into()));
    }
    let updated = state
        .store
        .update_event(
            event.id,
            EventChanges {
                title: title.as_deref(),
                description: description.as_deref(),
                starts_at,
                ends_at,
                venue: venue.as_ref().map(Option::as_deref),
                online_url: online_url.as_ref().map(Option::as_deref),
                capacity,
                tags: tags.as_deref(),
            },
            now_ms(),
        )
        .await
        .map_err(event_error)?;
    let event = load(&state, &id).await?;
    let notice = json!({ "event_id": event.id.to_string(), "title": event.title });
    state
        .notifier
        .notify_all(&updated.promoted, kind::WAITLIST_PROMOTED, notice.clone())
        .await?;
    state
        .notifier
        .notify_all_from(me.user.id, &updated.attendees, kind::EVENT_UPDATED, notice)
        .await?;
    Ok(Json(event.into()))
}

#[utoipa::path(
    delete,
    path = "/events/{id}",
    operation_id = "cancel_event",
    tag = "events",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "event id")),
    responses(
        (status = 204, description = "the event is cancelled (again is not an error)"),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller is not the event's host", body = ErrorResponse),
        (status = 404, description = "no such event", body = ErrorResponse),
    ),
)]
/// Cancels the event; RSVPs are kept so attendees can still see it.
/// Cancelling twice is not an error and tells nobody twice.
pub async fn cancel(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let event = load_hosted(&state, &id, me.user.id).await?;
    let attendees = state
        .store
        .cancel_event(event.id, now_ms())
        .await
        .map_err(event_error)?;
    if let Some(attendees) = attendees {
        // The room goes with its event; nobody may be left talking in it.
        let _ = state
            .rooms
            .close(
                &format!("event:{}", event.id),
                meshi_protocol::RoomClosedReason::Host,
            )
            .await;
        let notice = json!({ "event_id": event.id.to_string(), "title": event.title });
        state
            .notifier
            .notify_all_from(me.user.id, &attendees, kind::EVENT_CANCELLED, notice)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn host_has_no_rsvp() -> Error {
    Error::bad("event", "the host is always in and does not RSVP")
}

#[utoipa::path(
    put,
    path = "/events/{id}/rsvp",
    operation_id = "rsvp",
    tag = "events",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "event id")),
    responses(
        (status = 200, description = "the caller's place: going or waitlisted", body = RsvpAnswer),
        (status = 400, description = "the caller hosts the event", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such event", body = ErrorResponse),
        (status = 409, description = "the event is cancelled", body = ErrorResponse),
    ),
)]
pub async fn rsvp(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<RsvpAnswer>> {
    let event = load(&state, &id).await?;
    if event.host_id == me.user.id {
        return Err(host_has_no_rsvp());
    }
    let rsvp = state
        .store
        .rsvp(event.id, me.user.id, now_ms())
        .await
        .map_err(event_error)?;
    Ok(Json(RsvpAnswer {
        status: rsvp.status.as_str(),
        waitlist_position: rsvp.waitlist_place,
    }))
}

#[utoipa::path(
    delete,
    path = "/events/{id}/rsvp",
    operation_id = "leave_event",
    tag = "events",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "event id")),
    responses(
        (status = 204, description = "the caller has no RSVP (idempotent)"),
        (status = 400, description = "the caller hosts the event", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such event", body = ErrorResponse),
    ),
)]
pub async fn leave(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let event = load(&state, &id).await?;
    if event.host_id == me.user.id {
        return Err(host_has_no_rsvp());
    }
    let left = state
        .store
        .leave_event(event.id, me.user.id)
        .await
        .map_err(event_error)?;
    // Also when nothing changed: a first try that failed here is retried.
    crate::standing::end_access(
        &state.rooms,
        &crate::standing::event_room(event.id),
        me.user.id,
    )
    .await?;
    if !left.promoted.is_empty() {
        let notice = json!({ "event_id": event.id.to_string(), "title": event.title });
        state
            .notifier
            .notify_all(&left.promoted, kind::WAITLIST_PROMOTED, notice)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttendeeQuery {
    /// `going` or `waitlisted`. Without it the host gets both lists, going
    /// first then the waitlist, and a going attendee gets `going`.
    status: Option<String>,
    /// 1-100, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One RSVP in the event's seat order or waitlist order.
#[derive(Serialize, ToSchema)]
pub struct Attendee {
    user: UserSummary,
    /// `going` or `waitlisted`.
    status: &'static str,
    /// 1-based place within its list: seat order for `going`, the order
    /// of promotion for `waitlisted`.
    position: i64,
    rsvp_at: String,
}

impl From<AttendeeRow> for Attendee {
    fn from(row: AttendeeRow) -> Self {
        Attendee {
            user: summary(&row.user),
            status: row.status.as_str(),
            position: row.place,
            rsvp_at: rfc3339(row.rsvp_at),
        }
    }
}

fn attendee_list(status: Option<&str>) -> Result<Option<AttendeeList>> {
    match status {
        None => Ok(None),
        Some("going") => Ok(Some(AttendeeList::Going)),
        Some("waitlisted") => Ok(Some(AttendeeList::Waitlisted)),
        Some(_) => Err(Error::bad("status", "must be going or waitlisted")),
    }
}

#[utoipa::path(
    get,
    path = "/events/{id}/attendees",
    operation_id = "list_attendees",
    tag = "events",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "event id"), AttendeeQuery),
    responses(
        (status = 200, description = "a page of attendees: going in seat order, then waitlisted in waitlist order. The host may ask for either list and gets both without `status`; a going attendee sees `going` only (also without `status`)", body = Page<Attendee>),
        (status = 400, description = "a query parameter is invalid", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 403, description = "the caller neither hosts the event nor is going, or asks a going attendee's view for the waitlist", body = ErrorResponse),
        (status = 404, description = "no such event", body = ErrorResponse),
    ),
)]
/// The cursor holds the list and the RSVP's `position` of the last one
/// served; positions never change, so people leaving or being promoted
/// between pages never make a page skip or repeat someone who stayed put.
pub async fn attendees(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Params(query): Params<AttendeeQuery>,
) -> Result<Json<Page<Attendee>>> {
    let asked = attendee_list(query.status.as_deref())?;
    let limit = page::limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, 2).map(|k| (k[0], k[1])))
        .transpose()?;
    let event = load(&state, &id).await?;
    let which = if event.host_id == me.user.id {
        asked.unwrap_or(AttendeeList::Both)
    } else {
        match state.store.rsvp_status(event.id, me.user.id).await? {
            Some(RsvpStatus::Going) => match asked {
                None | Some(AttendeeList::Going) => AttendeeList::Going,
                Some(_) => return Err(Error::Forbidden("only the event's host sees the waitlist")),
            },
            _ => {
                return Err(Error::Forbidden(
                    "only the event's host and those going see who is going",
                ))
            }
        }
    };
    let rows = state
        .store
        .attendees(event.id, which, after, limit + 1)
        .await?;
    Ok(Json(page::page(
        rows,
        limit,
        |r| vec![r.key.0, r.key.1],
        Attendee::from,
    )))
}
