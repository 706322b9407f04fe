//! Where a room behaviour test runs: one node alone (the memory engine), or
//! two nodes of a cluster over real Redis (the rooms kept in Redis), each
//! new user on the other node than the last, so that every exchange
//! between two users crosses nodes. A test written against a [`Place`]
//! holds both engines to one contract.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::cluster::{Cluster, NodeKind, Settings};
use crate::common::services::shared_redis;
use crate::common::{Api, TestServer, WsClient};

/// Upper bound for signing a user in on a loaded machine.
const SIGN_IN_WITHIN: std::time::Duration = std::time::Duration::from_secs(90);

/// The room settings a test may need other than the defaults.
#[derive(Clone, Copy, Default)]
pub struct RoomKnobs {
    pub room_history: Option<u32>,
    pub room_empty_grace_secs: Option<u64>,
    pub max_rooms_per_socket: Option<usize>,
    pub room_list_max: Option<u32>,
}

pub struct Place {
    servers: Servers,
    next_user: AtomicUsize,
}

enum Servers {
    One(Box<TestServer>),
    Two(Box<Cluster>),
}

impl Place {
    pub async fn one_node(knobs: RoomKnobs) -> Place {
        let server = TestServer::start_with(|config| {
            if let Some(history) = knobs.room_history {
                config.room_history = history;
            }
            if let Some(grace) = knobs.room_empty_grace_secs {
                config.room_empty_grace_secs = grace;
            }
            if let Some(cap) = knobs.max_rooms_per_socket {
                config.max_rooms_per_socket = cap;
            }
            if let Some(bound) = knobs.room_list_max {
                config.room_list_max = bound;
            }
        })
        .await;
        Place::of(Servers::One(Box::new(server)))
    }

    pub async fn two_nodes(knobs: RoomKnobs) -> Place {
        let defaults = meshi::config::Config::defaults();
        let settings = Settings {
            room_history: knobs.room_history.unwrap_or(defaults.room_history),
            room_empty_grace_secs: knobs
                .room_empty_grace_secs
                .unwrap_or(defaults.room_empty_grace_secs),
            max_rooms_per_socket: knobs.max_rooms_per_socket.unwrap_or(0),
            room_list_max: knobs.room_list_max.unwrap_or(defaults.room_list_max),
            ..Settings::default()
        };
        let cluster = Cluster::start(NodeKind::InProcess, 2, shared_redis().await, settings).await;
        Place::of(Servers::Two(Box::new(cluster)))
    }

    fn of(servers: Servers) -> Place {
        Place {
            servers,
            next_user: AtomicUsize::new(0),
        }
    }

    /// The first node, for REST calls whose node does not matter.
    pub fn api(&self) -> &Api {
        self.node(0)
    }

    fn node(&self, index: usize) -> &Api {
        match &self.servers {
            Servers::One(server) => server,
            Servers::Two(cluster) => cluster.node(1 + index % 2),
        }
    }

    /// Registers `handle` on the next node in turn and says hello there.
    pub async fn user(&self, handle: &str) -> (WsClient, String, String) {
        let index = self.next_user.fetch_add(1, Ordering::Relaxed);
        self.node(index).user(handle).await
    }

    /// [`Place::user`] under a deadline like every receive, so a stuck
    /// sign-in fails the test rather than hanging it.
    pub async fn person(&self, handle: &str) -> (WsClient, String, String) {
        crate::common::wait::within(SIGN_IN_WITHIN, self.user(handle))
            .await
            .expect("a user signs in within the deadline")
    }

    /// Another socket for a user who has a token, on the next node in turn.
    pub async fn socket(&self, token: &str) -> WsClient {
        let index = self.next_user.fetch_add(1, Ordering::Relaxed);
        WsClient::hello(self.node(index), token).await
    }

    /// Makes `handle` an admin the operator's way and signs it in on the
    /// first node; returns token and id.
    pub async fn admin(&self, handle: &str) -> (String, String) {
        match &self.servers {
            Servers::One(server) => server.admin(handle).await,
            Servers::Two(cluster) => cluster.node(1).admin(handle).await,
        }
    }

    pub async fn shutdown(self) {
        match self.servers {
            Servers::One(server) => (*server).shutdown().await,
            Servers::Two(cluster) => drop(cluster),
        }
    }
}

/// Runs each named test, an `async fn(Place)`, on one node and on two:
/// `room_contract! { name: knobs, ... }` makes `one_node::name` and
/// `two_nodes::name`.
#[macro_export]
macro_rules! room_contract {
    ($($name:ident: $knobs:expr),* $(,)?) => {
        mod one_node {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::place::Place::one_node($knobs).await).await;
                }
            )*
        }
        mod two_nodes {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::place::Place::two_nodes($knobs).await).await;
                }
            )*
        }
    };
}
