//! Meal and meetup events, their RSVPs and the waitlist.
//!
//! Seats are the rows of `rsvps` with status `going`; the host has no RSVP
//! and takes no seat. Every write that can change who holds a seat (RSVP,
//! leave, capacity change, cancel) first takes the event's write lock (see
//! [`Store::rsvp`]), so seat counting and seat taking never interleave.

use super::{measured, Failure};
use super::{on_pool, Pool, Store, StoreError, UserRow};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub host_id: i64,
    pub title: String,
    pub description: String,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub venue: Option<String>,
    pub online_url: Option<String>,
    pub capacity: i64,
    /// JSON array of strings.
    pub tags: String,
    pub cancelled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub host_handle: String,
    pub host_display_name: String,
    pub going_count: i64,
    pub waitlist_count: i64,
}

pub struct NewEvent<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub venue: Option<&'a str>,
    pub online_url: Option<&'a str>,
    pub capacity: i64,
    pub tags: &'a [String],
}

/// A partial edit. `None` keeps a field; for the nullable fields
/// `Some(None)` clears it.
#[derive(Default)]
pub struct EventChanges<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<Option<i64>>,
    pub venue: Option<Option<&'a str>>,
    pub online_url: Option<Option<&'a str>>,
    pub capacity: Option<i64>,
    pub tags: Option<&'a [String]>,
}

pub struct EventFilter<'a> {
    /// Only events starting at or after this time.
    pub from: i64,
    pub tag: Option<&'a str>,
    /// Keyset cursor: only events sorting after this `(starts_at, id)`.
    pub after: Option<(i64, i64)>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsvpStatus {
    Going,
    Waitlisted,
}

impl RsvpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RsvpStatus::Going => "going",
            RsvpStatus::Waitlisted => "waitlisted",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "going" => Ok(RsvpStatus::Going),
            "waitlisted" => Ok(RsvpStatus::Waitlisted),
            other => Err(StoreError::Database(sqlx::Error::Decode(
                format!("unknown RSVP status `{other}`").into(),
            ))),
        }
    }
}

/// Where an RSVP stands after [`Store::rsvp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsvp {
    pub status: RsvpStatus,
    /// 1-based place in the waitlist, when waitlisted.
    pub waitlist_place: Option<i64>,
    /// False when the user had already RSVPed and nothing changed.
    pub created: bool,
}

/// What [`Store::leave_event`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Left {
    /// The RSVP removed, if there was one.
    pub was: Option<RsvpStatus>,
    /// Users moved from the waitlist to going, first promoted first.
    pub promoted: Vec<i64>,
}

/// What [`Store::update_event`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventUpdated {
    /// Users moved from the waitlist to going, first promoted first.
    pub promoted: Vec<i64>,
    /// Everyone with an RSVP (going or waitlisted) after the change.
    pub attendees: Vec<i64>,
}

/// What an event room needs to know about an event and one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAccess {
    pub title: String,
    /// Seats for guests; the host comes on top.
    pub capacity: i64,
    pub host_id: i64,
    /// The user hosts the event or holds a seat. Says nothing about
    /// cancellation: see `cancelled`.
    pub may_enter: bool,
    pub cancelled: bool,
}

/// Which of an event's lists [`Store::attendees`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttendeeList {
    Going,
    Waitlisted,
    /// Going first, then the waitlist.
    Both,
}

/// One RSVP as the attendee list shows it.
#[derive(Debug, Clone)]
pub struct Attendee {
    pub user: UserRow,
    pub status: RsvpStatus,
    /// 1-based place within its list (seat order or waitlist order).
    pub place: i64,
    pub rsvp_at: i64,
    /// Where the row sorts, `(list, position)`: the cursor of a page that
    /// ends here. Positions never change, so the key of a row is stable
    /// while others leave or move up.
    pub key: (i64, i64),
}

