//! Delivery checks, one [`StreamCheck`] per recipient socket and stream
//! (a room or a conversation).
//!
//! `seq` is strictly increasing per stream and every member gets every
//! message, so a recipient must see `last + 1` each time. A jump leaves the
//! skipped seqs as missing; one that arrives later was out of order, one
//! that never does was lost. A seq seen twice, or a `message_id` among the
//! last [`RECENT_IDS`] seen again, is a duplicate. Messages lost at the
//! very end leave no gap, so the final seq the server handed out is
//! compared with the last one received when the stream is finished.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};

/// How many recent message ids each stream remembers for the duplicate
/// check: enough to catch a redelivery, small enough for thousands of
/// sockets.
pub const RECENT_IDS: usize = 16;
/// Gaps wider than this are counted as lost at once rather than tracked
/// seq by seq, which bounds memory if a stream jumps far ahead.
const MAX_TRACKED_GAP: u64 = 100_000;

/// Sums over every stream of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTotals {
    /// (recipient, stream) pairs checked.
    pub streams: u64,
    pub messages: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl CheckTotals {
    pub fn add(&mut self, other: &CheckTotals) {
        self.streams += other.streams;
        self.messages += other.messages;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
    }

    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0
    }
}

/// How one message fits its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    InOrder,
    /// Later than expected; this many seqs are now missing.
    Gap(u64),
    /// A missing seq turned up after later ones.
    Late,
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct StreamCheck {
    last: u64,
    missing: BTreeSet<u64>,
    lost_untracked: u64,
    recent: [u64; RECENT_IDS],
    recent_at: usize,
    messages: u64,
    duplicated: u64,
    out_of_order: u64,
}

impl StreamCheck {
    /// A stream whose next message should be `after_seq + 1`.
    pub fn new(after_seq: u64) -> StreamCheck {
        StreamCheck {
            last: after_seq,
            missing: BTreeSet::new(),
            lost_untracked: 0,
            recent: [0; RECENT_IDS],
            recent_at: 0,
            messages: 0,
            duplicated: 0,
            out_of_order: 0,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last
    }

    pub fn observe(&mut self, seq: u64, message_id: &str) -> Seen {
        self.messages += 1;
        let id = id_hash(message_id);
        if self.recent.contains(&id) {
            self.duplicated += 1;
            return Seen::Duplicate;
        }
        self.recent[self.recent_at] = id;
        self.recent_at = (self.recent_at + 1) % RECENT_IDS;
        let expected = self.last + 1;
        if seq == expected {
            self.last = seq;
            return Seen::InOrder;
        }
        if seq > expected {
            let gap = seq - expected;
            if gap > MAX_TRACKED_GAP {
                self.lost_untracked += gap;
            } else {
                self.missing.extend(expected..seq);
            }
            self.last = seq;
            return Seen::Gap(gap);
        }
        if self.missing.remove(&seq) {
            self.out_of_order += 1;
            Seen::Late
        } else {
            self.duplicated += 1;
            Seen::Duplicate
        }
    }

    /// The totals of this stream. `final_seq` is the last seq the server
    /// assigned, when the recipient should have received up to it.
    pub fn finish(&self, final_seq: Option<u64>) -> CheckTotals {
        let tail = final_seq.map_or(0, |last| last.saturating_sub(self.last));
        CheckTotals {
            streams: 1,
            messages: self.messages,
            lost: self.missing.len() as u64 + self.lost_untracked + tail,
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
        }
    }
}

fn id_hash(message_id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    message_id.hash(&mut hasher);
    // 0 fills the empty ring; keep it out of the id space.
    hasher.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(check: &mut StreamCheck, seqs: &[u64]) -> Vec<Seen> {
        seqs.iter()
            .map(|&seq| check.observe(seq, &format!("m{seq}")))
            .collect()
    }

    #[test]
    fn an_orderly_stream_is_clean() {
        let mut check = StreamCheck::new(4);
        assert!(feed(&mut check, &[5, 6, 7])
            .iter()
            .all(|s| *s == Seen::InOrder));
        let totals = check.finish(Some(7));
        assert!(totals.clean());
        assert_eq!(totals.messages, 3);
    }

    #[test]
    fn gaps_are_lost_unless_filled_later() {
        let mut check = StreamCheck::new(0);
        let seen = feed(&mut check, &[1, 4, 2, 5]);
        assert_eq!(
            seen,
            vec![Seen::InOrder, Seen::Gap(2), Seen::Late, Seen::InOrder]
        );
        let totals = check.finish(Some(5));
        assert_eq!(totals.lost, 1, "seq 3 never came");
        assert_eq!(totals.out_of_order, 1);
    }

    #[test]
    fn a_missing_tail_is_lost() {
        let mut check = StreamCheck::new(0);
        feed(&mut check, &[1, 2]);
        assert_eq!(check.finish(Some(5)).lost, 3);
        assert_eq!(check.finish(None).lost, 0);
    }

    #[test]
    fn repeats_by_seq_or_by_id_are_duplicates() {
        let mut check = StreamCheck::new(0);
        feed(&mut check, &[1, 2]);
        assert_eq!(check.observe(2, "other"), Seen::Duplicate);
        assert_eq!(check.observe(3, "m1"), Seen::Duplicate);
        let totals = check.finish(Some(2));
        assert_eq!(totals.duplicated, 2);
        assert_eq!(totals.lost, 0);
    }
}
