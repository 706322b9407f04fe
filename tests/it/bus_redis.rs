//! The Redis bus between two nodes living in one test process, against a
//! real Redis. Each test uses its own key prefix, so tests share one Redis
//! without hearing each other.

use std::sync::Arc;
use std::time::Duration;

use meshi::bus::{Bus, RedisBus};
use meshi::hub::outbox::{Inbox, Kill, Outbound, Outbox};
use meshi::hub::subscribers::{Delivery, Subscriber, Subscribers, Topic};
use tokio::time::{sleep, timeout, Instant};

use crate::common::services::{random_prefix, shared_redis, ThrowawayRedis};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

struct Node {
    subscribers: Arc<Subscribers>,
    bus: RedisBus,
}

async fn node(url: &str, prefix: &str, id: &str) -> Node {
    let subscribers = Arc::new(Subscribers::default());
    let client = meshi::bus::open_redis_client(url, None).expect("a Redis URL");
    let bus = RedisBus::start(client, prefix, id.into(), subscribers.clone())
        .await
        .unwrap_or_else(|e| panic!("node {id} could not start its bus: {e}"));
    Node { subscribers, bus }
}

/// The far end of a socket's outbox, as its writer task would see it.
struct Sock {
    rx: Inbox,
    kill: Arc<Kill>,
}

impl Node {
    fn attach(&self, topic: &Topic, conn: u64, user: i64) -> Sock {
        let (outbox, rx, kill) = Outbox::new(2048);
        self.subscribers
            .subscribe(topic.clone(), Subscriber::new(conn, user, outbox));
        Sock { rx, kill }
    }

    fn send(&self, topic: &Topic, text: &str, skip_user: Option<i64>) {
        self.bus.publish(Delivery::Frame {
            topic: topic.clone(),
            frame: text.into(),
            skip_user,
            position: None,
        });
    }
}

impl Sock {
    async fn next(&mut self) -> String {
        match timeout(WAIT, self.rx.recv()).await {
            Ok(Some(Outbound::Frame(frame))) => frame.as_str().to_owned(),
            Ok(other) => panic!("expected a frame, got {other:?}"),
            Err(_) => panic!("no frame within {WAIT:?}"),
        }
    }

    async fn quiet(&mut self) {
        if let Ok(got) = timeout(QUIET, self.rx.recv()).await {
            panic!("expected nothing more, got {got:?}");
        }
    }
}

async fn numsub(url: &str, channel: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut conn)
        .await
        .unwrap();
    n
}

/// Polls until `channel` has `want` subscribers; subscribing happens in
/// the background, so a test waits for it before publishing.
async fn expect_numsub(url: &str, channel: &str, want: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = numsub(url, channel).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel} has {n} subscribers, expected {want}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

fn room(id: &str) -> Topic {
    Topic::Room(id.into())
}

