//! The bus carries every delivery to every node's [`Subscribers`],
//! including the node that published it, so one node and many run the same
//! path. [`LocalBus`] serves a single node in-process; [`RedisBus`] carries
//! deliveries between nodes.
//!
//! The [`Bus`] trait itself is declared in `hub::subscribers`, beside the
//! deliveries it carries, so the hub depends on nothing above it.

mod local;
mod redis;

pub use local::LocalBus;
pub use redis::{open_client as open_redis_client, BusError, RedisBus};

pub use crate::hub::subscribers::Bus;
