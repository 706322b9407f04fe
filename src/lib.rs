//! meshi: a real-time chat and rooms server.
//!
//! # Layout
//! - [`config`]: the one place that reads the environment.
//! - [`app`]: wires services together; `serve(listener, config, shutdown)`.
//! - [`state`]: the services every handler and socket is given.
//! - [`client_addr`]: who a request comes from, trusted proxies considered.
//! - [`net`]: the TCP listener: connection caps and HTTP deadlines.
//! - [`http`]: REST handlers under `/api/v1`, plus health and metrics.
//! - [`ws`]: the socket endpoint: connection loop and one function per op.
//! - [`hub`]: live state (sockets, subscriptions, rooms); synchronous.
//! - [`bus`]: carries deliveries to every node's subscribers.
//! - [`store`]: the only module that runs SQL (SQLite or Postgres).
//! - [`auth`]: passwords, session tokens, identities.
//! - [`error`]: the error type and its wire form.
//! - [`notify`]: notifications, stored then pushed.
//! - [`dm`]: direct messages, group-committed then pushed.
//! - [`presence`]: online/offline and telling partners.
//! - [`revisions`]: editing and deleting messages after they were sent.
//! - [`pairing`]: blocking and unmatching, and whether a conversation
//!   takes messages.
//! - [`moderation`]: room actions of hosts and staff, audited.
//! - [`erasure`]: deleting one's own account, and telling who it concerns.
//! - [`upkeep`]: this node's share of a cluster's upkeep (heartbeats, dead
//!   nodes, emptied rooms, state put back after Redis lost it).
//! - [`standing`]: event and community rooms and who may enter them.
//! - [`validate`]: input rules shared by REST and socket ops.

/// The build, as `meshi --version` prints it: the release and the commit.
pub const BUILD: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MESHI_COMMIT"),
    ")"
);

pub mod app;
pub mod auth;
pub mod bus;
pub mod client_addr;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dm;
pub mod erasure;
pub mod error;
pub mod http;
pub mod hub;
mod ids;
pub mod metrics;
pub mod moderation;
pub mod net;
pub mod notify;
pub mod pairing;
pub mod presence;
pub mod profile;
pub mod revisions;
pub mod rooms;
pub mod standing;
pub mod state;
pub mod store;
pub mod upkeep;
pub mod validate;
pub mod ws;

pub use app::serve;
pub use config::Config;