#[derive(sqlx::FromRow)]
struct AttendeeRecord {
    #[sqlx(flatten)]
    user: UserRow,
    status: String,
    list: i64,
    position: i64,
    place: i64,
    rsvp_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("no such event")]
    NotFound,
    #[error("the event is cancelled")]
    Cancelled,
    #[error("capacity cannot drop below the {going} people already going")]
    CapacityBelowGoing { going: i64 },
    #[error("the event must end after it starts")]
    EndsBeforeStart,
    #[error("the event needs a venue or an online URL")]
    NoPlace,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure for EventError {
    fn is_database_failure(&self) -> bool {
        matches!(self, EventError::Store(err) if err.is_database_failure())
    }
}

impl From<sqlx::Error> for EventError {
    fn from(err: sqlx::Error) -> Self {
        EventError::Store(err.into())
    }
}

/// The event's row as seen under its lock.
#[derive(sqlx::FromRow)]
pub(super) struct Locked {
    starts_at: i64,
    ends_at: Option<i64>,
    venue: Option<String>,
    online_url: Option<String>,
    pub(super) capacity: i64,
    pub(super) cancelled: bool,
}

const LOCKED_COLUMNS: &str =
    "starts_at, ends_at, venue, online_url, CAST(capacity AS BIGINT) AS capacity, cancelled";

const EVENT_SELECT: &str = "SELECT e.id, e.host_id, e.title, e.description, e.starts_at, \
    e.ends_at, e.venue, e.online_url, CAST(e.capacity AS BIGINT) AS capacity, e.tags, \
    e.cancelled, e.created_at, e.updated_at, \
    u.handle AS host_handle, u.display_name AS host_display_name, \
    (SELECT COUNT(*) FROM rsvps r WHERE r.event_id = e.id AND r.status = 'going') AS going_count, \
    (SELECT COUNT(*) FROM rsvps r WHERE r.event_id = e.id AND r.status = 'waitlisted') \
      AS waitlist_count \
    FROM events e JOIN users u ON u.id = e.host_id";

pub(super) const GOING_COUNT: &str =
    "SELECT COUNT(*) FROM rsvps WHERE event_id = $1 AND status = 'going'";

/// Takes a seat if one is free, else the next waitlist place, in one
/// statement: the count and the insert cannot drift apart.
const INSERT_RSVP: &str = "INSERT INTO rsvps (event_id, user_id, status, position, created_at) \
    SELECT $1, $2, \
      CASE WHEN (SELECT COUNT(*) FROM rsvps WHERE event_id = $1 AND status = 'going') < $3 \
           THEN 'going' ELSE 'waitlisted' END, \
      COALESCE(MAX(position), 0) + 1, $4 \
    FROM rsvps WHERE event_id = $1 \
    ON CONFLICT (event_id, user_id) DO NOTHING";

const WAITLIST_PLACE: &str = "SELECT COUNT(*) FROM rsvps WHERE event_id = $1 \
    AND status = 'waitlisted' \
    AND position <= (SELECT position FROM rsvps WHERE event_id = $1 AND user_id = $2)";

/// Moves up to `$2` of the earliest waitlisted users to going.
pub(super) const PROMOTE: &str = "UPDATE rsvps SET status = 'going' \
    WHERE event_id = $1 AND status = 'waitlisted' AND user_id IN \
      (SELECT user_id FROM rsvps WHERE event_id = $1 AND status = 'waitlisted' \
       ORDER BY position LIMIT $2) \
    RETURNING user_id, position";

const ATTENDEES: &str = "SELECT user_id FROM rsvps WHERE event_id = $1 ORDER BY position";

