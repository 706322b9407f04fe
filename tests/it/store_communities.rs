//! The store's community contract, written once and run against both
//! backends: every contract function below becomes `sqlite::<name>` and
//! `postgres::<name>`. The Postgres half needs the shared server (see
//! `crate::common::postgres`) and fails, saying how to start it, when it is down.

use crate::common::store::{tags, user, NOW};

use crate::store_contract;
use meshi::store::{
    CommunityAccess, CommunityFilter, CommunityRow, MembershipChange, Store, StoreError, UserRow,
};

store_contract!(
    create_returns_the_row_with_the_owner_as_member,
    names_clash_whatever_their_case,
    a_refused_create_leaves_nothing_behind,
    join_and_leave_are_idempotent,
    membership_of_an_unknown_community,
    room_access_follows_membership,
    community_ids_of_lists_the_users_communities,
    listing_orders_by_name_in_code_point_order,
    listing_pages_after_a_cursor,
    listing_filters_by_text_and_tag,
);

async fn community(store: &Store, owner: &UserRow, name: &str, list: &[&str]) -> CommunityRow {
    store
        .create_community(owner.id, name, "", &tags(list), NOW)
        .await
        .unwrap_or_else(|e| panic!("create community {name}: {e}"))
}

fn everything() -> CommunityFilter<'static> {
    CommunityFilter {
        tag: None,
        text: None,
        after: None,
        limit: 100,
    }
}

fn names(rows: &[CommunityRow]) -> Vec<&str> {
    rows.iter().map(|r| r.name.as_str()).collect()
}

async fn member_count(store: &Store, id: i64) -> i64 {
    store
        .community(id)
        .await
        .expect("community")
        .expect("the community exists")
        .member_count
}

async fn create_returns_the_row_with_the_owner_as_member(store: &Store) {
    let ada = user(store, "ada").await;
    let tags = vec!["rust".to_owned(), "async".to_owned()];
    let row = store
        .create_community(ada.id, "Rust Tokyo", "Monthly meetups", &tags, NOW)
        .await
        .expect("create");
    assert!(row.id > 0, "ids are positive: {row:?}");
    assert_eq!(row.name, "Rust Tokyo");
    assert_eq!(row.name_key, "rust tokyo");
    assert_eq!(row.description, "Monthly meetups");
    assert_eq!(row.tags, r#"["rust","async"]"#);
    assert_eq!(row.owner_id, ada.id);
    assert_eq!(row.member_count, 1, "the owner is the first member");
    assert_eq!(row.created_at, NOW);

    let found = store
        .community(row.id)
        .await
        .expect("community")
        .expect("found");
    assert_eq!(found.name, row.name);
    assert_eq!(found.member_count, 1);
    assert!(store
        .community(row.id + 1000)
        .await
        .expect("miss")
        .is_none());
    assert!(store
        .is_community_member(row.id, ada.id)
        .await
        .expect("is_member"));
}

async fn names_clash_whatever_their_case(store: &Store) {
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    community(store, &ada, "Rust Tokyo", &[]).await;
    for clash in ["Rust Tokyo", "rust tokyo", "RUST TOKYO"] {
        let again = store.create_community(bob.id, clash, "", &[], NOW).await;
        assert!(
            matches!(again, Err(StoreError::Conflict(_))),
            "{clash:?} clashes: {again:?}"
        );
    }
    // Folding is Unicode-wide and the same on both backends.
    community(store, &ada, "Über Café", &[]).await;
    let again = store
        .create_community(bob.id, "üBER CAFÉ", "", &[], NOW)
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "non-ASCII case clashes: {again:?}"
    );
    community(store, &bob, "Rust Tokyo 2", &[]).await;
    let all = store.communities(everything()).await.expect("list");
    assert_eq!(names(&all), ["Rust Tokyo", "Rust Tokyo 2", "Über Café"]);
}