#[tokio::test]
async fn a_frame_reaches_each_socket_once() {
    let url = shared_redis().await;
    let prefix = random_prefix();
    let a = node(&url, &prefix, "a").await;
    let b = node(&url, &prefix, "b").await;
    let topic = room("lobby");
    let mut on_a = a.attach(&topic, 1, 1);
    let mut on_b = b.attach(&topic, 2, 2);
    expect_numsub(&url, &format!("{prefix}:room:lobby"), 2).await;

    a.send(&topic, r#"{"n":1}"#, None);

    assert_eq!(on_a.next().await, r#"{"n":1}"#);
    assert_eq!(on_b.next().await, r#"{"n":1}"#);
    // A hears its own publish back from Redis and must not deliver it again.
    on_a.quiet().await;
    on_b.quiet().await;
}

#[tokio::test]
async fn a_thousand_frames_arrive_in_order() {
    let url = shared_redis().await;
    let prefix = random_prefix();
    let a = node(&url, &prefix, "a").await;
    let b = node(&url, &prefix, "b").await;
    let topic = room("busy");
    let mut on_b = b.attach(&topic, 1, 1);
    expect_numsub(&url, &format!("{prefix}:room:busy"), 1).await;

    for n in 0..1000 {
        a.send(&topic, &format!(r#"{{"n":{n}}}"#), None);
    }
    for n in 0..1000 {
        assert_eq!(on_b.next().await, format!(r#"{{"n":{n}}}"#));
    }
    on_b.quiet().await;
}

#[tokio::test]
async fn skip_user_holds_on_every_node() {
    let url = shared_redis().await;
    let prefix = random_prefix();
    let a = node(&url, &prefix, "a").await;
    let b = node(&url, &prefix, "b").await;
    let topic = room("typing");
    let mut typist_on_a = a.attach(&topic, 1, 7);
    let mut typist_on_b = b.attach(&topic, 2, 7);
    let mut reader_on_b = b.attach(&topic, 3, 8);
    expect_numsub(&url, &format!("{prefix}:room:typing"), 2).await;

    a.send(&topic, r#"{"typing":7}"#, Some(7));

    assert_eq!(reader_on_b.next().await, r#"{"typing":7}"#);
    typist_on_a.quiet().await;
    typist_on_b.quiet().await;
}

#[tokio::test]
async fn a_close_kills_sockets_on_the_other_node() {
    let url = shared_redis().await;
    let prefix = random_prefix();
    let a = node(&url, &prefix, "a").await;
    let b = node(&url, &prefix, "b").await;
    let topic = Topic::Session(42);
    let on_b = b.attach(&topic, 1, 1);
    expect_numsub(&url, &format!("{prefix}:session:42"), 1).await;

    a.bus.publish(Delivery::Close {
        topic,
        code: 4010,
        reason: "token revoked",
    });

    timeout(WAIT, on_b.kill.killed())
        .await
        .expect("the remote socket was not killed");
    assert!(on_b.kill.is_killed());
    assert_eq!(on_b.kill.reason(), Some((4010, "token revoked")));
}

#[tokio::test]
async fn shutdown_sends_what_was_queued() {
    let url = shared_redis().await;
    let prefix = random_prefix();
    let a = node(&url, &prefix, "a").await;
    let b = node(&url, &prefix, "b").await;
    let topic = room("closing");
    let mut on_b = b.attach(&topic, 1, 1);
    expect_numsub(&url, &format!("{prefix}:room:closing"), 1).await;

    for n in 0..100 {
        a.send(&topic, &n.to_string(), None);
    }
    timeout(WAIT, a.bus.shutdown())
        .await
        .expect("shutdown did not finish");

    for n in 0..100 {
        assert_eq!(on_b.next().await, n.to_string());
    }
}

#[tokio::test]
async fn a_node_listens_only_while_it_has_local_sockets() {
    let url = shared_redis().await;
    let prefix = random_prefix();
    let a = node(&url, &prefix, "a").await;
    let b = node(&url, &prefix, "b").await;
    let topic = Topic::User(5);
    let channel = format!("{prefix}:user:5");

    let mut first = b.attach(&topic, 1, 5);
    let _second = b.attach(&topic, 2, 5);
    expect_numsub(&url, &channel, 1).await;
    // Give A time to subscribe by mistake before checking it did not.
    sleep(QUIET).await;
    assert_eq!(numsub(&url, &channel).await, 1, "A has no sockets on it");

    // Publishing needs no interest: A reaches B's sockets all the same.
    a.send(&topic, r#"{"to":5}"#, None);
    assert_eq!(first.next().await, r#"{"to":5}"#);

    let _on_a = a.attach(&topic, 3, 5);
    expect_numsub(&url, &channel, 2).await;
    a.subscribers.unsubscribe(&topic, 3);
    expect_numsub(&url, &channel, 1).await;

    // One socket leaving is not the last one leaving.
    b.subscribers.unsubscribe(&topic, 1);
    sleep(QUIET).await;
    assert_eq!(numsub(&url, &channel).await, 1);
    b.subscribers.unsubscribe(&topic, 2);
    expect_numsub(&url, &channel, 0).await;
}

/// A storm of sockets arriving and leaving reaches the listener faster
/// than one round trip each; it takes what is waiting in one SUBSCRIBE and
/// one UNSUBSCRIBE, and ends up listening to exactly the topics that still
/// have local sockets, each of which hears what is published to it.
#[tokio::test]
async fn a_storm_of_arrivals_and_departures_ends_in_the_right_channels() {
    const USERS: i64 = 300;
    let url = shared_redis().await;
    let prefix = random_prefix();
    let a = node(&url, &prefix, "a").await;
    let b = node(&url, &prefix, "b").await;
    let mut kept = Vec::new();
    for user in 1..=USERS {
        let sock = b.attach(&Topic::User(user), user as u64, user);
        if user % 3 == 0 {
            // Gone again before the listener has caught up.
            b.subscribers.unsubscribe(&Topic::User(user), user as u64);
        } else {
            kept.push((user, sock));
        }
    }
    for user in 1..=USERS {
        let channel = format!("{prefix}:user:{user}");
        expect_numsub(&url, &channel, i64::from(user % 3 != 0)).await;
    }
    for (user, _) in &kept {
        a.send(&Topic::User(*user), &format!(r#"{{"to":{user}}}"#), None);
    }
    for (user, sock) in &mut kept {
        assert_eq!(sock.next().await, format!(r#"{{"to":{user}}}"#));
    }
}

#[tokio::test]
async fn buses_recover_when_redis_restarts() {
    let mut server = ThrowawayRedis::start().await;
    let url = server.url();
    let prefix = random_prefix();
    let a = node(&url, &prefix, "a").await;
    let b = node(&url, &prefix, "b").await;
    let topic = room("resilient");
    let channel = format!("{prefix}:room:resilient");
    let mut on_a = a.attach(&topic, 1, 1);
    let mut on_b = b.attach(&topic, 2, 2);
    expect_numsub(&url, &channel, 2).await;
    a.send(&topic, "before", None);
    assert_eq!(on_a.next().await, "before");
    assert_eq!(on_b.next().await, "before");

    server.stop();
    let deadline = Instant::now() + WAIT;
    while a.bus.is_connected() || b.bus.is_connected() {
        assert!(
            Instant::now() < deadline,
            "buses still say they are connected"
        );
        sleep(Duration::from_millis(20)).await;
    }
    // Local delivery does not wait for Redis.
    a.send(&topic, "during", None);
    assert_eq!(on_a.next().await, "during");
    // A socket that joins during the outage is listened for on reconnect.
    let mut late_on_b = b.attach(&room("late"), 3, 3);

    server.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut probe = 0;
    'resumed: loop {
        assert!(
            Instant::now() < deadline,
            "cross-node delivery did not resume"
        );
        probe += 1;
        a.send(&topic, &format!("probe {probe}"), None);
        let waited = Instant::now() + Duration::from_millis(200);
        while let Ok(Some(Outbound::Frame(frame))) = timeout(
            waited.saturating_duration_since(Instant::now()),
            on_b.rx.recv(),
        )
        .await
        {
            if frame.as_str().starts_with("probe ") {
                break 'resumed;
            }
        }
    }
    while on_a.rx.try_recv().is_ok() {}
    expect_numsub(&server.url(), &channel, 2).await;
    expect_numsub(&server.url(), &format!("{prefix}:room:late"), 1).await;
    // An idle publisher finds Redis back at its next ping, within a second.
    let deadline = Instant::now() + WAIT;
    while !(a.bus.is_connected() && b.bus.is_connected()) {
        assert!(
            Instant::now() < deadline,
            "buses do not say they are connected again"
        );
        sleep(Duration::from_millis(20)).await;
    }

    a.send(&room("late"), "after", None);
    assert_eq!(late_on_b.next().await, "after");
}
