//! The pipes between the parent and its workers: what travels over them,
//! framed as JSON lines, and how each end takes the other going away.
//!
//! - parent to worker, on stdin: the [`Spec`] (with the users' tokens,
//!   which so never appear on a command line); later `go`, once every
//!   worker has opened its sockets, so that they all hold over one window;
//! - worker to parent, on stdout: [`Up::Progress`] while connecting,
//!   [`Up::Ready`] at the gate, then [`Up::Done`] with its report and its
//!   latency histograms bucket by bucket, so merged percentiles are exact.
//!
//! A worker exits as soon as its stdin closes: its parent is gone, however
//! it went. The parent kills its workers when it drops them, so an error on
//! its side takes them down too; ctrl-c reaches the whole process group.
//!
//! Both ends live here side by side, so that what one writes can be read
//! against what the other expects; the one exception is `go`, which the
//! parent writes where it decides that the load starts. This file carries
//! messages and must not decide what is in them or when they are sent:
//! that is the plan's, the parent's and the child's, and keeping it to the
//! wire means it changes only when the wire does.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

use crate::ctx::{EnvOptions, Given};
use crate::report::Report;
use crate::scenario::Scenario;

/// The hidden subcommand a worker runs as.
pub const COMMAND: &str = "worker";

/// Exit status of a worker whose parent went away.
const EXIT_ORPHANED: i32 = 3;

/// How often a connecting worker tells its parent how far it got.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What a worker is told to do.
#[derive(Serialize, Deserialize)]
pub(super) struct Spec {
    pub(super) index: usize,
    pub(super) env: EnvOptions,
    /// The worker's share of the run's scenario.
    pub(super) part: Scenario,
    /// By the name of each scenario the share runs (several for a mix).
    pub(super) given: BTreeMap<String, Given>,
}

/// What a worker tells its parent.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Up {
    /// Sockets that connected or failed to, so far.
    Progress {
        answered: u64,
    },
    /// Sockets opened; waiting for `go`.
    Ready {
        open: i64,
    },
    Done(Box<Summary>),
}

#[derive(Serialize, Deserialize)]
pub(super) struct Summary {
    pub(super) report: Report,
    /// When the worker's clock (its report's time zero) started, in
    /// seconds since the Unix epoch; places its times on the parent's.
    pub(super) epoch_unix_secs: f64,
    /// Each latency as [`crate::stats::buckets`].
    pub(super) latency_buckets: BTreeMap<String, Vec<(u64, u64)>>,
}

/// Set once the worker has sent its report: its stdin closing is then the
/// parent letting it go, not the parent dying.
pub(super) static REPORTED: AtomicBool = AtomicBool::new(false);

pub(super) fn orphaned(why: &str) -> ! {
    eprintln!(
        "meshi-loadtest worker {}: {why}; stopping",
        std::process::id()
    );
    std::process::exit(EXIT_ORPHANED)
}

/// Writes one line to the parent. Nobody to report to means nobody to
/// work for, so a failed write ends the worker.
pub(super) fn send(up: &Up) {
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, up)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if written.is_err() {
        orphaned("its parent stopped listening");
    }
}

pub(super) fn unix_secs_at(instant: Instant) -> f64 {
    let at = SystemTime::now()
        .checked_sub(instant.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads the spec line, then waits for `go`; exits the process when stdin
/// closes before the report is out.
pub(super) fn listen_to_parent(spec: oneshot::Sender<String>, go: oneshot::Sender<()>) {
    let mut lines = std::io::stdin().lock().lines();
    match lines.next() {
        Some(Ok(line)) => {
            let _ = spec.send(line);
        }
        // The caller explains a missing spec.
        _ => return,
    }
    let mut go = Some(go);
    loop {
        match lines.next() {
            Some(Ok(line)) if line.trim() == "go" => {
                if let Some(go) = go.take() {
                    let _ = go.send(());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                if !REPORTED.load(Ordering::SeqCst) {
                    orphaned("its parent went away");
                }
                return;
            }
        }
    }
}

pub(super) struct Worker {
    pub(super) child: Child,
    /// Kept open while the worker runs: closing it tells the worker its
    /// parent is gone.
    pub(super) stdin: Option<ChildStdin>,
}

pub(super) enum Heard {
    Up(Up),
    Garbled(String),
    Ended,
}

pub(super) async fn start(
    exe: &Path,
    index: usize,
    spec: &Spec,
    heard: mpsc::UnboundedSender<(usize, Heard)>,
) -> Result<Worker> {
    let mut line = serde_json::to_vec(spec).context("writing a worker spec")?;
    line.push(b'\n');
    let mut child = Command::new(exe)
        .arg(COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting worker {index} ({})", exe.display()))?;
    let mut stdin = child.stdin.take().context("the worker's stdin")?;
    let stdout = child.stdout.take().context("the worker's stdout")?;
    tokio::spawn(listen(index, stdout, heard));
    stdin
        .write_all(&line)
        .await
        .with_context(|| format!("sending worker {index} its spec"))?;
    stdin.flush().await?;
    Ok(Worker {
        child,
        stdin: Some(stdin),
    })
}

async fn listen(index: usize, stdout: ChildStdout, heard: mpsc::UnboundedSender<(usize, Heard)>) {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let what = match lines.next_line().await {
            Ok(Some(line)) => match serde_json::from_str::<Up>(&line) {
                Ok(up) => Heard::Up(up),
                Err(err) => {
                    let start: String = line.chars().take(200).collect();
                    Heard::Garbled(format!("{err}: {start}"))
                }
            },
            Ok(None) | Err(_) => Heard::Ended,
        };
        let ended = matches!(what, Heard::Ended);
        if heard.send((index, what)).is_err() || ended {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back() {
        let line = serde_json::to_string(&Up::Ready { open: 7 }).unwrap();
        assert!(matches!(
            serde_json::from_str::<Up>(&line).unwrap(),
            Up::Ready { open: 7 }
        ));
    }
}
