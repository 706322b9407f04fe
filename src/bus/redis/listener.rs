//! The one task that listens on Redis for the other nodes: a dedicated
//! pub/sub connection subscribed to exactly the topics this node has local
//! sockets for, resubscribed after every reconnect. It hands what it hears
//! to local sockets and never publishes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::PubSubSink;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::codec::{decode, decode_probe, Decoded};
use super::{Channels, Health, Heard, BACKOFF_MAX, BACKOFF_MIN};
use crate::clock::now_ms;
use crate::hub::subscribers::{Delivery, Subscribers, Topic};

/// Most messages handled at once before the listener looks at anything else.
const RECEIVE_BATCH: usize = 1024;
/// Most topics one SUBSCRIBE or UNSUBSCRIBE carries.
const RECONCILE_BATCH: usize = 1024;
/// A half-open connection (peer gone without a FIN) sends no error; a ping
/// that goes unanswered is how the subscriber finds out.
const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Listener {
    pub(super) client: redis::Client,
    pub(super) channels: Channels,
    /// The channel of the nodes' lag probes, subscribed on every connection.
    pub(super) probes: String,
    pub(super) node_id: String,
    pub(super) subscribers: Arc<Subscribers>,
    pub(super) interest: mpsc::UnboundedReceiver<Topic>,
    /// Channels subscribed on the current connection, and their topics.
    pub(super) subscribed: HashMap<String, Topic>,
    pub(super) health: Arc<Health>,
    pub(super) heard: Arc<Heard>,
}

/// Why a connection's session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

impl Listener {
    pub(super) async fn run(mut self, first: redis::aio::PubSub, shutdown: CancellationToken) {
        let mut pubsub = Some(first);
        let mut backoff = BACKOFF_MIN;
        loop {
            let connection = match pubsub.take() {
                Some(connection) => Ok(connection),
                None => self.client.get_async_pubsub().await,
            };
            match connection {
                Ok(connection) => {
                    backoff = BACKOFF_MIN;
                    match self.session(connection, &shutdown).await {
                        Ended::Shutdown => return,
                        Ended::Lost(error) => {
                            self.health.subscriber_up.store(false, Ordering::Relaxed);
                            gauge_channels(0);
                            tracing::warn!(%error, "bus lost its Redis subscription; reconnecting");
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, ?backoff, "bus cannot reach Redis yet");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            metrics::counter!("meshi_bus_reconnects_total").increment(1);
        }
    }

    /// Listens on one connection until it fails or the node shuts down.
    async fn session(&mut self, pubsub: redis::aio::PubSub, shutdown: &CancellationToken) -> Ended {
        let (mut sink, mut stream) = pubsub.split();
        self.subscribed.clear();
        self.heard.set_channels(HashSet::clear);
        // A fresh connection listens to nothing: catch up with every topic
        // that has local sockets now. Reports queued meanwhile are covered.
        while self.interest.try_recv().is_ok() {}
        for topics in self.subscribers.topics().chunks(RECONCILE_BATCH) {
            if let Err(error) = self.reconcile(&mut sink, topics).await {
                return Ended::Lost(error.to_string());
            }
        }
        if let Err(error) = sink.subscribe(&self.probes).await {
            return Ended::Lost(error.to_string());
        }
        if !self.health.subscriber_up.swap(true, Ordering::Relaxed) {
            tracing::info!(
                channels = self.subscribed.len(),
                "bus subscribed to Redis again"
            );
            self.heard.resubscribed.send_modify(|n| *n += 1);
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        self.receive(&message);
                        // Everything else already here goes too: one
                        // message per turn of this loop, which also waits
                        // on subscription round trips, falls behind in a
                        // connect storm.
                        for _ in 0..RECEIVE_BATCH {
                            match stream.next().now_or_never() {
                                Some(Some(message)) => self.receive(&message),
                                Some(None) => return Ended::Lost("connection closed".into()),
                                None => break,
                            }
                        }
                    }
                    None => return Ended::Lost("connection closed".into()),
                },
                Some(topic) = self.interest.recv() => {
                    // In a connect storm reports come faster than one round
                    // trip each; take all that are waiting in one go.
                    let mut topics = vec![topic];
                    while topics.len() < RECONCILE_BATCH {
                        match self.interest.try_recv() {
                            Ok(topic) => topics.push(topic),
                            Err(_) => break,
                        }
                    }
                    if let Err(error) = self.reconcile(&mut sink, &topics).await {
                        return Ended::Lost(error.to_string());
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return Ended::Lost(error.to_string()),
                        Err(_) => return Ended::Lost("ping unanswered".into()),
                    }
                }
                () = shutdown.cancelled() => return Ended::Shutdown,
            }
        }
    }

