//! Many nodes as one: the state every node must agree on lives in Redis,
//! changed only by the Lua scripts in [`scripts`], and the events those
//! scripts publish reach every interested node through the [`RedisBus`].
//!
//! # What lives where
//! Each node keeps its own sockets, their subscriptions and, per room, the
//! users it holds there. Redis keeps, under the configured prefix:
//!
//! | key | what |
//! |---|---|
//! | `<p>:r:<room>` | hash: kind, capacity, created, `seq`, `ev` (event position), host, and the room's frames (its view and `rooms.changed` around the member count, `room.member_left` around the user id, `room.closed` for each reason) |
//! | `<p>:r:<room>\|m` | hash: user id -> user summary, the members |
//! | `<p>:r:<room>\|n`, `\|c` | which nodes hold which member, and how many nodes hold each |
//! | `<p>:r:<room>\|h` | list: the latest messages, capped at the history window |
//! | `<p>:r:<room>\|d`, `\|q` | `client_msg_id` -> first result, and their order for eviction |
//! | `<p>:r:<room>\|b` | hash: user id -> when their ban from the room ends (ms) |
//! | `<p>:rooms` | sorted set: open drop-in rooms by creation time |
//! | `<p>:empty` | sorted set: drop-in rooms by when they emptied |
//! | `<p>:u:<user>:hosts`, `:created` | the drop-in rooms a user hosts, and when they created their latest, for `MESHI_MAX_HOSTED_ROOMS` and `MESHI_ROOM_CREATE_PER_MIN` |
//! | `<p>:on:<user>` | hash: the nodes holding a socket of the user |
//! | `<p>:nodes`, `<p>:node:<id>` | live nodes, and each one's heartbeat with a TTL |
//! | `<p>:node:<id>:rooms`, `:users` | what a node holds, for cleaning up after it dies |
//!
//! # Order
//! A room message is numbered, stored in the room's history and published
//! by one script, so Redis hands it to every node in `seq` order. Joins,
//! leaves and closes are published the same way, each with the room's next
//! event position; a joining socket holds back what arrives while its join
//! is under way and keeps only what came after it (see `hub::gate`).
//!
//! # Cost of a message
//! A room message costs one script call from the sender's node (an
//! `EVALSHA` carrying the serialized frame once; inside, a counter bump, a
//! capped list push and one `PUBLISH`). Redis sends the payload once to
//! each node that has a member of the room, never once per member: a node
//! subscribes to a room's channel only while it holds a socket joined to
//! it, and fans the same bytes out to its own sockets. So a message to a
//! room of `m` members spread over `k` nodes crosses the network `k + 1`
//! times, whatever `m` is. A direct message costs its Postgres commit
//! (shared by every message in the batch), one script call, and one
//! `PUBLISH` per participant, heard only by the nodes holding them. Typing,
//! presence, notifications and revocations are one `PUBLISH` each, pipelined
//! by the bus's publisher.
//!
//! # Faults
//! Every node heartbeats `<p>:node:<id>` with a TTL of `MESHI_NODE_TTL_MS`
//! three times per TTL and, on the same tick, claims nodes whose heartbeat
//! lapsed: the claimant takes the dead node's users offline and out of
//! their rooms. So a dead node's users are gone everywhere within one TTL
//! plus one tick.
//!
//! When Redis restarts empty, the heartbeat finds this node forgotten and
//! the node puts back what it holds: its users' presence and, for every
//! room it has members in, the room with those members. A room comes back
//! with its `seq` and event position raised past anything this node heard
//! plus [`RESEED_GAP`], so numbers never go backwards even though the
//! history is gone (clients that ask to recover get `recovered: false`).
//! Meanwhile room ops answer `unavailable`; direct messages, notifications
//! and presence still reach sockets on the same node.

/// Script arguments of mixed types, each as Redis will read it.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {{
        let mut args: Vec<Vec<u8>> = Vec::new();
        $(args.extend(redis::ToRedisArgs::to_redis_args(&$arg));)*
        args
    }};
}

mod frames;
mod presence;
pub mod rooms;
mod scripts;

pub use presence::ClusterPresence;
pub use rooms::RedisEngine;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::bus::RedisBus;

/// How far past the highest number a node heard a room's `seq` and event
/// position restart after Redis lost the room: the margin covers events
/// that other nodes saw and this one had not yet when Redis went away.
pub const RESEED_GAP: u64 = 1_000;

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach Redis: {0}")]
    Connect(#[source] redis::RedisError),
    #[error("node id `{0}` is in use by a running node; give each node its own MESHI_NODE_ID")]
    NodeIdInUse(String),
}

/// One node's handle on the shared state; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    node: String,
    bus: Arc<RedisBus>,
}

impl Cluster {
    /// Opens the command connection from `client`, the one the bus's
    /// connections came from (see [`crate::bus::open_redis_client`]).
    pub async fn connect(
        client: &redis::Client,
        prefix: &str,
        node: &str,
        bus: Arc<RedisBus>,
    ) -> Result<Cluster, ClusterError> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(ClusterError::Connect)?;
        Ok(Cluster {
            inner: Arc::new(Inner {
                conn,
                prefix: prefix.to_owned(),
                node: node.to_owned(),
                bus,
            }),
        })
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn bus(&self) -> &Arc<RedisBus> {
        &self.inner.bus
    }

