//! The store's platform contract (cards, interests, matches with their
//! conversations, notifications and the read marker), written once and run
//! against both backends: every contract function below becomes
//! `sqlite::<name>` and `postgres::<name>`. The Postgres half needs the
//! shared server (see `crate::common::postgres`) and fails, saying how to start
//! it, when it is down.

use crate::common::store::{tags, user, NOW};

use crate::store_contract;
use meshi::store::{CardChanges, CardFilter, CardRow, MatchError, Store, UserRow};

store_contract!(
    create_card_returns_the_row,
    card_finds_and_misses,
    cards_are_newest_first_and_filter_by_tag_text_and_owner,
    cards_page_with_before_id_and_limit,
    update_card_changes_only_what_is_given,
    delete_card_removes_it_and_its_interests,
    press_interest_is_true_then_false,
    interests_list_newest_first_with_a_cursor,
    create_match_without_interest_changes_nothing,
    create_match_with_the_owner_themselves_is_not_interested,
    create_match_reports_what_it_created,
    conversations_and_matches_are_seen_from_both_sides,
    notifications_list_newest_first_per_user,
    the_read_marker_only_moves_forward,
    racing_presses_count_once,
    racing_matches_of_one_pair_share_one_conversation,
);

async fn card(store: &Store, owner: &UserRow, title: &str, body: &str, list: &[&str]) -> CardRow {
    store
        .create_card(owner.id, title, body, &tags(list), NOW)
        .await
        .unwrap_or_else(|e| panic!("create card {title}: {e}"))
}

/// A filter with nothing set and a generous limit.
fn all() -> CardFilter<'static> {
    CardFilter {
        tag: None,
        text: None,
        owner_id: None,
        before_id: None,
        limit: 100,
    }
}

fn card_titles(rows: &[CardRow]) -> Vec<&str> {
    rows.iter().map(|r| r.title.as_str()).collect()
}

async fn titles_for(store: &Store, filter: CardFilter<'_>) -> Vec<String> {
    store
        .cards(filter)
        .await
        .expect("cards")
        .into_iter()
        .map(|r| r.title)
        .collect()
}

async fn close(store: &Store, card: &CardRow) {
    store
        .update_card(
            card.id,
            CardChanges {
                title: None,
                body: None,
                tags: None,
                is_open: Some(false),
            },
            NOW + 1,
        )
        .await
        .expect("close the card");
}

async fn create_card_returns_the_row(store: &Store) {
    let owner = user(store, "card_owner").await;
    let row = store
        .create_card(
            owner.id,
            "Async Rust",
            "tokio talk",
            &tags(&["rust", "async"]),
            NOW,
        )
        .await
        .expect("create card");
    assert!(row.id > 0, "ids are positive: {row:?}");
    assert_eq!(row.owner_id, owner.id);
    assert_eq!(row.owner_handle, "card_owner");
    assert_eq!(row.owner_display_name, "card_owner");
    assert_eq!(row.title, "Async Rust");
    assert_eq!(row.body, "tokio talk");
    let stored: Vec<String> = serde_json::from_str(&row.tags).expect("tags are a JSON array");
    assert_eq!(stored, ["rust", "async"]);
    assert!(row.is_open, "a new card is open");
    assert_eq!(row.created_at, NOW);
    assert_eq!(row.updated_at, NOW);

    let second = store
        .create_card(owner.id, "Empty", "", &[], NOW + 5)
        .await
        .expect("create a bare card");
    assert!(second.id > row.id, "ids increase");
    assert_eq!(second.tags, "[]");
    assert_eq!(second.body, "");
    assert_eq!(second.created_at, NOW + 5);
}

async fn card_finds_and_misses(store: &Store) {
    let owner = user(store, "finder").await;
    let made = card(store, &owner, "findable", "b", &["x"]).await;
    let found = store
        .card(made.id)
        .await
        .expect("card")
        .expect("the card exists");
    assert_eq!(found.id, made.id);
    assert_eq!(found.title, "findable");
    assert_eq!(found.owner_handle, "finder");
    assert_eq!(found.tags, made.tags);
    let missing = store.card(made.id + 1_000).await.expect("card");
    assert!(missing.is_none(), "no such card, got {missing:?}");
}

