//! The store's contract for direct messages, run on both backends: storing
//! a batch gives each message the next gap-free seq of its conversation in
//! batch order, answers a repeated `client_msg_id` with the first message,
//! refuses outsiders and unknown conversations without storing anything,
//! and moves each sender's read marker to their own last message. Postgres
//! stores a batch in one statement and SQLite message by message, so these
//! pin the two paths to one behaviour.

use crate::common::store::{user, NOW};

use crate::store_contract;
use meshi::store::{DmOutcome, DmRow, NewDm, Store, UserRow};

store_contract!(
    a_batch_takes_consecutive_seqs_per_conversation_in_order,
    a_repeated_client_msg_id_answers_with_the_first_message,
    a_repeat_inside_one_batch_is_a_duplicate_of_the_first,
    outsiders_and_unknown_conversations_store_nothing,
    sending_moves_only_the_senders_read_marker,
    racing_batches_on_one_conversation_leave_no_gap,
);

/// Two matched users and their conversation's id.
async fn pair(store: &Store, tag: &str) -> (UserRow, UserRow, i64) {
    let owner = user(store, &format!("{tag}_owner")).await;
    let fan = user(store, &format!("{tag}_fan")).await;
    let card = store
        .create_card(owner.id, "topic", "", &[], NOW)
        .await
        .expect("card");
    store
        .press_interest(card.id, fan.id, NOW)
        .await
        .expect("press");
    let matched = store
        .create_match(card.id, owner.id, fan.id, NOW)
        .await
        .unwrap_or_else(|e| panic!("match: {e}"));
    (owner, fan, matched.record.conversation_id)
}

