//! A connection's bounded outbound queue and its kill switch.
//!
//! Everyone who delivers to a socket holds an [`Outbox`]. Delivery never
//! waits: a full queue means the client is not keeping up, so the socket is
//! closed with 4009 and nobody else slows down.
//!
//! The queue is a plain deque behind a mutex that takes no memory while
//! empty, rather than a channel that keeps a block of slots per socket:
//! most sockets are idle most of the time, and there are many of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use dashmap::DashMap;
use meshi_protocol::close;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::frame::Frame;
use super::ConnId;

/// What the socket writer is asked to do, in order.
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    /// Flush what is queued before this, then close with the code.
    Close(u16, &'static str),
}

pub struct Outbox {
    shared: Arc<Shared>,
}

/// The writer's end of an [`Outbox`].
pub struct Inbox {
    shared: Arc<Shared>,
}

/// Nothing is queued right now.
#[derive(Debug, PartialEq, Eq)]
pub struct Empty;

struct Shared {
    queue: Mutex<VecDeque<Outbound>>,
    capacity: usize,
    /// Woken on every push, and when the last outbox goes.
    ready: Notify,
    /// Outboxes alive; none left means nothing more will come.
    outboxes: AtomicUsize,
    /// The queue's length, kept beside it so the metrics scrape reads it
    /// without the queue's lock.
    queued: AtomicUsize,
    kill: Arc<Kill>,
}

/// A queue that grew past this while busy is given back once it empties.
const KEEP_QUEUE: usize = 16;

/// Why and whether a socket must close at once, dropping its queue.
#[derive(Default)]
pub struct Kill {
    reason: OnceLock<(u16, &'static str)>,
    token: CancellationToken,
}

impl Kill {
    pub fn reason(&self) -> Option<(u16, &'static str)> {
        self.reason.get().copied()
    }

    pub async fn killed(&self) {
        self.token.cancelled().await
    }

    pub fn is_killed(&self) -> bool {
        self.token.is_cancelled()
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        // Pushing and popping cannot panic halfway; the deque stays whole.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Outbox {
    pub fn new(capacity: usize) -> (Outbox, Inbox, Arc<Kill>) {
        let kill = Arc::new(Kill::default());
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            ready: Notify::new(),
            outboxes: AtomicUsize::new(1),
            queued: AtomicUsize::new(0),
            kill: kill.clone(),
        });
        (
            Outbox {
                shared: shared.clone(),
            },
            Inbox { shared },
            kill,
        )
    }

    /// Queues a frame; a full queue closes the socket as a slow consumer.
    pub fn push(&self, frame: Frame) {
        if !self.enqueue(Outbound::Frame(frame)) {
            if !self.shared.kill.is_killed() {
                metrics::counter!("meshi_slow_consumer_closes_total").increment(1);
            }
            self.kill(close::SLOW_CONSUMER, "slow consumer");
        }
    }

    /// Closes after what is already queued has been written.
    pub fn close_after_flush(&self, code: u16, reason: &'static str) {
        if !self.enqueue(Outbound::Close(code, reason)) {
            self.kill(code, reason);
        }
    }

    /// Closes at once, dropping whatever is still queued.
    pub fn kill(&self, code: u16, reason: &'static str) {
        let _ = self.shared.kill.reason.set((code, reason));
        self.shared.kill.token.cancel();
    }

    /// False when the queue is full.
    fn enqueue(&self, outbound: Outbound) -> bool {
        {
            let mut queue = self.shared.queue();
            if queue.len() >= self.shared.capacity {
                return false;
            }
            queue.push_back(outbound);
            self.shared.queued.store(queue.len(), Ordering::Relaxed);
        }
        self.shared.ready.notify_one();
        true
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.outboxes.fetch_add(1, Ordering::Relaxed);
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.shared.outboxes.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

impl Inbox {
    /// The next queued item; `None` once it is empty and every outbox is
    /// gone.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Ok(next) = self.try_recv() {
                return Some(next);
            }
            if self.shared.outboxes.load(Ordering::Acquire) == 0 {
                return self.try_recv().ok();
            }
            // A push between the check and here left a permit, so this
            // does not sleep through it.
            self.shared.ready.notified().await;
        }
    }

    pub fn try_recv(&mut self) -> Result<Outbound, Empty> {
        let mut queue = self.shared.queue();
        let next = queue.pop_front().ok_or(Empty)?;
        self.shared.queued.store(queue.len(), Ordering::Relaxed);
        if queue.is_empty() && queue.capacity() > KEEP_QUEUE {
            *queue = VecDeque::new();
        }
        Ok(next)
    }
}

/// Every open socket's queue, for the metrics scrape: it reads their
/// lengths and takes none of their locks.
#[derive(Default)]
pub struct Depths {
    queues: DashMap<ConnId, Arc<Shared>>,
}

/// A socket's queue counted in [`Depths`] while this lives.
pub struct Tracked {
    depths: Arc<Depths>,
    conn: ConnId,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.depths.queues.remove(&self.conn);
    }
}

/// Frames queued on this node: in all, and in the fullest queue.
pub struct Sample {
    pub queued: usize,
    pub deepest: usize,
}

impl Depths {
    /// Counts the socket's queue until the returned guard drops, however
    /// the socket's task ends.
    pub fn track(self: &Arc<Self>, conn: ConnId, outbox: &Outbox) -> Tracked {
        self.queues.insert(conn, outbox.shared.clone());
        Tracked {
            depths: self.clone(),
            conn,
        }
    }

    pub fn sample(&self) -> Sample {
        self.queues.iter().fold(
            Sample {
                queued: 0,
                deepest: 0,
            },
            |sample, queue| {
                let depth = queue.queued.load(Ordering::Relaxed);
                Sample {
                    queued: sample.queued + depth,
                    deepest: sample.deepest.max(depth),
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_come_out_in_order_and_a_full_queue_kills() {
        let (outbox, mut inbox, kill) = Outbox::new(2);
        outbox.push(Frame::from("a"));
        outbox.close_after_flush(1000, "bye");
        assert!(matches!(inbox.recv().await, Some(Outbound::Frame(f)) if f == "a"));
        assert!(matches!(
            inbox.recv().await,
            Some(Outbound::Close(1000, "bye"))
        ));
        assert_eq!(inbox.try_recv().unwrap_err(), Empty);

        outbox.push(Frame::from("1"));
        outbox.push(Frame::from("2"));
        assert!(!kill.is_killed());
        outbox.push(Frame::from("3"));
        assert_eq!(kill.reason(), Some((close::SLOW_CONSUMER, "slow consumer")));
    }

    #[tokio::test]
    async fn the_writer_wakes_for_a_push_and_ends_when_the_outboxes_go() {
        let (outbox, mut inbox, _) = Outbox::new(8);
        let second = outbox.clone();
        let pusher = tokio::spawn(async move {
            tokio::task::yield_now().await;
            second.push(Frame::from("late"));
        });
        assert!(matches!(inbox.recv().await, Some(Outbound::Frame(f)) if f == "late"));
        pusher.await.unwrap();
        drop(outbox);
        assert!(inbox.recv().await.is_none());
    }
}
