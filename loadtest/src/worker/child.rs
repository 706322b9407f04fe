//! One worker process: it reads its spec, runs its share in this process
//! as a run of its own would, and sends its summary back. Its run reaches
//! the parent through the context's [`Link`], which is implemented here.
//!
//! A worker runs what its spec says and must not provision users or split
//! anything itself: the parent did both once for every worker, and a worker
//! deciding for itself could break the split that keeps each delivery
//! check inside one process.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::future::BoxFuture;
use tokio::sync::{oneshot, OnceCell};

use super::ipc::{
    listen_to_parent, orphaned, send, unix_secs_at, Spec, Summary, Up, COMMAND, PROGRESS_EVERY,
    REPORTED,
};
use crate::ctx::{Env, Given, Link};
use crate::measure;
use crate::scenario::MAX_DURATION_SECS;
use crate::stats::{self, Count, Lat, Stats};

/// A worker's side of the conversation with its parent, held by its run.
struct StdioLink {
    given: BTreeMap<String, Given>,
    go: Mutex<Option<oneshot::Receiver<()>>>,
    ready: OnceCell<()>,
}

impl Link for StdioLink {
    fn given(&self, part: &str) -> Option<&Given> {
        self.given.get(part)
    }

    fn ready_and_wait(&self, open: i64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.ready
                .get_or_init(|| async {
                    send(&Up::Ready { open });
                    let go = self.go.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(go) = go {
                        let limit = Duration::from_secs_f64(MAX_DURATION_SECS);
                        if !matches!(tokio::time::timeout(limit, go).await, Ok(Ok(()))) {
                            orphaned("no word from the parent");
                        }
                    }
                })
                .await;
        })
    }

    fn report_progress(&self, stats: Arc<Stats>) -> BoxFuture<'static, ()> {
        Box::pin(report_progress(stats))
    }
}

/// Sends [`Up::Progress`] until aborted.
async fn report_progress(stats: Arc<Stats>) {
    let mut last = None;
    loop {
        let answered = stats.count(Count::Connected) + stats.count(Count::ConnectFailed);
        if last != Some(answered) {
            send(&Up::Progress { answered });
            last = Some(answered);
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// Runs this process as a worker: reads its spec on stdin, runs its share
/// and writes its summary on stdout. Says whether its share passed.
pub async fn serve() -> Result<bool> {
    let (spec_tx, spec_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel();
    // A plain thread rather than tokio's stdin: a read blocked on a pipe
    // would otherwise hold up the runtime's shutdown until the parent
    // closes it.
    std::thread::spawn(move || listen_to_parent(spec_tx, go_tx));
    let Ok(spec) = spec_rx.await else {
        bail!(
            "no worker spec on stdin: `{COMMAND}` is started by meshi-loadtest --workers, \
             not by hand"
        );
    };
    let spec: Spec = serde_json::from_str(&spec).context("reading the worker spec")?;
    let index = spec.index;
    let env = Env::new(spec.env).with_context(|| format!("worker {index}"))?;
    let link = StdioLink {
        given: spec.given,
        go: Mutex::new(Some(go_rx)),
        ready: OnceCell::new(),
    };
    let (report, ctx) = measure::run_in(env, spec.part, Some(Box::new(link)))
        .await
        .with_context(|| format!("worker {index}"))?;
    let latency_buckets = Lat::ALL
        .iter()
        .map(|&lat| (lat.name().to_owned(), ctx.stats.latency(lat)))
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| (name, stats::buckets(&h)))
        .collect();
    let passed = report.passed;
    let summary = Summary {
        report,
        epoch_unix_secs: unix_secs_at(ctx.stats.epoch()),
        latency_buckets,
    };
    // Before sending: the parent may close stdin the moment it has read
    // the report.
    REPORTED.store(true, Ordering::SeqCst);
    send(&Up::Done(Box::new(summary)));
    Ok(passed)
}