async fn cards_are_newest_first_and_filter_by_tag_text_and_owner(store: &Store) {
    let ada = user(store, "ada").await;
    let bob = user(store, "bob").await;
    card(store, &ada, "Kubernetes at scale", "clusters", &["ops"]).await;
    card(
        store,
        &bob,
        "Weekend",
        "I run KUBERNETES at home",
        &["ops", "fun"],
    )
    .await;
    card(store, &ada, "100% rust", "", &["rust"]).await;
    card(store, &bob, "snake_case names", "", &[]).await;
    card(store, &bob, "snakeXcase names", "", &[]).await;
    let closed = card(store, &ada, "closed topic", "kubernetes", &["ops"]).await;
    close(store, &closed).await;

    let rows = store.cards(all()).await.expect("cards");
    assert_eq!(
        card_titles(&rows),
        [
            "snakeXcase names",
            "snake_case names",
            "100% rust",
            "Weekend",
            "Kubernetes at scale"
        ],
        "newest first, closed cards hidden"
    );

    let by_tag = titles_for(
        store,
        CardFilter {
            tag: Some("ops"),
            ..all()
        },
    )
    .await;
    assert_eq!(by_tag, ["Weekend", "Kubernetes at scale"]);
    let by_tag = titles_for(
        store,
        CardFilter {
            tag: Some("op"),
            ..all()
        },
    )
    .await;
    assert!(by_tag.is_empty(), "tags match whole: {by_tag:?}");

    let by_text = titles_for(
        store,
        CardFilter {
            text: Some("kUbErNeTeS"),
            ..all()
        },
    )
    .await;
    assert_eq!(
        by_text,
        ["Weekend", "Kubernetes at scale"],
        "case-insensitive, title or body"
    );
    let literal = titles_for(
        store,
        CardFilter {
            text: Some("%"),
            ..all()
        },
    )
    .await;
    assert_eq!(literal, ["100% rust"], "`%` is literal");
    let literal = titles_for(
        store,
        CardFilter {
            text: Some("e_c"),
            ..all()
        },
    )
    .await;
    assert_eq!(literal, ["snake_case names"], "`_` is literal");

    let ada_cards = titles_for(
        store,
        CardFilter {
            owner_id: Some(ada.id),
            ..all()
        },
    )
    .await;
    assert_eq!(
        ada_cards,
        ["closed topic", "100% rust", "Kubernetes at scale"],
        "the owner filter includes closed cards"
    );
    let ada_ops = titles_for(
        store,
        CardFilter {
            owner_id: Some(ada.id),
            tag: Some("ops"),
            text: Some("KUBERNETES"),
            ..all()
        },
    )
    .await;
    assert_eq!(
        ada_ops,
        ["closed topic", "Kubernetes at scale"],
        "filters combine"
    );
    let nobody = titles_for(
        store,
        CardFilter {
            owner_id: Some(bob.id + 1_000),
            ..all()
        },
    )
    .await;
    assert!(nobody.is_empty(), "{nobody:?}");
}

async fn cards_page_with_before_id_and_limit(store: &Store) {
    let owner = user(store, "pager").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(card(store, &owner, &format!("c{i}"), "", &[]).await.id);
    }
    let first = store
        .cards(CardFilter { limit: 2, ..all() })
        .await
        .expect("cards");
    assert_eq!(card_titles(&first), ["c4", "c3"]);
    let rest = store
        .cards(CardFilter {
            before_id: Some(first[1].id),
            limit: 10,
            ..all()
        })
        .await
        .expect("cards");
    assert_eq!(card_titles(&rest), ["c2", "c1", "c0"]);
    let none = store
        .cards(CardFilter {
            before_id: Some(ids[0]),
            ..all()
        })
        .await
        .expect("cards");
    assert!(none.is_empty(), "nothing is older than the first card");
}

