//! The bus carries every delivery to every node's [`Subscribers`],
//! including the node that published it, so one node and many run the same
//! path. [`LocalBus`] serves a single node in-process; [`RedisBus`] carries
//! deliveries between nodes.
//!
//! `publish` must not wait: callers hold a room's lock while publishing so
//! that a room's messages leave in `seq` order.

mod local;
mod redis;

pub use local::LocalBus;
pub use redis::{open_client as open_redis_client, BusError, RedisBus};

use crate::hub::subscribers::Delivery;

pub trait Bus: Send + Sync + 'static {
    fn publish(&self, delivery: Delivery);
}