/// The event's RSVPs in list order (going = 0, then waitlisted = 1), each
/// list by `position`: the order seats were taken in and the order the
/// waitlist is promoted in (a promoted RSVP keeps its position, so it
/// joins the going list in promotion order). `place` is counted over the
/// whole list, not the page.
const ATTENDEE_LIST: &str = "SELECT u.id, u.handle, u.display_name, u.bio, u.tags, u.role, \
    u.created_at, r.status, r.list, r.position, r.place, r.rsvp_at FROM ( \
      SELECT user_id, status, CAST(position AS BIGINT) AS position, created_at AS rsvp_at, \
        CAST(CASE WHEN status = 'going' THEN 0 ELSE 1 END AS BIGINT) AS list, \
        CAST(ROW_NUMBER() OVER (PARTITION BY status ORDER BY position) AS BIGINT) AS place \
      FROM rsvps WHERE event_id = $1 \
    ) AS r JOIN users u ON u.id = r.user_id \
    WHERE r.list >= $2 AND r.list <= $3 \
      AND (r.list > $4 OR (r.list = $4 AND r.position > $5)) \
    ORDER BY r.list, r.position LIMIT $6";

impl Store {
    /// The statement that opens every seat-changing transaction: it takes
    /// the event's write lock and reads the row under it. Postgres locks
    /// the row. SQLite has no row locks; a deferred transaction that reads
    /// first and writes later fails with SQLITE_BUSY when another writer
    /// got in between, so it writes first (a no-op update), which makes
    /// SQLite take the database write lock at once, waiting its busy
    /// timeout for it, before anything is read.
    pub(super) fn lock_event_sql(&self) -> String {
        match self.pool {
            Pool::Sqlite(_) => format!(
                "UPDATE events SET capacity = capacity WHERE id = $1 RETURNING {LOCKED_COLUMNS}"
            ),
            Pool::Postgres(_) => {
                format!("SELECT {LOCKED_COLUMNS} FROM events WHERE id = $1 FOR UPDATE")
            }
        }
    }