async fn update_card_changes_only_what_is_given(store: &Store) {
    let owner = user(store, "updater").await;
    let made = card(store, &owner, "before", "the body", &["old"]).await;
    let other = card(store, &owner, "untouched", "", &["old"]).await;
    let new_tags = tags(&["new", "fresh"]);
    store
        .update_card(
            made.id,
            CardChanges {
                title: Some("after"),
                body: None,
                tags: Some(&new_tags),
                is_open: None,
            },
            NOW + 10,
        )
        .await
        .expect("update");
    let found = store.card(made.id).await.expect("card").expect("exists");
    assert_eq!(found.title, "after");
    assert_eq!(found.body, "the body", "an absent change keeps the value");
    let stored: Vec<String> = serde_json::from_str(&found.tags).expect("JSON tags");
    assert_eq!(stored, ["new", "fresh"]);
    assert!(found.is_open);
    assert_eq!(found.created_at, NOW);
    assert_eq!(found.updated_at, NOW + 10);

    let by_new = titles_for(
        store,
        CardFilter {
            tag: Some("new"),
            ..all()
        },
    )
    .await;
    assert_eq!(by_new, ["after"], "the tag index follows the new tags");
    let by_old = titles_for(
        store,
        CardFilter {
            tag: Some("old"),
            ..all()
        },
    )
    .await;
    assert_eq!(by_old, ["untouched"], "the old tag left only this card");

    close(store, &made).await;
    let found = store.card(made.id).await.expect("card").expect("exists");
    assert!(!found.is_open, "closed");
    assert_eq!(found.title, "after");
    let untouched = store.card(other.id).await.expect("card").expect("exists");
    assert!(untouched.is_open, "only the target changes");
    assert_eq!(untouched.updated_at, NOW);
}

async fn delete_card_removes_it_and_its_interests(store: &Store) {
    let owner = user(store, "remover").await;
    let fan = user(store, "fan").await;
    let doomed = card(store, &owner, "doomed", "", &["t"]).await;
    let kept = card(store, &owner, "kept", "", &["t"]).await;
    assert!(store
        .press_interest(doomed.id, fan.id, NOW)
        .await
        .expect("press"));
    assert!(store
        .press_interest(kept.id, fan.id, NOW)
        .await
        .expect("press"));
    store.delete_card(doomed.id).await.expect("delete");
    assert!(store.card(doomed.id).await.expect("card").is_none());
    assert!(
        !store
            .has_interest(doomed.id, fan.id)
            .await
            .expect("has_interest"),
        "interests go with the card"
    );
    assert!(store
        .has_interest(kept.id, fan.id)
        .await
        .expect("has_interest"));
    let by_tag = titles_for(
        store,
        CardFilter {
            tag: Some("t"),
            ..all()
        },
    )
    .await;
    assert_eq!(by_tag, ["kept"]);
    // Deleting again is harmless.
    store.delete_card(doomed.id).await.expect("delete again");
}

async fn press_interest_is_true_then_false(store: &Store) {
    let owner = user(store, "owner").await;
    let fan = user(store, "presser").await;
    let topic = card(store, &owner, "topic", "", &[]).await;
    assert!(!store
        .has_interest(topic.id, fan.id)
        .await
        .expect("has_interest"));
    assert!(
        store
            .press_interest(topic.id, fan.id, NOW)
            .await
            .expect("press"),
        "the first press is new"
    );
    assert!(
        !store
            .press_interest(topic.id, fan.id, NOW + 1)
            .await
            .expect("press again"),
        "the second press changes nothing"
    );
    assert!(store
        .has_interest(topic.id, fan.id)
        .await
        .expect("has_interest"));
    let listed = store
        .interests(topic.id, None, 10)
        .await
        .expect("interests");
    assert_eq!(listed.len(), 1, "one interest: {listed:?}");
    assert_eq!(listed[0].user.id, fan.id);
    assert_eq!(listed[0].pressed_at, NOW, "the first press's time is kept");

    store
        .withdraw_interest(topic.id, fan.id)
        .await
        .expect("withdraw");
    assert!(!store
        .has_interest(topic.id, fan.id)
        .await
        .expect("has_interest"));
    store
        .withdraw_interest(topic.id, fan.id)
        .await
        .expect("withdraw twice");
    assert!(store
        .interests(topic.id, None, 10)
        .await
        .expect("interests")
        .is_empty());
    assert!(
        store
            .press_interest(topic.id, fan.id, NOW + 2)
            .await
            .expect("press"),
        "after withdrawing, a press is new again"
    );
}

