//! A connection's bounded outbound queue and its kill switch.
//!
//! Everyone who delivers to a socket holds an [`Outbox`]. Delivery never
//! waits: a full queue means the client is not keeping up, so the socket is
//! closed with 4009 and nobody else slows down.

use std::sync::{Arc, OnceLock};

use meshi_protocol::close;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A serialized frame; cloning shares the bytes.
pub type Frame = axum::extract::ws::Utf8Bytes;

/// What the socket writer is asked to do, in order.
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    /// Flush what is queued before this, then close with the code.
    Close(u16, &'static str),
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
    kill: Arc<Kill>,
}

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

impl Outbox {
    pub fn new(capacity: usize) -> (Outbox, mpsc::Receiver<Outbound>, Arc<Kill>) {
        let (tx, rx) = mpsc::channel(capacity);
        let kill = Arc::new(Kill::default());
        (
            Outbox {
                tx,
                kill: kill.clone(),
            },
            rx,
            kill,
        )
    }

    /// Queues a frame; a full queue closes the socket as a slow consumer.
    pub fn push(&self, frame: Frame) {
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.kill.is_killed() {
                    metrics::counter!("meshi_slow_consumer_closes_total").increment(1);
                }
                self.kill(close::SLOW_CONSUMER, "slow consumer");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Closes after what is already queued has been written.
    pub fn close_after_flush(&self, code: u16, reason: &'static str) {
        if self.tx.try_send(Outbound::Close(code, reason)).is_err() {
            self.kill(code, reason);
        }
    }

    /// Closes at once, dropping whatever is still queued.
    pub fn kill(&self, code: u16, reason: &'static str) {
        let _ = self.kill.reason.set((code, reason));
        self.kill.token.cancel();
    }

    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
