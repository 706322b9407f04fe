//! Direct messages of matched pairs: stored before they are acknowledged,
//! then pushed to every socket of both participants.
//!
//! # Group commit
//! Senders do not write to the database themselves. Each `send` queues the
//! message for a writer task and waits. A writer takes everything queued at
//! that moment (up to [`MAX_BATCH`]) and stores it in one transaction, so
//! under load one commit carries many messages instead of one round trip
//! each, while a lone message is written at once. Conversations are spread
//! over writers by id, so a conversation always has the same writer: its
//! messages are stored, pushed and acknowledged in `seq` order.
//!
//! # In a cluster
//! Two nodes may store one conversation's messages back to back, so their
//! pushes go through Redis, which puts them back in `seq` order for every
//! node (see `cluster::Cluster::push_dm`). Each writer hands its pushes to
//! one relay task, keeping its own order, so that storing never waits on
//! Redis.

use std::time::Duration;

use meshi_protocol::{DmMessage, ServerFrame, UserSummary};
use tokio::sync::{mpsc, oneshot};

use crate::clock::rfc3339;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::hub::subscribers::Topic;
use crate::hub::{encode, Hub};
use crate::store::{DmOutcome, DmRow, NewDm, Store, StoreError};

/// Most messages one transaction carries.
const MAX_BATCH: usize = 256;
/// Messages waiting per writer before senders wait for room.
const QUEUE_PER_WRITER: usize = 4096;
/// Pushes waiting per relay in a cluster.
const RELAY_QUEUE: usize = 8192;
/// How long a relay waits on Redis for one push before it delivers the
/// message on this node only.
const PUSH_WITHIN: Duration = Duration::from_secs(2);

/// Queues the sender's `ok` for a stored (or earlier) message. The writer
/// calls it right after queueing the sender's own copy of the message, so
/// on one node the copy and the `ok` usually leave in one socket write
/// instead of two.
pub type Acknowledge = Box<dyn FnOnce(&DmRow) + Send>;

struct Pending {
    message: NewDm,
    sender: Waiting,
}

/// The socket that sent a pending message, waiting to hear of it.
struct Waiting {
    acknowledge: Acknowledge,
    reply: oneshot::Sender<Result<DmOutcome>>,
}

#[derive(Clone)]
pub struct DirectMessages {
    writers: Vec<mpsc::Sender<Pending>>,
}

impl DirectMessages {
    /// Starts the writers: one for SQLite, which has one writer anyway,
    /// several for Postgres, where conversations commit in parallel.
    pub fn start(store: Store, hub: Hub, cluster: Option<Cluster>) -> Self {
        let count = if store.backend() == "postgres" { 4 } else { 1 };
        let writers = (0..count)
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE_PER_WRITER);
                let push = match &cluster {
                    None => Push::Local(hub.clone()),
                    Some(cluster) => {
                        let (relay, relayed) = mpsc::channel(RELAY_QUEUE);
                        tokio::spawn(relay_loop(cluster.clone(), hub.clone(), relayed));
                        Push::Relay(relay)
                    }
                };
                // Writers end when every sender is gone; they are not part
                // of the drain because sockets still waiting on them are.
                tokio::spawn(write_loop(store.clone(), push, rx));
                tx
            })
            .collect();
        DirectMessages { writers }
    }

    /// Stores the message, pushes it and has it acknowledged; resolves
    /// once it is durable. `acknowledge` runs only when the outcome is
    /// `Stored` or `Duplicate`.
    pub async fn send(&self, message: NewDm, acknowledge: Acknowledge) -> Result<DmOutcome> {
        let writer = &self.writers[message.conversation_id as usize % self.writers.len()];
        let (reply, outcome) = oneshot::channel();
        writer
            .send(Pending {
                message,
                sender: Waiting { acknowledge, reply },
            })
            .await
            .map_err(|_| Error::Unavailable("message writer"))?;
        outcome
            .await
            .map_err(|_| Error::Unavailable("message writer"))?
    }
}

/// Where a writer sends what it stored.
enum Push {
    Local(Hub),
    Relay(mpsc::Sender<Stored>),
}