async fn interests_list_newest_first_with_a_cursor(store: &Store) {
    let owner = user(store, "popular").await;
    let first = user(store, "first").await;
    let second = user(store, "second").await;
    let third = user(store, "third").await;
    let topic = card(store, &owner, "topic", "", &[]).await;
    let other = card(store, &owner, "other", "", &[]).await;
    store
        .press_interest(topic.id, first.id, NOW)
        .await
        .expect("press");
    store
        .press_interest(topic.id, second.id, NOW + 1)
        .await
        .expect("press");
    store
        .press_interest(topic.id, third.id, NOW + 1)
        .await
        .expect("press");
    store
        .press_interest(other.id, first.id, NOW + 5)
        .await
        .expect("press");

    let listed = store
        .interests(topic.id, None, 10)
        .await
        .expect("interests");
    let who: Vec<i64> = listed.iter().map(|i| i.user.id).collect();
    assert_eq!(
        who,
        [third.id, second.id, first.id],
        "newest first, ties by user id"
    );
    assert_eq!(listed[0].user.handle, "third");
    let page = store.interests(topic.id, None, 2).await.expect("interests");
    assert_eq!(page.len(), 2);
    let last = &page[1];
    let rest = store
        .interests(topic.id, Some((last.pressed_at, last.user.id)), 10)
        .await
        .expect("interests");
    let who: Vec<i64> = rest.iter().map(|i| i.user.id).collect();
    assert_eq!(who, [first.id], "the cursor continues after the tie");
}

async fn create_match_without_interest_changes_nothing(store: &Store) {
    let owner = user(store, "m_owner").await;
    let stranger = user(store, "m_stranger").await;
    let topic = card(store, &owner, "topic", "", &[]).await;
    let refused = store
        .create_match(topic.id, owner.id, stranger.id, NOW)
        .await;
    assert!(
        matches!(refused, Err(MatchError::NotInterested)),
        "no interest, no match: got {:?}",
        refused.as_ref().map(|m| &m.record)
    );
    for side in [owner.id, stranger.id] {
        let conversations = store
            .conversations_of(side, None, 10)
            .await
            .expect("conversations");
        assert!(
            conversations.is_empty(),
            "no conversation left behind: {conversations:?}"
        );
        let matches = store.matches_of(side, None, 10).await.expect("matches");
        assert!(matches.is_empty(), "no match: {matches:?}");
    }

    // With interest, the same call now works, and creates both.
    store
        .press_interest(topic.id, stranger.id, NOW)
        .await
        .expect("press");
    let matched = store
        .create_match(topic.id, owner.id, stranger.id, NOW + 1)
        .await
        .unwrap_or_else(|e| panic!("match after interest: {e}"));
    assert!(matched.conversation_created);
    assert!(matched.match_created);
}

async fn create_match_with_the_owner_themselves_is_not_interested(store: &Store) {
    let owner = user(store, "narcissus").await;
    let topic = card(store, &owner, "mirror", "", &[]).await;
    let refused = store.create_match(topic.id, owner.id, owner.id, NOW).await;
    assert!(
        matches!(refused, Err(MatchError::NotInterested)),
        "the owner never pressed interested on their own card: got {:?}",
        refused
            .as_ref()
            .map(|m| &m.record)
            .map_err(ToString::to_string)
    );
    let conversations = store
        .conversations_of(owner.id, None, 10)
        .await
        .expect("conversations");
    assert!(conversations.is_empty(), "{conversations:?}");
}