async fn a_refused_create_leaves_nothing_behind(store: &Store) {
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    community(store, &ada, "Gophers", &["go"]).await;
    let tags = vec!["golang".to_owned()];
    let again = store
        .create_community(bob.id, "GOPHERS", "", &tags, NOW)
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert!(
        store
            .community_ids_of(bob.id)
            .await
            .expect("ids_of")
            .is_empty(),
        "no membership from the refused create"
    );
    let tagged = store
        .communities(CommunityFilter {
            tag: Some("golang"),
            ..everything()
        })
        .await
        .expect("list");
    assert!(tagged.is_empty(), "no tags from the refused create");
}

async fn join_and_leave_are_idempotent(store: &Store) {
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let id = community(store, &ada, "Rust Tokyo", &[]).await.id;

    let first = store.join_community(id, bob.id, NOW).await.expect("join");
    assert_eq!(first, MembershipChange::Changed);
    assert_eq!(member_count(store, id).await, 2);
    let second = store.join_community(id, bob.id, NOW).await.expect("join");
    assert_eq!(second, MembershipChange::Unchanged);
    assert_eq!(member_count(store, id).await, 2);
    assert!(store.is_community_member(id, bob.id).await.expect("member"));

    let left = store.leave_community(id, bob.id).await.expect("leave");
    assert_eq!(left, MembershipChange::Changed);
    assert_eq!(member_count(store, id).await, 1);
    let again = store.leave_community(id, bob.id).await.expect("leave");
    assert_eq!(again, MembershipChange::Unchanged);
    assert_eq!(member_count(store, id).await, 1);
    assert!(!store.is_community_member(id, bob.id).await.expect("member"));

    // The owner may leave too; the community stays, with no one in it.
    let owner_left = store.leave_community(id, ada.id).await.expect("leave");
    assert_eq!(owner_left, MembershipChange::Changed);
    assert_eq!(member_count(store, id).await, 0);
}

async fn membership_of_an_unknown_community(store: &Store) {
    let ada = user(store, "ada").await;
    let missing = community(store, &ada, "Rust Tokyo", &[]).await.id + 1000;
    assert_eq!(
        store
            .join_community(missing, ada.id, NOW)
            .await
            .expect("join"),
        MembershipChange::NoSuchCommunity
    );
    assert_eq!(
        store.leave_community(missing, ada.id).await.expect("leave"),
        MembershipChange::NoSuchCommunity
    );
    assert!(!store
        .is_community_member(missing, ada.id)
        .await
        .expect("member"));
}

async fn room_access_follows_membership(store: &Store) {
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let id = community(store, &ada, "Rust Tokyo", &[]).await.id;
    let access = |is_member| {
        Some(CommunityAccess {
            name: "Rust Tokyo".into(),
            is_member,
        })
    };
    assert_eq!(
        store.community_room_access(id, ada.id).await.expect("ada"),
        access(true)
    );
    assert_eq!(
        store.community_room_access(id, bob.id).await.expect("bob"),
        access(false)
    );
    store.join_community(id, bob.id, NOW).await.expect("join");
    assert_eq!(
        store.community_room_access(id, bob.id).await.expect("bob"),
        access(true)
    );
    store.leave_community(id, bob.id).await.expect("leave");
    assert_eq!(
        store.community_room_access(id, bob.id).await.expect("bob"),
        access(false)
    );
    assert_eq!(
        store
            .community_room_access(id + 1000, ada.id)
            .await
            .expect("missing"),
        None
    );
}

async fn community_ids_of_lists_the_users_communities(store: &Store) {
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    let zig = community(store, &ada, "Zig", &[]).await;
    let go = community(store, &ada, "Go", &[]).await;
    let ml = community(store, &bob, "OCaml", &[]).await;
    assert!(zig.id < go.id && go.id < ml.id);

    assert_eq!(
        store.community_ids_of(ada.id).await.expect("ada"),
        vec![(zig.id, "Zig".to_owned()), (go.id, "Go".to_owned())],
        "by id, only the user's own"
    );
    store
        .join_community(zig.id, bob.id, NOW)
        .await
        .expect("join");
    assert_eq!(
        store.community_ids_of(bob.id).await.expect("bob"),
        vec![(zig.id, "Zig".to_owned()), (ml.id, "OCaml".to_owned())]
    );
    store.leave_community(zig.id, bob.id).await.expect("leave");
    assert_eq!(
        store.community_ids_of(bob.id).await.expect("bob"),
        vec![(ml.id, "OCaml".to_owned())]
    );
    let carol = user(store, "carol").await;
    assert!(store
        .community_ids_of(carol.id)
        .await
        .expect("carol")
        .is_empty());
}