fn dm(conversation_id: i64, sender: &UserRow, text: &str, client_msg_id: Option<&str>) -> NewDm {
    NewDm {
        conversation_id,
        sender_id: sender.id,
        sender_handle: sender.handle.clone(),
        sender_display_name: sender.display_name.clone(),
        text: text.to_owned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        message_id: format!("m-{}", uuid_like()),
        sent_at: NOW,
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn stored(outcome: &DmOutcome) -> (&DmRow, i64) {
    match outcome {
        DmOutcome::Stored { message, other_id } => (message, *other_id),
        other => panic!("expected stored, got {other:?}"),
    }
}

async fn texts(store: &Store, conversation_id: i64) -> Vec<(i64, String)> {
    store
        .dm_history(conversation_id, Some(0), None, 100)
        .await
        .expect("history")
        .into_iter()
        .map(|row| (row.seq, row.text))
        .collect()
}

async fn a_batch_takes_consecutive_seqs_per_conversation_in_order(store: &Store) {
    let (ada, bob, first) = pair(store, "order1").await;
    let (cy, dee, second) = pair(store, "order2").await;
    let batch = [
        dm(first, &ada, "a1", None),
        dm(second, &cy, "c1", Some("c-1")),
        dm(first, &bob, "b1", Some("b-1")),
        dm(second, &dee, "d1", None),
        dm(first, &ada, "a2", None),
    ];
    let outcomes = store.append_dms(&batch).await.expect("append");
    assert_eq!(outcomes.len(), batch.len());
    let seqs: Vec<i64> = outcomes.iter().map(|o| stored(o).0.seq).collect();
    assert_eq!(seqs, [1, 1, 2, 2, 3], "per conversation, in batch order");

    let (row, other) = stored(&outcomes[2]);
    assert_eq!(other, ada.id, "the other side of bob's message");
    assert_eq!(row.sender_id, bob.id);
    assert_eq!(row.sender_handle, bob.handle);
    assert_eq!(row.client_msg_id.as_deref(), Some("b-1"));
    assert_eq!(row.message_id, batch[2].message_id);
    assert_eq!(stored(&outcomes[1]).1, dee.id);

    assert_eq!(
        texts(store, first).await,
        [(1, "a1".into()), (2, "b1".into()), (3, "a2".into())]
    );
    assert_eq!(
        texts(store, second).await,
        [(1, "c1".into()), (2, "d1".into())]
    );

    let next = store
        .append_dms(&[dm(first, &bob, "b2", None)])
        .await
        .expect("append");
    assert_eq!(stored(&next[0]).0.seq, 4, "the next batch carries on");
}

async fn a_repeated_client_msg_id_answers_with_the_first_message(store: &Store) {
    let (ada, bob, conversation) = pair(store, "again").await;
    let first = store
        .append_dms(&[dm(conversation, &ada, "hello", Some("k1"))])
        .await
        .expect("append");
    let first = stored(&first[0]).0.clone();

    let outcomes = store
        .append_dms(&[
            dm(conversation, &ada, "hello (retry)", Some("k1")),
            // The same id from the other sender is a message of its own.
            dm(conversation, &bob, "hi", Some("k1")),
        ])
        .await
        .expect("append");
    match &outcomes[0] {
        DmOutcome::Duplicate(row) => {
            assert_eq!(row.seq, first.seq);
            assert_eq!(row.message_id, first.message_id);
            assert_eq!(row.text, "hello", "the first text, not the retry's");
            assert_eq!(row.sender_handle, ada.handle);
            assert_eq!(row.client_msg_id.as_deref(), Some("k1"));
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(stored(&outcomes[1]).0.seq, 2, "the retry took no seq");
    assert_eq!(
        texts(store, conversation).await,
        [(1, "hello".into()), (2, "hi".into())]
    );
}

async fn a_repeat_inside_one_batch_is_a_duplicate_of_the_first(store: &Store) {
    let (ada, _bob, conversation) = pair(store, "inbatch").await;
    let outcomes = store
        .append_dms(&[
            dm(conversation, &ada, "one", Some("x")),
            dm(conversation, &ada, "two", None),
            dm(conversation, &ada, "one again", Some("x")),
            dm(conversation, &ada, "three", None),
        ])
        .await
        .expect("append");
    assert_eq!(stored(&outcomes[0]).0.seq, 1);
    assert_eq!(stored(&outcomes[1]).0.seq, 2);
    match &outcomes[2] {
        DmOutcome::Duplicate(row) => assert_eq!((row.seq, row.text.as_str()), (1, "one")),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(stored(&outcomes[3]).0.seq, 3, "no gap after the repeat");
    assert_eq!(
        texts(store, conversation).await,
        [(1, "one".into()), (2, "two".into()), (3, "three".into())]
    );
}

async fn outsiders_and_unknown_conversations_store_nothing(store: &Store) {
    let (ada, _bob, conversation) = pair(store, "outside").await;
    let stranger = user(store, "outside_stranger").await;
    let outcomes = store
        .append_dms(&[
            dm(conversation, &stranger, "let me in", None),
            dm(conversation + 1000, &ada, "nowhere", None),
            dm(conversation, &ada, "real", None),
        ])
        .await
        .expect("append");
    assert!(
        matches!(outcomes[0], DmOutcome::NotParticipant),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(outcomes[1], DmOutcome::NoConversation),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(stored(&outcomes[2]).0.seq, 1, "refusals took no seq");
    assert_eq!(texts(store, conversation).await, [(1, "real".into())]);
}

async fn sending_moves_only_the_senders_read_marker(store: &Store) {
    let (ada, bob, conversation) = pair(store, "marker").await;
    store
        .append_dms(&[
            dm(conversation, &ada, "a1", None),
            dm(conversation, &bob, "b1", None),
            dm(conversation, &ada, "a2", None),
        ])
        .await
        .expect("append");
    let read_seq = |user: i64| async move {
        let views = store
            .conversations_of(user, None, 10)
            .await
            .expect("conversations");
        let view = views
            .iter()
            .find(|v| v.conversation_id == conversation)
            .expect("the conversation");
        (view.last_seq, view.read_seq)
    };
    assert_eq!(read_seq(ada.id).await, (3, 3), "ada read up to her a2");
    assert_eq!(read_seq(bob.id).await, (3, 2), "bob read up to his b1");

    store
        .append_dms(&[dm(conversation, &bob, "b2", None)])
        .await
        .expect("append");
    assert_eq!(
        read_seq(ada.id).await,
        (4, 3),
        "bob's send leaves ada's marker"
    );
    assert_eq!(read_seq(bob.id).await, (4, 4));
}

async fn racing_batches_on_one_conversation_leave_no_gap(store: &Store) {
    let (ada, bob, conversation) = pair(store, "race").await;
    let mut writers = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        let sender = if writer % 2 == 0 {
            ada.clone()
        } else {
            bob.clone()
        };
        writers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for round in 0..10 {
                let batch: Vec<NewDm> = (0..3)
                    .map(|i| {
                        dm(
                            conversation,
                            &sender,
                            &format!("w{writer}r{round}i{i}"),
                            None,
                        )
                    })
                    .collect();
                for outcome in store.append_dms(&batch).await.expect("append") {
                    seqs.push(stored(&outcome).0.seq);
                }
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for writer in writers {
        let seqs = writer.await.expect("writer");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one writer's seqs rise: {seqs:?}"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=120).collect::<Vec<i64>>(), "gap-free, none twice");
    let last = store
        .last_dm(conversation)
        .await
        .expect("last")
        .expect("a message");
    assert_eq!(last.seq, 120);
}