async fn create_match_reports_what_it_created(store: &Store) {
    let owner = user(store, "flag_owner").await;
    let fan = user(store, "flag_fan").await;
    let other_fan = user(store, "flag_other").await;
    let first = card(store, &owner, "first", "", &[]).await;
    let second = card(store, &owner, "second", "", &[]).await;
    for (topic, who) in [(&first, &fan), (&second, &fan), (&first, &other_fan)] {
        store
            .press_interest(topic.id, who.id, NOW)
            .await
            .expect("press");
    }

    let created = store
        .create_match(first.id, owner.id, fan.id, NOW + 1)
        .await
        .unwrap_or_else(|e| panic!("first match: {e}"));
    assert!(
        created.conversation_created,
        "a new pair gets a conversation"
    );
    assert!(created.match_created, "a new match");
    assert!(created.record.id > 0);
    assert_eq!(created.record.card_id, first.id);
    assert_eq!(created.record.owner_id, owner.id);
    assert_eq!(created.record.user_id, fan.id);
    assert_eq!(created.record.created_at, NOW + 1);
    let conversation = created.record.conversation_id;

    let again = store
        .create_match(first.id, owner.id, fan.id, NOW + 2)
        .await
        .unwrap_or_else(|e| panic!("same match again: {e}"));
    assert!(
        !again.conversation_created,
        "the conversation already exists"
    );
    assert!(!again.match_created, "the match already exists");
    assert_eq!(again.record.id, created.record.id);
    assert_eq!(again.record.conversation_id, conversation);
    assert_eq!(again.record.created_at, NOW + 1, "the first match is kept");

    let other_card = store
        .create_match(second.id, owner.id, fan.id, NOW + 3)
        .await
        .unwrap_or_else(|e| panic!("second card: {e}"));
    assert!(
        !other_card.conversation_created,
        "one conversation per pair"
    );
    assert!(other_card.match_created, "a new match for the new card");
    assert_ne!(other_card.record.id, created.record.id);
    assert_eq!(other_card.record.conversation_id, conversation);

    let other_pair = store
        .create_match(first.id, owner.id, other_fan.id, NOW + 4)
        .await
        .unwrap_or_else(|e| panic!("other pair: {e}"));
    assert!(other_pair.conversation_created);
    assert!(other_pair.match_created);
    assert_ne!(other_pair.record.conversation_id, conversation);

    // The reverse direction (the fan's card, the owner interested) finds
    // the same conversation: the pair is unordered.
    let reverse_card = card(store, &fan, "fan's card", "", &[]).await;
    store
        .press_interest(reverse_card.id, owner.id, NOW)
        .await
        .expect("press");
    let reverse = store
        .create_match(reverse_card.id, fan.id, owner.id, NOW + 5)
        .await
        .unwrap_or_else(|e| panic!("reverse: {e}"));
    assert!(!reverse.conversation_created);
    assert!(reverse.match_created);
    assert_eq!(reverse.record.conversation_id, conversation);

    let conversations = store
        .conversations_of(owner.id, None, 10)
        .await
        .expect("conversations");
    assert_eq!(conversations.len(), 2, "{conversations:?}");
}