    pub async fn create_event(
        &self,
        host_id: i64,
        new: NewEvent<'_>,
        now: i64,
    ) -> Result<EventRow, StoreError> {
        measured("create_event", async {
            let tags_json = serde_json::to_string(new.tags).unwrap_or_else(|_| "[]".into());
            let id: i64 = on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO events (host_id, title, description, starts_at, ends_at, venue, \
                     online_url, capacity, tags, cancelled, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
                )
                .bind(host_id)
                .bind(new.title)
                .bind(new.description)
                .bind(new.starts_at)
                .bind(new.ends_at)
                .bind(new.venue)
                .bind(new.online_url)
                .bind(new.capacity)
                .bind(&tags_json)
                .bind(false)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                for tag in new.tags {
                    sqlx::query("INSERT INTO event_tags (event_id, tag) VALUES ($1, $2)")
                        .bind(id)
                        .bind(tag)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                id
            });
            self.event(id)
                .await?
                .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
        })
        .await
    }

    pub async fn event(&self, id: i64) -> Result<Option<EventRow>, StoreError> {
        measured("event", async {
            let sql = format!("{EVENT_SELECT} WHERE e.id = $1");
            Ok(on_pool!(self, pool => sqlx::query_as::<_, EventRow>(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await)?)
        })
        .await
    }

    /// Scheduled events, soonest first, ties broken by id; fetches `limit`
    /// rows.
    pub async fn events(&self, filter: EventFilter<'_>) -> Result<Vec<EventRow>, StoreError> {
        measured("events", async {
            let sql = format!(
                "{EVENT_SELECT} WHERE e.cancelled = $1 AND e.starts_at >= $2 \
                 AND (e.starts_at > $3 OR (e.starts_at = $3 AND e.id > $4)) \
                 AND (CAST($5 AS TEXT) IS NULL OR EXISTS \
                     (SELECT 1 FROM event_tags t WHERE t.event_id = e.id AND t.tag = $5)) \
                 ORDER BY e.starts_at, e.id LIMIT $6"
            );
            // Without a cursor, start just before the first possible key.
            let (after_at, after_id) = filter.after.unwrap_or((filter.from, 0));
            Ok(on_pool!(self, pool => sqlx::query_as::<_, EventRow>(&sql)
                .bind(false)
                .bind(filter.from)
                .bind(after_at)
                .bind(after_id)
                .bind(filter.tag)
                .bind(i64::from(filter.limit))
                .fetch_all(pool)
                .await)?)
        })
        .await
    }

    /// The user's RSVP to the event, if any.
    pub async fn rsvp_status(
        &self,
        event_id: i64,
        user_id: i64,
    ) -> Result<Option<RsvpStatus>, StoreError> {
        measured("rsvp_status", async {
            let found: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(
                "SELECT status FROM rsvps WHERE event_id = $1 AND user_id = $2",
            )
            .bind(event_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await)?;
            found.map(|(s,)| RsvpStatus::parse(&s)).transpose()
        })
        .await
    }

    /// Applies `changes` under the event's lock (see [`Store::rsvp`]).
    ///
    /// The rules that span fields are checked against the row as it is
    /// under the lock, not as a caller saw it earlier: the event must end
    /// after it starts, keep a venue or an online URL, and keep room for
    /// everyone already going. Seats that a larger capacity frees go to the
    /// waitlist in order, in the same transaction.
    pub async fn update_event(
        &self,
        id: i64,
        changes: EventChanges<'_>,
        now: i64,
    ) -> Result<EventUpdated, EventError> {
        measured("update_event", async {
            let lock_sql = self.lock_event_sql();
            let tags_json = changes
                .tags
                .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into()));
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let Some(row): Option<Locked> = sqlx::query_as(&lock_sql)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Err(EventError::NotFound);
                };
                if row.cancelled {
                    return Err(EventError::Cancelled);
                }
                let starts_at = changes.starts_at.unwrap_or(row.starts_at);
                let ends_at = changes.ends_at.unwrap_or(row.ends_at);
                if ends_at.is_some_and(|end| end <= starts_at) {
                    return Err(EventError::EndsBeforeStart);
                }
                let venue = changes.venue.unwrap_or(row.venue.as_deref());
                let online_url = changes.online_url.unwrap_or(row.online_url.as_deref());
                if venue.is_none() && online_url.is_none() {
                    return Err(EventError::NoPlace);
                }
                let capacity = changes.capacity.unwrap_or(row.capacity);
                let (going,): (i64,) = sqlx::query_as(GOING_COUNT)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                if capacity < going {
                    return Err(EventError::CapacityBelowGoing { going });
                }
                sqlx::query(
                    "UPDATE events SET title = COALESCE($1, title), \
                     description = COALESCE($2, description), starts_at = $3, ends_at = $4, \
                     venue = $5, online_url = $6, capacity = $7, tags = COALESCE($8, tags), \
                     updated_at = $9 WHERE id = $10",
                )
                .bind(changes.title)
                .bind(changes.description)
                .bind(starts_at)
                .bind(ends_at)
                .bind(venue)
                .bind(online_url)
                .bind(capacity)
                .bind(tags_json.as_deref())
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if let Some(tags) = changes.tags {
                    sqlx::query("DELETE FROM event_tags WHERE event_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    for tag in tags {
                        sqlx::query("INSERT INTO event_tags (event_id, tag) VALUES ($1, $2)")
                            .bind(id)
                            .bind(tag)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                let mut promoted: Vec<(i64, i64)> = if capacity > going {
                    sqlx::query_as(PROMOTE)
                        .bind(id)
                        .bind(capacity - going)
                        .fetch_all(&mut *tx)
                        .await?
                } else {
                    Vec::new()
                };
                promoted.sort_by_key(|&(_, position)| position);
                let attendees: Vec<(i64,)> = sqlx::query_as(ATTENDEES)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(EventUpdated {
                    promoted: promoted.into_iter().map(|(user, _)| user).collect(),
                    attendees: attendees.into_iter().map(|(user,)| user).collect(),
                })
            })
        })
        .await
    }

    /// Cancels the event, keeping its RSVPs. Returns everyone with an RSVP
    /// when this call cancelled it, `None` when it was already cancelled.
    /// Runs under the event's lock so no RSVP slips in unannounced.
    pub async fn cancel_event(&self, id: i64, now: i64) -> Result<Option<Vec<i64>>, EventError> {
        measured("cancel_event", async {
            let lock_sql = self.lock_event_sql();
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let Some(row): Option<Locked> = sqlx::query_as(&lock_sql)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Err(EventError::NotFound);
                };
                if row.cancelled {
                    return Ok(None);
                }
                sqlx::query("UPDATE events SET cancelled = $1, updated_at = $2 WHERE id = $3")
                    .bind(true)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let attendees: Vec<(i64,)> = sqlx::query_as(ATTENDEES)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(attendees.into_iter().map(|(user,)| user).collect()))
            })
        })
        .await
    }

    /// RSVPs `user_id` to the event: going while seats remain, else
    /// waitlisted behind everyone earlier. Repeating it changes nothing and
    /// answers the current status. A cancelled event takes no RSVPs. The
    /// caller keeps the host out.
    ///
    /// # Why this cannot overbook
    /// Deciding "is a seat free?" and taking it must not interleave with
    /// another RSVP, or two requests both see the last free seat. So the
    /// transaction opens with the event's write lock ([`Self::lock_event_sql`]):
    /// on Postgres `SELECT … FOR UPDATE` on the event row, which queues
    /// every other seat-changing transaction of that event behind this one
    /// (and, under READ COMMITTED, each statement after it sees their
    /// committed rows); on SQLite a no-op `UPDATE` of the event row as the
    /// first statement, which takes the database write lock before any read,
    /// so the transaction can never need to upgrade a stale read snapshot
    /// (the SQLITE_BUSY failure of read-then-write transactions). Under the
    /// lock the insert itself decides going or waitlisted and the next
    /// waitlist position (`MAX(position) + 1`) in one `INSERT … SELECT`, and
    /// `ON CONFLICT DO NOTHING` makes a repeat a no-op.
    /// [`Self::leave_event`], [`Self::update_event`] and
    /// [`Self::cancel_event`] take the same lock.
    pub async fn rsvp(&self, event_id: i64, user_id: i64, now: i64) -> Result<Rsvp, EventError> {
        measured("rsvp", async {
            let lock_sql = self.lock_event_sql();
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let Some(row): Option<Locked> = sqlx::query_as(&lock_sql)
                    .bind(event_id)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Err(EventError::NotFound);
                };
                if row.cancelled {
                    return Err(EventError::Cancelled);
                }
                let created = sqlx::query(INSERT_RSVP)
                    .bind(event_id)
                    .bind(user_id)
                    .bind(row.capacity)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
                let (status,): (String,) =
                    sqlx::query_as("SELECT status FROM rsvps WHERE event_id = $1 AND user_id = $2")
                        .bind(event_id)
                        .bind(user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let status = RsvpStatus::parse(&status)?;
                let waitlist_place = if status == RsvpStatus::Waitlisted {
                    let (place,): (i64,) = sqlx::query_as(WAITLIST_PLACE)
                        .bind(event_id)
                        .bind(user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    Some(place)
                } else {
                    None
                };
                tx.commit().await?;
                Ok(Rsvp {
                    status,
                    waitlist_place,
                    created,
                })
            })
        })
        .await
    }

    /// Removes the user's RSVP; removing none is not an error. When a
    /// going user leaves a scheduled event, the freed seat goes to the
    /// earliest waitlisted user in the same transaction, under the same
    /// lock as [`Self::rsvp`], so a concurrent RSVP cannot take the seat
    /// from the waitlist and concurrent leaves promote distinct users.
    pub async fn leave_event(&self, event_id: i64, user_id: i64) -> Result<Left, EventError> {
        measured("leave_event", async {
            let lock_sql = self.lock_event_sql();
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let Some(row): Option<Locked> = sqlx::query_as(&lock_sql)
                    .bind(event_id)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Err(EventError::NotFound);
                };
                let removed: Option<(String,)> = sqlx::query_as(
                    "DELETE FROM rsvps WHERE event_id = $1 AND user_id = $2 RETURNING status",
                )
                .bind(event_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
                let was = removed.map(|(s,)| RsvpStatus::parse(&s)).transpose()?;
                let mut promoted: Vec<(i64, i64)> = Vec::new();
                if was == Some(RsvpStatus::Going) && !row.cancelled {
                    let (going,): (i64,) = sqlx::query_as(GOING_COUNT)
                        .bind(event_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    if row.capacity > going {
                        promoted = sqlx::query_as(PROMOTE)
                            .bind(event_id)
                            .bind(row.capacity - going)
                            .fetch_all(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                promoted.sort_by_key(|&(_, position)| position);
                Ok(Left {
                    was,
                    promoted: promoted.into_iter().map(|(user, _)| user).collect(),
                })
            })
        })
        .await
    }

    /// Whether `user_id` may be in the event's room, and what the room
    /// needs to show; `None` when there is no such event.
    pub async fn event_room_access(
        &self,
        event_id: i64,
        user_id: i64,
    ) -> Result<Option<EventAccess>, StoreError> {
        measured("event_room_access", async {
            #[derive(sqlx::FromRow)]
            struct Row {
                title: String,
                capacity: i64,
                host_id: i64,
                cancelled: bool,
                status: Option<String>,
            }
            let row: Option<Row> = on_pool!(self, pool => sqlx::query_as(
                "SELECT e.title, CAST(e.capacity AS BIGINT) AS capacity, e.host_id, e.cancelled, \
                 (SELECT r.status FROM rsvps r WHERE r.event_id = e.id AND r.user_id = $2) AS status \
                 FROM events e WHERE e.id = $1",
            )
            .bind(event_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await)?;
            Ok(row.map(|row| EventAccess {
                may_enter: row.host_id == user_id || row.status.as_deref() == Some("going"),
                title: row.title,
                capacity: row.capacity,
                host_id: row.host_id,
                cancelled: row.cancelled,
            }))
        })
        .await
    }

    /// `(id, title)` of the scheduled events whose room is open to the
    /// user: those they host or hold a seat at. Oldest event first.
    pub async fn event_ids_open_to(&self, user_id: i64) -> Result<Vec<(i64, String)>, StoreError> {
        measured("event_ids_open_to", async {
            Ok(on_pool!(self, pool => sqlx::query_as(
                "SELECT e.id, e.title FROM events e WHERE e.cancelled = $2 AND (e.host_id = $1 \
                 OR EXISTS (SELECT 1 FROM rsvps r WHERE r.event_id = e.id AND r.user_id = $1 \
                            AND r.status = 'going')) \
                 ORDER BY e.id",
            )
            .bind(user_id)
            .bind(false)
            .fetch_all(pool)
            .await)?)
        })
        .await
    }

    /// A page of the event's attendees in `which` list(s), after the
    /// `(list, position)` key of the last one served; fetches `limit` rows.
    pub async fn attendees(
        &self,
        event_id: i64,
        which: AttendeeList,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<Attendee>, StoreError> {
        measured("attendees", async {
            let (first, last) = match which {
                AttendeeList::Going => (0, 0),
                AttendeeList::Waitlisted => (1, 1),
                AttendeeList::Both => (0, 1),
            };
            let (after_list, after_position) = after.unwrap_or((-1, 0));
            let rows: Vec<AttendeeRecord> = on_pool!(self, pool => sqlx::query_as(ATTENDEE_LIST)
                .bind(event_id)
                .bind(first)
                .bind(last)
                .bind(after_list)
                .bind(after_position)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await)?;
            rows.into_iter()
                .map(|row| {
                    Ok(Attendee {
                        status: RsvpStatus::parse(&row.status)?,
                        place: row.place,
                        rsvp_at: row.rsvp_at,
                        key: (row.list, row.position),
                        user: row.user,
                    })
                })
                .collect()
        })
        .await
    }
}
