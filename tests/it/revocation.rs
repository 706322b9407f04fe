//! Revocation that cannot be missed: a logout reaches sockets through the
//! bus, which is at most once; the sessions table is the record every node
//! sweeps, on a period and whenever its bus is back, and `hello` looks at
//! it again once it listens for its own revocation.
//!
//! Two in-process nodes on their own Postgres database; the fault tests
//! run their own `redis-server` so they can stop it, the race test uses
//! the shared Redis (see `crate::common::services`).

use std::time::{Duration, Instant};

use crate::common::cluster::{Cluster, Node, NodeKind, Settings};
use crate::common::services::{shared_redis, ThrowawayRedis};
use crate::common::wait::{eventually, read_until_closed};
use crate::common::{Ended, WsClient};
use serde_json::json;

/// Waits until `node` reports Redis away, so what follows really happens
/// while its bus is disconnected.
async fn redis_away(node: &Node) {
    eventually(Duration::from_secs(15), "readyz names redis", || async {
        let (status, body) = node.readyz().await;
        if status == 503 {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_the_bus_missed_closes_the_socket_within_the_sweep_period() {
    let mut redis = ThrowawayRedis::start().await;
    let settings = Settings {
        revocation_check_secs: 1,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis.url(), settings).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (token, _) = n1.register("roamer").await;
    let mut far = n2.client(&token).await;
    let mut near = n1.client(&token).await;

    redis.stop();
    redis_away(n2).await;
    let logged_out = Instant::now();
    n1.logout(&token).await;

    // The node that took the logout closes its own socket at once; the
    // other never heard of it, and its sweep finds it.
    assert_eq!(
        near.closed_with(Duration::from_secs(5)).await,
        Ended::Closed(4010)
    );
    assert_eq!(
        far.closed_with(Duration::from_secs(10)).await,
        Ended::Closed(4010)
    );
    let took = logged_out.elapsed();
    eprintln!("the socket behind a disconnected bus closed {took:?} after the logout");
    assert!(
        took < Duration::from_secs(5),
        "a one-second sweep took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_missed_while_redis_was_away_is_caught_when_the_bus_is_back() {
    let mut redis = ThrowawayRedis::start().await;
    // A period far longer than the test: only the bus coming back sweeps.
    let settings = Settings {
        revocation_check_secs: 3_600,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, redis.url(), settings).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let (token, _) = n1.register("wanderer").await;
    let mut far = n2.client(&token).await;

    redis.stop();
    redis_away(n2).await;
    n1.logout(&token).await;
    // Missed: the socket behind the disconnected bus still answers.
    far.ok(json!({"type": "ping"})).await;

    let back = Instant::now();
    redis.start_again().await;
    assert_eq!(
        far.closed_with(Duration::from_secs(20)).await,
        Ended::Closed(4010)
    );
    eprintln!(
        "the socket closed {:?} after Redis came back",
        back.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_racing_a_logout_never_outlives_it() {
    // No sweep within the test: what ends these sockets is the logout's
    // push, or hello's second look at the record.
    let settings = Settings {
        revocation_check_secs: 3_600,
        ..Settings::default()
    };
    let cluster = Cluster::start(NodeKind::InProcess, 2, shared_redis().await, settings).await;
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    n1.register("racer").await;
    let mut survived_hello = 0;
    let rounds = 24u64;
    for round in 0..rounds {
        let token = n1.login("racer").await;
        let mut socket = WsClient::connect(n2).await;
        // From the logout well ahead of the hello to well behind it, so
        // some land between the hello's check and its listening.
        let (hello_after, logout_after) = match round.checked_sub(rounds / 2) {
            Some(later) => (Duration::from_millis(later * 4), Duration::ZERO),
            None => (
                Duration::ZERO,
                Duration::from_millis((rounds / 2 - round) * 4),
            ),
        };
        let ((frames, ended), ()) = tokio::join!(
            async {
                tokio::time::sleep(hello_after).await;
                socket
                    .send(json!({"type": "hello", "ref": "h", "token": token}))
                    .await;
                read_until_closed(&mut socket, Duration::from_secs(5)).await
            },
            async {
                tokio::time::sleep(logout_after).await;
                n1.logout(&token).await;
            }
        );
        if frames.iter().any(|f| f["type"] == "ok") {
            survived_hello += 1;
            assert_eq!(ended, Ended::Closed(4010), "round {round}: {frames:?}");
        } else {
            // Refused, or closed as revoked before its answer was written.
            assert!(
                matches!(ended, Ended::Closed(4001 | 4010)),
                "round {round}: {ended:?} after {frames:?}"
            );
        }
    }
    eprintln!("{survived_hello} of {rounds} hellos were answered before their logout");
}