async fn conversations_and_matches_are_seen_from_both_sides(store: &Store) {
    let owner = user(store, "side_owner").await;
    let fan = user(store, "side_fan").await;
    let other_fan = user(store, "side_other").await;
    let topic = card(store, &owner, "topic", "", &[]).await;
    store
        .press_interest(topic.id, fan.id, NOW)
        .await
        .expect("press");
    store
        .press_interest(topic.id, other_fan.id, NOW)
        .await
        .expect("press");
    let first = store
        .create_match(topic.id, owner.id, fan.id, NOW + 1)
        .await
        .unwrap_or_else(|e| panic!("match: {e}"));
    let second = store
        .create_match(topic.id, owner.id, other_fan.id, NOW + 2)
        .await
        .unwrap_or_else(|e| panic!("match: {e}"));

    let owner_matches = store.matches_of(owner.id, None, 10).await.expect("matches");
    let others: Vec<i64> = owner_matches.iter().map(|m| m.other.id).collect();
    assert_eq!(others, [other_fan.id, fan.id], "newest first");
    assert_eq!(owner_matches[1].match_id, first.record.id);
    assert_eq!(owner_matches[1].card_id, topic.id);
    assert_eq!(
        owner_matches[1].conversation_id,
        first.record.conversation_id
    );
    assert_eq!(owner_matches[1].matched_at, NOW + 1);
    assert_eq!(owner_matches[1].other.handle, "side_fan");

    let fan_matches = store.matches_of(fan.id, None, 10).await.expect("matches");
    assert_eq!(fan_matches.len(), 1, "{fan_matches:?}");
    assert_eq!(fan_matches[0].other.id, owner.id, "the fan sees the owner");
    assert_eq!(fan_matches[0].match_id, first.record.id);

    let paged = store
        .matches_of(owner.id, Some(second.record.id), 10)
        .await
        .expect("matches");
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].match_id, first.record.id);

    let owner_conversations = store
        .conversations_of(owner.id, None, 10)
        .await
        .expect("conversations");
    let others: Vec<i64> = owner_conversations.iter().map(|c| c.other.id).collect();
    assert_eq!(others, [other_fan.id, fan.id], "newest first");
    for c in &owner_conversations {
        assert_eq!(c.last_seq, 0, "no messages yet");
        assert_eq!(c.read_seq, 0);
    }
    let fan_conversations = store
        .conversations_of(fan.id, None, 10)
        .await
        .expect("conversations");
    assert_eq!(fan_conversations.len(), 1, "{fan_conversations:?}");
    assert_eq!(
        fan_conversations[0].conversation_id,
        first.record.conversation_id
    );
    assert_eq!(fan_conversations[0].other.id, owner.id);
    assert_eq!(fan_conversations[0].other.handle, "side_owner");

    let paged = store
        .conversations_of(owner.id, Some(owner_conversations[0].activity_seq), 10)
        .await
        .expect("conversations");
    let ids: Vec<i64> = paged.iter().map(|c| c.conversation_id).collect();
    assert_eq!(ids, [first.record.conversation_id]);
    let limited = store
        .conversations_of(owner.id, None, 1)
        .await
        .expect("conversations");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].conversation_id, second.record.conversation_id);
}

