//! The store's event contract, written once and run against both backends:
//! every contract function becomes `sqlite::<name>` and `postgres::<name>`.
//! It covers what REST does not show directly: the helpers event rooms use
//! and the typed errors of edits. The Postgres half needs the shared server
//! (see `crate::common::postgres`) and fails, saying how to start it, when it is
//! down.

use crate::common::store::{user, NOW};

use crate::store_contract;
use meshi::store::{
    EventAccess, EventChanges, EventError, Left, NewEvent, RsvpStatus, Store, UserRow,
};

store_contract!(
    room_access_follows_host_seat_and_cancellation,
    rooms_open_to_a_user_are_hosted_or_going_and_scheduled,
    edits_keep_the_cross_field_rules,
    leaving_promotes_in_waitlist_order,
    missing_events_are_not_found,
);

const HOUR: i64 = 3_600_000;

async fn event(store: &Store, host: &UserRow, title: &str, capacity: i64) -> i64 {
    store
        .create_event(
            host.id,
            NewEvent {
                title,
                description: "",
                starts_at: NOW + 24 * HOUR,
                ends_at: Some(NOW + 26 * HOUR),
                venue: Some("Kitchen"),
                online_url: None,
                capacity,
                tags: &["food".to_owned()],
            },
            NOW,
        )
        .await
        .expect("create event")
        .id
}

async fn status(store: &Store, event_id: i64, user: &UserRow) -> RsvpStatus {
    store
        .rsvp(event_id, user.id, NOW)
        .await
        .expect("rsvp")
        .status
}

async fn room_access_follows_host_seat_and_cancellation(store: &Store) {
    let host = user(store, "host").await;
    let going = user(store, "going").await;
    let waiting = user(store, "waiting").await;
    let stranger = user(store, "stranger").await;
    let id = event(store, &host, "Gyoza", 1).await;
    assert_eq!(status(store, id, &going).await, RsvpStatus::Going);
    assert_eq!(status(store, id, &waiting).await, RsvpStatus::Waitlisted);

    let access = |user: i64| async move {
        store
            .event_room_access(id, user)
            .await
            .expect("event_room_access")
            .expect("the event exists")
    };
    assert_eq!(
        access(host.id).await,
        EventAccess {
            title: "Gyoza".into(),
            capacity: 1,
            host_id: host.id,
            may_enter: true,
            cancelled: false,
        }
    );
    assert!(access(going.id).await.may_enter);
    assert!(!access(waiting.id).await.may_enter);
    assert!(!access(stranger.id).await.may_enter);

    store.cancel_event(id, NOW).await.expect("cancel");
    let after = access(going.id).await;
    assert!(after.cancelled);
    assert!(
        after.may_enter,
        "cancellation is reported apart from the seat"
    );

    let missing = store
        .event_room_access(id + 1000, host.id)
        .await
        .expect("event_room_access");
    assert_eq!(missing, None);
}

async fn rooms_open_to_a_user_are_hosted_or_going_and_scheduled(store: &Store) {
    let host = user(store, "host").await;
    let guest = user(store, "guest").await;
    let other = user(store, "other").await;
    let going = event(store, &other, "Going", 1).await;
    let waiting = event(store, &other, "Waiting", 1).await;
    let cancelled = event(store, &other, "Cancelled", 5).await;
    let left = event(store, &other, "Left", 5).await;
    let hosted = event(store, &guest, "Hosted", 1).await;

    assert_eq!(status(store, going, &guest).await, RsvpStatus::Going);
    assert_eq!(status(store, waiting, &host).await, RsvpStatus::Going);
    assert_eq!(status(store, waiting, &guest).await, RsvpStatus::Waitlisted);
    assert_eq!(status(store, cancelled, &guest).await, RsvpStatus::Going);
    store.cancel_event(cancelled, NOW).await.expect("cancel");
    assert_eq!(status(store, left, &guest).await, RsvpStatus::Going);
    store.leave_event(left, guest.id).await.expect("leave");

    let open = store.event_ids_open_to(guest.id).await.expect("open rooms");
    assert_eq!(
        open,
        [(going, "Going".to_owned()), (hosted, "Hosted".to_owned())]
    );
    let none = store
        .event_ids_open_to(other.id + 1000)
        .await
        .expect("open");
    assert!(none.is_empty());
}