async fn listing_orders_by_name_in_code_point_order(store: &Store) {
    let ada = user(store, "ada").await;
    for name in ["beta", "Zulu", "Ähre", "alpha", "Zeta", "_under", "Beta 2"] {
        community(store, &ada, name, &[]).await;
    }
    let all = store.communities(everything()).await.expect("list");
    // Lower-cased, then by code point: `_` sorts before letters and `ä`
    // after `z`, on both backends alike.
    assert_eq!(
        names(&all),
        ["_under", "alpha", "beta", "Beta 2", "Zeta", "Zulu", "Ähre"]
    );
    assert!(all.iter().all(|r| r.member_count == 1));
}

async fn listing_pages_after_a_cursor(store: &Store) {
    let ada = user(store, "ada").await;
    for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
        community(store, &ada, name, &[]).await;
    }
    let first = store
        .communities(CommunityFilter {
            limit: 2,
            ..everything()
        })
        .await
        .expect("first page");
    assert_eq!(names(&first), ["alpha", "bravo"]);
    let last = &first[1];
    // Created between pages: one before the cursor, one after it.
    community(store, &ada, "aardvark", &[]).await;
    community(store, &ada, "cobalt", &[]).await;
    let rest = store
        .communities(CommunityFilter {
            after: Some((&last.name_key, last.id)),
            ..everything()
        })
        .await
        .expect("rest");
    assert_eq!(names(&rest), ["charlie", "cobalt", "delta", "echo"]);
}

async fn listing_filters_by_text_and_tag(store: &Store) {
    let ada = user(store, "ada").await;
    store
        .create_community(
            ada.id,
            "Rust Tokyo",
            "Async RUST talk",
            &tags(&["rust"]),
            NOW,
        )
        .await
        .expect("rust tokyo");
    store
        .create_community(ada.id, "Gophers", "we like rust too", &tags(&["go"]), NOW)
        .await
        .expect("gophers");
    store
        .create_community(
            ada.id,
            "100% Uptime",
            "ops_people",
            &tags(&["ops", "rust"]),
            NOW,
        )
        .await
        .expect("uptime");
    store
        .create_community(ada.id, "1000 Uptimes", "opsXpeople", &tags(&["ops"]), NOW)
        .await
        .expect("uptimes");

    let find = |text: Option<&'static str>, tag: Option<&'static str>| {
        store.communities(CommunityFilter {
            text,
            tag,
            ..everything()
        })
    };
    let rust = find(Some("RuSt"), None).await.expect("text");
    assert_eq!(
        names(&rust),
        ["Gophers", "Rust Tokyo"],
        "name or description, any case"
    );
    let percent = find(Some("100%"), None).await.expect("percent");
    assert_eq!(names(&percent), ["100% Uptime"], "`%` matches itself");
    let underscore = find(Some("ops_"), None).await.expect("underscore");
    assert_eq!(names(&underscore), ["100% Uptime"], "`_` matches itself");
    let tagged = find(None, Some("rust")).await.expect("tag");
    assert_eq!(names(&tagged), ["100% Uptime", "Rust Tokyo"]);
    let both = find(Some("tokyo"), Some("rust")).await.expect("both");
    assert_eq!(names(&both), ["Rust Tokyo"]);
    let none = find(Some("tokyo"), Some("ops")).await.expect("none");
    assert!(none.is_empty());
    let tag_case = find(None, Some("RUST")).await.expect("tag case");
    assert!(tag_case.is_empty(), "tags match exactly, as on cards");
}