async fn notifications_list_newest_first_per_user(store: &Store) {
    let ada = user(store, "n_ada").await;
    let bob = user(store, "n_bob").await;
    let one = store
        .add_notification(ada.id, "interest_received", r#"{"n":1}"#, NOW)
        .await
        .expect("add");
    let theirs = store
        .add_notification(bob.id, "matched", r#"{"n":2}"#, NOW + 1)
        .await
        .expect("add");
    let two = store
        .add_notification(ada.id, "matched", r#"{"n":3}"#, NOW + 2)
        .await
        .expect("add");
    assert!(
        one.id > 0 && theirs.id > one.id && two.id > theirs.id,
        "ids increase"
    );
    assert_eq!(one.user_id, ada.id);
    assert_eq!(one.kind, "interest_received");
    assert_eq!(one.data, r#"{"n":1}"#);
    assert_eq!(one.created_at, NOW);

    let listed = store
        .notifications(ada.id, false, None, 10)
        .await
        .expect("list");
    let ids: Vec<i64> = listed.iter().map(|n| n.id).collect();
    assert_eq!(ids, [two.id, one.id], "newest first, only ada's");
    assert_eq!(listed[0].kind, "matched");
    assert_eq!(listed[0].data, r#"{"n":3}"#);
    assert_eq!(listed[0].created_at, NOW + 2);

    let page = store
        .notifications(ada.id, false, None, 1)
        .await
        .expect("list");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, two.id);
    let rest = store
        .notifications(ada.id, false, Some(two.id), 10)
        .await
        .expect("list");
    let ids: Vec<i64> = rest.iter().map(|n| n.id).collect();
    assert_eq!(ids, [one.id]);

    let bobs = store
        .notifications(bob.id, false, None, 10)
        .await
        .expect("list");
    let ids: Vec<i64> = bobs.iter().map(|n| n.id).collect();
    assert_eq!(ids, [theirs.id]);
}

async fn the_read_marker_only_moves_forward(store: &Store) {
    let ada = user(store, "r_ada").await;
    let bob = user(store, "r_bob").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let row = store
            .add_notification(ada.id, "matched", "{}", NOW + i)
            .await
            .expect("add");
        ids.push(row.id);
    }
    let bobs = store
        .add_notification(bob.id, "matched", "{}", NOW)
        .await
        .expect("add");
    let unread_ids = |rows: Vec<meshi::store::NotificationRow>| -> Vec<i64> {
        rows.into_iter().map(|n| n.id).collect()
    };

    let unread = store
        .notifications(ada.id, true, None, 10)
        .await
        .expect("list");
    assert_eq!(
        unread_ids(unread),
        [ids[3], ids[2], ids[1], ids[0]],
        "all unread"
    );

    store
        .mark_notifications_read(ada.id, ids[1])
        .await
        .expect("mark");
    let unread = store
        .notifications(ada.id, true, None, 10)
        .await
        .expect("list");
    assert_eq!(
        unread_ids(unread),
        [ids[3], ids[2]],
        "above the marker only"
    );
    let everything = store
        .notifications(ada.id, false, None, 10)
        .await
        .expect("list");
    assert_eq!(everything.len(), 4, "the full list keeps the read ones");

    store
        .mark_notifications_read(ada.id, ids[0])
        .await
        .expect("mark lower");
    let unread = store
        .notifications(ada.id, true, None, 10)
        .await
        .expect("list");
    assert_eq!(
        unread_ids(unread),
        [ids[3], ids[2]],
        "the marker never moves back"
    );

    store
        .mark_notifications_read(ada.id, ids[2])
        .await
        .expect("mark");
    let unread = store
        .notifications(ada.id, true, None, 10)
        .await
        .expect("list");
    assert_eq!(unread_ids(unread), [ids[3]]);
    let paged = store
        .notifications(ada.id, true, Some(ids[3]), 10)
        .await
        .expect("list");
    assert!(
        paged.is_empty(),
        "nothing unread below the cursor: {paged:?}"
    );

    let bob_unread = store
        .notifications(bob.id, true, None, 10)
        .await
        .expect("list");
    assert_eq!(unread_ids(bob_unread), [bobs.id], "bob's marker is his own");
}

async fn racing_presses_count_once(store: &Store) {
    let owner = user(store, "race_owner").await;
    let fan = user(store, "race_fan").await;
    let topic = card(store, &owner, "topic", "", &[]).await;
    let (a, b) = tokio::join!(
        store.press_interest(topic.id, fan.id, NOW),
        store.press_interest(topic.id, fan.id, NOW),
    );
    let news = [a.expect("press"), b.expect("press")];
    assert_eq!(
        news.iter().filter(|new| **new).count(),
        1,
        "exactly one of two racing presses is new: {news:?}"
    );
    let listed = store
        .interests(topic.id, None, 10)
        .await
        .expect("interests");
    assert_eq!(listed.len(), 1, "{listed:?}");
}

async fn racing_matches_of_one_pair_share_one_conversation(store: &Store) {
    let owner = user(store, "rm_owner").await;
    let fan = user(store, "rm_fan").await;
    let first = card(store, &owner, "first", "", &[]).await;
    let second = card(store, &owner, "second", "", &[]).await;
    store
        .press_interest(first.id, fan.id, NOW)
        .await
        .expect("press");
    store
        .press_interest(second.id, fan.id, NOW)
        .await
        .expect("press");
    let (a, b) = tokio::join!(
        store.create_match(first.id, owner.id, fan.id, NOW + 1),
        store.create_match(second.id, owner.id, fan.id, NOW + 1),
    );
    let a = a.unwrap_or_else(|e| panic!("first racing match: {e}"));
    let b = b.unwrap_or_else(|e| panic!("second racing match: {e}"));
    assert_eq!(
        a.record.conversation_id, b.record.conversation_id,
        "one conversation per pair, even when matches race"
    );
    assert!(a.match_created && b.match_created, "two cards, two matches");
    assert_eq!(
        u8::from(a.conversation_created) + u8::from(b.conversation_created),
        1,
        "exactly one of the racing matches created the conversation"
    );
    let conversations = store
        .conversations_of(fan.id, None, 10)
        .await
        .expect("conversations");
    assert_eq!(conversations.len(), 1, "{conversations:?}");
}
