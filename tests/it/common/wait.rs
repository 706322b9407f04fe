//! Bounded waits: for a future, for a condition polled over time, and for
//! frames on a socket over longer than one receive timeout. Every one
//! fails saying what it waited for.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{sleep, timeout, Instant};

use super::{Ended, WsClient};

/// Awaits `work` for at most `wait`; `None` when it did not finish.
/// `WsClient` reads are cancel-safe: frames read while waiting stay pending.
pub async fn within<T>(wait: Duration, work: impl std::future::Future<Output = T>) -> Option<T> {
    timeout(wait, work).await.ok()
}

/// Polls `check` every 100 ms until it returns `Ok`, failing with `what`
/// and the last `Err` after `wait`.
pub async fn eventually<T, F, Fut>(wait: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + wait;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("{what} did not happen within {wait:?}; last seen: {last}");
                }
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// The next frame matching `wanted` within `bound` (which may exceed the
/// per-frame receive timeout); fails naming `what`.
pub async fn wait_for(
    client: &mut WsClient,
    bound: Duration,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!(
                "{what}: nothing arrived within {bound:?}; frames seen meanwhile: {:?}",
                client.pending()
            );
        }
        let slice = left.min(Duration::from_secs(3));
        if let Some(frame) = within(slice, client.next_matching(&wanted)).await {
            return frame;
        }
    }
}

/// Asserts that no frame matching `unwanted` arrives within `wait` (nor is
/// already pending).
pub async fn assert_quiet(
    client: &mut WsClient,
    wait: Duration,
    what: &str,
    unwanted: impl Fn(&Value) -> bool,
) {
    if let Some(frame) = client.pending().iter().find(|f| unwanted(f)) {
        panic!("{what}: unexpected {frame}");
    }
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let slice = left.min(Duration::from_secs(3));
        if let Some(frame) = within(slice, client.next_matching(&unwanted)).await {
            panic!("{what}: unexpected {frame}");
        }
    }
}

/// Sends `frame` with the string `reference` and waits up to `bound` for
/// the reply to it.
pub async fn request_within(
    client: &mut WsClient,
    mut frame: Value,
    reference: &str,
    bound: Duration,
) -> Value {
    frame["ref"] = json!(reference);
    client.send(frame.clone()).await;
    wait_for(client, bound, &format!("the reply to {frame}"), |f| {
        f["ref"] == reference && (f["type"] == "ok" || f["type"] == "error")
    })
    .await
}

/// Reads every frame until the server closes the socket (within `bound`);
/// returns them with how the socket ended. Pending frames come first.
pub async fn read_until_closed(client: &mut WsClient, bound: Duration) -> (Vec<Value>, Ended) {
    let mut frames = Vec::new();
    while !client.pending().is_empty() {
        frames.push(client.next().await);
    }
    let deadline = Instant::now() + bound;
    loop {
        let next = tokio::time::timeout_at(deadline, client.read_raw())
            .await
            .unwrap_or_else(|_| {
                panic!("the server did not close the socket within {bound:?}; got {frames:?}")
            });
        match next {
            Ok(frame) => frames.push(frame),
            Err(ended) => return (frames, ended),
        }
    }
}
