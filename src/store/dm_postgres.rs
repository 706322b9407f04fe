//! Storing a batch of direct messages on Postgres in one statement.
//!
//! The general path in `messages.rs` takes two or three round trips per
//! message inside a transaction; under load that spends far more CPU in the
//! driver and in Postgres than the rows themselves cost. Here the whole
//! batch travels as arrays and one statement does the rest: it finds
//! messages sent before (same sender and `client_msg_id`), keeps those whose
//! sender is in the conversation, bumps each conversation's `last_seq` once
//! by its number of new messages, and inserts them with consecutive seqs in
//! batch order. One statement is one transaction, so there is no BEGIN or
//! COMMIT round trip either. The same UPDATE moves each conversation to the
//! top of its pair's lists (a fresh `activity_seq`, see
//! `Store::conversations_of`), so ordering costs no round trip.
//!
//! Seqs stay gap-free with several writers (or several nodes): the UPDATE
//! locks each conversation row, and under READ COMMITTED a writer that
//! waited on the lock re-reads `last_seq` as committed by the other.

use std::collections::HashSet;

use sqlx::{PgConnection, PgPool};

use std::sync::LazyLock;

use super::dm_rows::{refusal, takes_messages, DmOutcome, DmRow, NewDm, Pair, DM_SELECT, REFUSAL};
use super::StoreError;

static APPEND: LazyLock<String> =
    LazyLock::new(|| APPEND_TEMPLATE.replace("{open}", &takes_messages("c")));

const APPEND_TEMPLATE: &str = "\
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[])
        WITH ORDINALITY AS i (conversation_id, sender_id, message_id, text, client_msg_id, sent_at, ord)
),
earlier AS (
    SELECT i.ord, m.seq
    FROM input i
    JOIN conversation_messages m ON m.conversation_id = i.conversation_id
        AND m.sender_id = i.sender_id AND m.client_msg_id = i.client_msg_id
),
fresh AS (
    SELECT i.*, c.user_low, c.user_high,
        row_number() OVER (PARTITION BY i.conversation_id ORDER BY i.ord) AS nth
    FROM input i
    JOIN conversations c ON c.id = i.conversation_id
        AND (c.user_low = i.sender_id OR c.user_high = i.sender_id)
        AND {open}
    WHERE i.ord NOT IN (SELECT ord FROM earlier)
),
counted AS (
    SELECT conversation_id, count(*) AS n,
        max(nth) FILTER (WHERE sender_id = user_low) AS low_nth,
        max(nth) FILTER (WHERE sender_id = user_high) AS high_nth,
        max(sent_at) AS last_sent
    FROM fresh
    GROUP BY conversation_id
),
bumped AS (
    UPDATE conversations c SET
        last_seq = c.last_seq + k.n,
        low_read_seq = COALESCE(c.last_seq + k.low_nth, c.low_read_seq),
        high_read_seq = COALESCE(c.last_seq + k.high_nth, c.high_read_seq),
        activity_seq = nextval('conversation_activity'),
        last_activity = GREATEST(c.last_activity, k.last_sent)
    FROM counted k
    WHERE c.id = k.conversation_id
    RETURNING c.id, c.last_seq - k.n AS base
),
stored AS (
    INSERT INTO conversation_messages
        (conversation_id, seq, message_id, sender_id, text, client_msg_id, sent_at)
    SELECT f.conversation_id, b.base + f.nth, f.message_id, f.sender_id, f.text,
        f.client_msg_id, f.sent_at
    FROM fresh f JOIN bumped b ON b.id = f.conversation_id
)
SELECT f.ord, b.base + f.nth AS seq, f.user_low, f.user_high, false AS earlier
FROM fresh f JOIN bumped b ON b.id = f.conversation_id
UNION ALL
SELECT e.ord, e.seq, 0, 0, true FROM earlier e";

/// Stores the batch in order, with the same outcomes as the general path:
/// sending reads everything before, so each sender's read marker moves to
/// their last new message.
pub(super) async fn append_dms(
    pool: &PgPool,
    batch: &[NewDm],
) -> Result<Vec<DmOutcome>, StoreError> {
    let runs = runs_without_repeats(batch);
    if let [only] = runs.as_slice() {
        let mut conn = pool.acquire().await?;
        return append_run(&mut conn, only).await;
    }
    // A batch that repeats a `client_msg_id` is stored run by run, so the
    // repeat finds the first one stored; one transaction keeps the batch
    // all-or-nothing as the single statement is.
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for run in runs {
        outcomes.extend(append_run(&mut tx, run).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Splits the batch where a message repeats an earlier one's sender,
/// conversation and `client_msg_id`: within one statement the repeat would
/// not see the first and would break the uniqueness rule instead.
fn runs_without_repeats(batch: &[NewDm]) -> Vec<&[NewDm]> {
    let mut runs = Vec::new();
    let mut seen = HashSet::new();
    let mut start = 0;
    for (index, dm) in batch.iter().enumerate() {
        let Some(client_msg_id) = &dm.client_msg_id else {
            continue;
        };
        if !seen.insert((dm.conversation_id, dm.sender_id, client_msg_id.as_str())) {
            runs.push(&batch[start..index]);
            start = index;
            seen.clear();
            seen.insert((dm.conversation_id, dm.sender_id, client_msg_id.as_str()));
        }
    }
    runs.push(&batch[start..]);
    runs
}

#[derive(sqlx::FromRow)]
struct Appended {
    ord: i64,
    seq: i64,
    user_low: i64,
    user_high: i64,
    earlier: bool,
}

async fn append_run(conn: &mut PgConnection, run: &[NewDm]) -> Result<Vec<DmOutcome>, StoreError> {
    let column = |get: fn(&NewDm) -> i64| run.iter().map(get).collect::<Vec<_>>();
    let rows: Vec<Appended> = sqlx::query_as(APPEND.as_str())
        .bind(column(|dm| dm.conversation_id))
        .bind(column(|dm| dm.sender_id))
        .bind(
            run.iter()
                .map(|dm| dm.message_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(run.iter().map(|dm| dm.text.as_str()).collect::<Vec<_>>())
        .bind(
            run.iter()
                .map(|dm| dm.client_msg_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(column(|dm| dm.sent_at))
        .fetch_all(&mut *conn)
        .await?;

    let mut outcomes: Vec<Option<DmOutcome>> = vec![None; run.len()];
    for row in rows {
        let index = (row.ord - 1) as usize;
        let dm = &run[index];
        outcomes[index] = Some(if row.earlier {
            let first = sqlx::query_as::<_, DmRow>(&format!(
                "{DM_SELECT} WHERE m.conversation_id = $1 AND m.seq = $2"
            ))
            .bind(dm.conversation_id)
            .bind(row.seq)
            .fetch_one(&mut *conn)
            .await?;
            DmOutcome::Duplicate(first)
        } else {
            let pair = Pair {
                user_low: row.user_low,
                user_high: row.user_high,
            };
            DmOutcome::Stored {
                message: dm.stored_as(row.seq),
                other_id: pair.other(dm.sender_id),
            }
        });
    }
    // What the statement left out was refused: say why.
    let mut resolved = Vec::with_capacity(run.len());
    for (dm, outcome) in run.iter().zip(outcomes) {
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                let found = sqlx::query_as(REFUSAL)
                    .bind(dm.conversation_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                refusal(dm.sender_id, found)
            }
        };
        resolved.push(outcome);
    }
    Ok(resolved)
}