struct Stored {
    message: DmRow,
    other_id: i64,
}

async fn write_loop(store: Store, push: Push, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (messages, senders): (Vec<NewDm>, Vec<Waiting>) =
            batch.drain(..).map(|p| (p.message, p.sender)).unzip();
        let started = std::time::Instant::now();
        let stored = store.append_dms(&messages).await;
        metrics::histogram!("meshi_dm_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("meshi_dm_batch_size").record(messages.len() as f64);
        match stored {
            Ok(outcomes) => {
                for (sender, outcome) in senders.into_iter().zip(outcomes) {
                    match &outcome {
                        DmOutcome::Stored { message, other_id } => match &push {
                            Push::Local(hub) => {
                                deliver(hub, message, *other_id, sender.acknowledge)
                            }
                            Push::Relay(relay) => {
                                let stored = Stored {
                                    message: message.clone(),
                                    other_id: *other_id,
                                };
                                let _ = relay.send(stored).await;
                                (sender.acknowledge)(message);
                            }
                        },
                        DmOutcome::Duplicate(first) => (sender.acknowledge)(first),
                        DmOutcome::NotParticipant
                        | DmOutcome::NoConversation
                        | DmOutcome::Closed => {}
                    }
                    let _ = sender.reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                let unavailable = matches!(err, StoreError::Unavailable(_));
                tracing::warn!(error = %err, "storing messages failed");
                for sender in senders {
                    let error = if unavailable {
                        Error::Unavailable("database")
                    } else {
                        Error::internal(err.to_string())
                    };
                    let _ = sender.reply.send(Err(error));
                }
            }
        }
    }
}

/// Pushes stored messages through Redis, in the order they were stored.
/// While Redis is away they still reach this node's sockets.
async fn relay_loop(cluster: Cluster, hub: Hub, mut relayed: mpsc::Receiver<Stored>) {
    while let Some(Stored { message, other_id }) = relayed.recv().await {
        let frame = encode(&ServerFrame::DmMessage(view(&message)));
        // While the bus knows Redis is away, a push would wait out the
        // client's reconnect attempts, message after message; go local at
        // once instead.
        let pushed = if cluster.bus().is_connected() {
            let push = cluster.push_dm(
                message.conversation_id,
                message.seq,
                frame.as_str(),
                message.sender_id,
                other_id,
            );
            match tokio::time::timeout(PUSH_WITHIN, push).await {
                Ok(pushed) => pushed.map_err(|error| error.to_string()),
                Err(_) => Err("no answer from Redis".to_owned()),
            }
        } else {
            Err("the bus is disconnected".to_owned())
        };
        if let Err(error) = pushed {
            tracing::debug!(%error, "Redis is away; pushing a message on this node only");
            hub.deliver_here(Topic::User(message.sender_id), frame.clone());
            if other_id != message.sender_id {
                hub.deliver_here(Topic::User(other_id), frame);
            }
        }
    }
}

/// Pushes a stored message to both participants, serialized once, with
/// the sender's `ok` queued right behind the sender's copy.
fn deliver(hub: &Hub, message: &DmRow, other_id: i64, acknowledge: Acknowledge) {
    let frame = encode(&ServerFrame::DmMessage(view(message)));
    hub.publish_frame(Topic::User(message.sender_id), frame.clone());
    acknowledge(message);
    if other_id != message.sender_id {
        hub.publish_frame(Topic::User(other_id), frame);
    }
}

pub fn view(row: &DmRow) -> DmMessage {
    DmMessage {
        conversation_id: row.conversation_id.to_string(),
        seq: row.seq as u64,
        message_id: row.message_id.clone(),
        from: UserSummary {
            id: row.sender_id.to_string(),
            handle: crate::profile::shown_handle(&row.sender_handle),
            display_name: row.sender_display_name.clone(),
        },
        text: row.text.clone(),
        sent_at: rfc3339(row.sent_at),
        client_msg_id: row.client_msg_id.clone(),
        edited_at: row.edited_at.map(rfc3339),
        deleted: row.deleted,
    }
}