    /// Brings these topics' subscriptions in line with whether they have
    /// local sockets now (the reports that prompted this may be stale), in
    /// at most one UNSUBSCRIBE and one SUBSCRIBE.
    async fn reconcile(
        &mut self,
        sink: &mut PubSubSink,
        topics: &[Topic],
    ) -> redis::RedisResult<()> {
        let mut seen = HashSet::new();
        let (mut to_subscribe, mut to_unsubscribe) = (Vec::new(), Vec::new());
        for topic in topics {
            let channel = self.channels.name(topic);
            if !seen.insert(channel.clone()) {
                continue;
            }
            let wanted = self.subscribers.count(topic) > 0;
            let have = self.subscribed.contains_key(&channel);
            if wanted && !have {
                to_subscribe.push((channel, topic.clone()));
            } else if !wanted && have {
                to_unsubscribe.push((channel, topic.clone()));
            }
        }
        if !to_unsubscribe.is_empty() {
            self.heard.set_channels(|set| {
                for (channel, _) in &to_unsubscribe {
                    set.remove(channel);
                }
            });
            for (_, topic) in &to_unsubscribe {
                if let Topic::Room(room) = topic {
                    self.heard.room_seqs.remove(room);
                }
            }
            let channels: Vec<&str> = to_unsubscribe.iter().map(|(c, _)| c.as_str()).collect();
            sink.unsubscribe(&channels).await?;
            for (channel, _) in &to_unsubscribe {
                self.subscribed.remove(channel);
            }
        }
        if !to_subscribe.is_empty() {
            let channels: Vec<&str> = to_subscribe.iter().map(|(c, _)| c.as_str()).collect();
            sink.subscribe(&channels).await?;
            self.heard.set_channels(|set| {
                for (channel, _) in &to_subscribe {
                    set.insert(channel.clone());
                }
            });
            self.subscribed.extend(to_subscribe);
        }
        gauge_channels(self.subscribed.len());
        Ok(())
    }

    fn receive(&self, message: &redis::Msg) {
        if message.get_channel_name() == self.probes {
            self.receive_probe(message.get_payload_bytes());
            return;
        }
        // A message can trail an UNSUBSCRIBE; nobody here wants it.
        let Some(topic) = self.subscribed.get(message.get_channel_name()) else {
            return;
        };
        match decode(&self.node_id, message.get_payload_bytes(), topic) {
            Ok(Decoded::Own) => {}
            Ok(Decoded::Remote(delivery)) => {
                metrics::counter!("meshi_bus_received_total").increment(1);
                self.subscribers.deliver(&delivery);
            }
            Ok(Decoded::Sequenced {
                delivery,
                seq,
                closes,
            }) => {
                metrics::counter!("meshi_bus_received_total").increment(1);
                if let (Topic::Room(room), Delivery::Evict { user, .. }) = (topic, &delivery) {
                    self.subscribers.deliver(&delivery);
                    if let Some(evicted) = self.heard.on_member_evicted.get() {
                        evicted(room, *user);
                    }
                    return;
                }
                if let (
                    Topic::Room(room),
                    Delivery::Frame {
                        position: Some(position),
                        ..
                    },
                ) = (topic, &delivery)
                {
                    if closes {
                        self.heard.room_seqs.remove(room);
                        if let Some(closed) = self.heard.on_room_closed.get() {
                            closed(room);
                        }
                    } else {
                        let mut heard = self.heard.room_seqs.entry(room.clone()).or_default();
                        *heard = (heard.0.max(*position), heard.1.max(seq));
                    }
                }
                self.subscribers.deliver(&delivery);
                if closes {
                    // The room's last event: its sockets here are out of it.
                    self.subscribers.end(topic);
                }
            }
            Err(error) => {
                metrics::counter!("meshi_bus_decode_errors_total").increment(1);
                tracing::warn!(%error, channel = message.get_channel_name(), "bus dropped an unreadable payload");
            }
        }
    }
}

impl Listener {
    /// `meshi_bus_lag_seconds`: from another node's publish to here, by
    /// the two nodes' clocks (a skew between them shows as lag, or as none
    /// when negative).
    fn receive_probe(&self, payload: &[u8]) {
        match decode_probe(&self.node_id, payload) {
            Ok(Some(sent_at)) => {
                let lag_ms = (now_ms() - sent_at).max(0);
                metrics::histogram!("meshi_bus_lag_seconds").record(lag_ms as f64 / 1000.0);
            }
            Ok(None) => {}
            Err(error) => {
                metrics::counter!("meshi_bus_decode_errors_total").increment(1);
                tracing::warn!(%error, "bus dropped an unreadable lag probe");
            }
        }
    }
}

fn gauge_channels(n: usize) {
    metrics::gauge!("meshi_bus_channels").set(n as f64);
}