async fn edits_keep_the_cross_field_rules(store: &Store) {
    let host = user(store, "host").await;
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let c = user(store, "c").await;
    let id = event(store, &host, "Soba", 2).await;
    for guest in [&a, &b, &c] {
        store.rsvp(id, guest.id, NOW).await.expect("rsvp");
    }

    let err = store
        .update_event(
            id,
            EventChanges {
                capacity: Some(1),
                ..Default::default()
            },
            NOW,
        )
        .await
        .expect_err("below going");
    assert!(
        matches!(err, EventError::CapacityBelowGoing { going: 2 }),
        "{err:?}"
    );
    let err = store
        .update_event(
            id,
            EventChanges {
                starts_at: Some(NOW + 30 * HOUR),
                ..Default::default()
            },
            NOW,
        )
        .await
        .expect_err("start after the stored end");
    assert!(matches!(err, EventError::EndsBeforeStart), "{err:?}");
    let err = store
        .update_event(
            id,
            EventChanges {
                venue: Some(None),
                ..Default::default()
            },
            NOW,
        )
        .await
        .expect_err("no place left");
    assert!(matches!(err, EventError::NoPlace), "{err:?}");

    let done = store
        .update_event(
            id,
            EventChanges {
                title: Some("Soba and tempura"),
                venue: Some(None),
                online_url: Some(Some("https://meet.example/soba")),
                ends_at: Some(None),
                starts_at: Some(NOW + 30 * HOUR),
                capacity: Some(3),
                ..Default::default()
            },
            NOW + 1,
        )
        .await
        .expect("a consistent edit");
    assert_eq!(done.promoted, [c.id]);
    assert_eq!(done.attendees, [a.id, b.id, c.id]);
    let row = store.event(id).await.expect("event").expect("exists");
    assert_eq!(row.title, "Soba and tempura");
    assert_eq!(row.venue, None);
    assert_eq!(row.online_url.as_deref(), Some("https://meet.example/soba"));
    assert_eq!(row.ends_at, None);
    assert_eq!(row.starts_at, NOW + 30 * HOUR);
    assert_eq!(
        (row.capacity, row.going_count, row.waitlist_count),
        (3, 3, 0)
    );
    assert_eq!(row.updated_at, NOW + 1);

    assert_eq!(
        store.cancel_event(id, NOW + 2).await.expect("cancel"),
        Some(vec![a.id, b.id, c.id])
    );
    assert_eq!(store.cancel_event(id, NOW + 3).await.expect("again"), None);
    let err = store
        .update_event(
            id,
            EventChanges {
                title: Some("Back"),
                ..Default::default()
            },
            NOW,
        )
        .await
        .expect_err("cancelled");
    assert!(matches!(err, EventError::Cancelled), "{err:?}");
    let late = user(store, "late").await;
    let err = store.rsvp(id, late.id, NOW).await.expect_err("closed");
    assert!(matches!(err, EventError::Cancelled), "{err:?}");
}

async fn leaving_promotes_in_waitlist_order(store: &Store) {
    let host = user(store, "host").await;
    let guests = [
        user(store, "g1").await,
        user(store, "g2").await,
        user(store, "g3").await,
        user(store, "g4").await,
    ];
    let id = event(store, &host, "Udon", 1).await;
    for guest in &guests {
        store.rsvp(id, guest.id, NOW).await.expect("rsvp");
    }
    let place = |i: usize| {
        let user = guests[i].id;
        async move { store.rsvp(id, user, NOW).await.expect("rsvp") }
    };
    assert_eq!(place(3).await.waitlist_place, Some(3));
    assert!(!place(3).await.created, "a repeat creates nothing");

    let left = store.leave_event(id, guests[2].id).await.expect("leave");
    assert_eq!(
        left,
        Left {
            was: Some(RsvpStatus::Waitlisted),
            promoted: vec![],
        }
    );
    let left = store.leave_event(id, guests[0].id).await.expect("leave");
    assert_eq!(
        left,
        Left {
            was: Some(RsvpStatus::Going),
            promoted: vec![guests[1].id],
        }
    );
    assert_eq!(place(3).await.waitlist_place, Some(1));
    let left = store.leave_event(id, guests[0].id).await.expect("again");
    assert_eq!(left, Left::default());
    assert_eq!(
        store.rsvp_status(id, guests[1].id).await.expect("status"),
        Some(RsvpStatus::Going)
    );
    assert_eq!(
        store.rsvp_status(id, guests[0].id).await.expect("status"),
        None
    );
}

async fn missing_events_are_not_found(store: &Store) {
    let someone = user(store, "someone").await;
    let missing = 4242;
    assert!(store.event(missing).await.expect("event").is_none());
    assert!(matches!(
        store.rsvp(missing, someone.id, NOW).await,
        Err(EventError::NotFound)
    ));
    assert!(matches!(
        store.leave_event(missing, someone.id).await,
        Err(EventError::NotFound)
    ));
    assert!(matches!(
        store.cancel_event(missing, NOW).await,
        Err(EventError::NotFound)
    ));
    assert!(matches!(
        store
            .update_event(missing, EventChanges::default(), NOW)
            .await,
        Err(EventError::NotFound)
    ));
}