    /// Whether Redis answers now, on both the command connection and the
    /// bus's subscription.
    pub async fn ping(&self) -> bool {
        let answered =
            tokio::time::timeout(RESPONSE_TIMEOUT, self.query::<String>(&redis::cmd("PING"))).await;
        matches!(answered, Ok(Ok(_))) && self.inner.bus.is_connected()
    }

    /// Runs a script with the prefix and node id in front of `args` (built
    /// with [`args!`]).
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        lua: &scripts::Lua,
        args: &[Vec<u8>],
    ) -> redis::RedisResult<T> {
        let mut invocation = lua.script.prepare_invoke();
        invocation.arg(&self.inner.prefix).arg(&self.inner.node);
        for arg in args {
            invocation.arg(arg.as_slice());
        }
        let mut conn = self.inner.conn.clone();
        measured("script", lua.name, invocation.invoke_async(&mut conn)).await
    }

    /// Runs a plain command.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        let mut conn = self.inner.conn.clone();
        measured("command", "", cmd.query_async(&mut conn)).await
    }

    pub(crate) async fn pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let mut conn = self.inner.conn.clone();
        measured("pipeline", "", pipe.query_async(&mut conn)).await
    }

    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.inner.prefix)
    }

    /// Whether the cluster knows this node now; it does not after Redis
    /// restarted empty, until the next heartbeat puts it back.
    pub(crate) async fn is_known(&self) -> redis::RedisResult<bool> {
        self.query(
            redis::cmd("SISMEMBER")
                .arg(self.key("nodes"))
                .arg(&self.inner.node),
        )
        .await
    }

    /// Whether `node` heartbeated within its TTL.
    pub(crate) async fn is_alive(&self, node: &str) -> redis::RedisResult<bool> {
        self.query(redis::cmd("EXISTS").arg(self.key(&format!("node:{node}"))))
            .await
    }

    /// Heartbeats; returns whether the cluster still knew this node.
    pub(crate) async fn heartbeat(&self, ttl: Duration) -> redis::RedisResult<bool> {
        let ttl = ttl.as_millis() as u64;
        self.run::<i64>(&scripts::HEARTBEAT, &args![ttl])
            .await
            .map(|known| known == 1)
    }

    /// Nodes whose heartbeat lapsed, each claimed by this node alone.
    pub(crate) async fn claim_dead(&self) -> redis::RedisResult<Vec<String>> {
        self.run(&scripts::CLAIM_DEAD, &[]).await
    }

    /// Pushes a stored direct message to both participants in `seq` order
    /// across the cluster.
    pub async fn push_dm(
        &self,
        conversation: i64,
        seq: i64,
        frame: &str,
        sender: i64,
        other: i64,
    ) -> redis::RedisResult<()> {
        let now = crate::clock::now_ms();
        self.run::<i64>(
            &scripts::DM_PUSH,
            &args![conversation, seq, frame, sender, other, now],
        )
        .await
        .map(drop)
    }

    /// Gives up waiting for direct messages that never reached Redis and
    /// pushes what was parked behind them.
    pub(crate) async fn flush_parked_dms(&self, older_than: Duration) -> redis::RedisResult<()> {
        let cutoff = crate::clock::now_ms() - older_than.as_millis() as i64;
        for conversation in self.due("dmpark", cutoff).await? {
            self.run::<i64>(&scripts::DM_FLUSH, &args![conversation])
                .await?;
        }
        Ok(())
    }

    /// Up to a hundred members of the sorted set `<prefix>:<set>` whose
    /// score (a time, ms) is at or before `cutoff`, oldest first.
    pub(crate) async fn due(&self, set: &str, cutoff: i64) -> redis::RedisResult<Vec<String>> {
        self.query(
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.key(set))
                .arg("-inf")
                .arg(cutoff)
                .arg("LIMIT")
                .arg(0)
                .arg(100),
        )
        .await
    }

    /// Removes this node from the cluster when it stops.
    pub async fn leave(&self) {
        let node = &self.inner.node;
        let mut pipe = redis::pipe();
        pipe.srem(self.key("nodes"), node)
            .del(self.key(&format!("node:{node}")))
            .del(self.key(&format!("node:{node}:rooms")))
            .del(self.key(&format!("node:{node}:users")));
        if let Err(error) = self.pipe::<()>(&pipe).await {
            tracing::warn!(%error, "could not take this node out of the cluster");
        }
    }
}

/// Redis failed, seen from an op.
impl From<redis::RedisError> for crate::error::Error {
    fn from(error: redis::RedisError) -> Self {
        tracing::warn!(%error, "Redis command failed");
        crate::error::Error::Unavailable("redis")
    }
}

/// Times one round trip to Redis as `meshi_redis_seconds{kind, name}` and
/// counts its failures as `meshi_redis_errors_total{kind, name}`. Scripts
/// are named; plain commands and pipelines are told apart by kind only,
/// their names being the code's, too many to chart one by one.
async fn measured<T>(
    kind: &'static str,
    name: &'static str,
    round_trip: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    let labels = [("kind", kind), ("name", name)];
    crate::metrics::timed(
        "meshi_redis_seconds",
        "meshi_redis_errors_total",
        &labels,
        |_| true,
        round_trip,
    )
    .await
}
