//! Holds a joining socket's room deliveries until its join reply is queued.
//!
//! In a cluster, a room's events reach a node through Redis in the order
//! Redis sequenced them, each with its position in the room. A socket that
//! joins listens before it asks Redis for the room's state, so nothing can
//! slip between the two; but events up to the position the join returned
//! are already in the reply. The gate keeps what arrives meanwhile, then,
//! once the reply is queued, passes on only what came after it.

use std::sync::Mutex;

use super::frame::Frame;
use super::outbox::Outbox;

/// Events a gate keeps while the join is on its way; a room this busy
/// during one join overwhelms the socket anyway.
const HOLD_MAX: usize = 1024;

#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
}

enum State {
    Holding(Vec<(u64, Frame)>),
    Open { after: u64 },
}

impl Default for State {
    fn default() -> Self {
        State::Holding(Vec::new())
    }
}

impl Gate {
    /// Passes a room event at `position` (or an unpositioned one, such as
    /// typing, which needs no order) to `outbox`, or keeps it for later.
    pub fn pass(&self, position: Option<u64>, frame: &Frame, outbox: &Outbox) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (&mut *state, position) {
            (_, None) => outbox.push(frame.clone()),
            (State::Holding(held), Some(position)) => {
                if held.len() < HOLD_MAX {
                    held.push((position, frame.clone()));
                } else {
                    outbox.kill(meshi_protocol::close::SLOW_CONSUMER, "slow consumer");
                }
            }
            (State::Open { after }, Some(position)) => {
                if position > *after {
                    outbox.push(frame.clone());
                }
            }
        }
    }

    /// Runs `queue_reply` (which queues the join reply), then releases what
    /// was held past `after`; from now on only events past it pass.
    pub fn open(&self, after: u64, outbox: &Outbox, queue_reply: impl FnOnce()) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        queue_reply();
        if let State::Holding(held) = std::mem::replace(&mut *state, State::Open { after }) {
            for (position, frame) in held {
                if position > after {
                    outbox.push(frame);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outbox::Outbound;

    #[test]
    fn held_events_past_the_join_follow_the_reply_in_order() {
        let (outbox, mut rx, _) = Outbox::new(16);
        let gate = Gate::default();
        gate.pass(Some(4), &Frame::from("four"), &outbox);
        gate.pass(Some(5), &Frame::from("five"), &outbox);
        gate.pass(Some(6), &Frame::from("six"), &outbox);
        gate.open(5, &outbox, || outbox.push(Frame::from("reply")));
        gate.pass(Some(5), &Frame::from("five again"), &outbox);
        gate.pass(Some(7), &Frame::from("seven"), &outbox);
        let mut seen = Vec::new();
        while let Ok(Outbound::Frame(frame)) = rx.try_recv() {
            seen.push(frame.to_string());
        }
        assert_eq!(seen, ["reply", "six", "seven"]);
    }
}
