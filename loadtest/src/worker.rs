//! A run spread over worker processes, and one worker of such a run.
//!
//! One process holds at most as many sockets as it may open files, and the
//! hard limit on those is not the tool's to raise. With `--workers N` the
//! parent provisions the users once, then starts its own executable N times
//! as hidden `worker` subprocesses, each with an equal share of the
//! sockets and of the rate, and source addresses of its own. The
//! parent and a worker speak JSON lines:
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
//! `connect` splits its sockets. `rooms` and `pairs` check deliveries
//! between their sockets (the members of a room, the two sides of a pair),
//! so they split along those: each worker owns whole rooms, with all of
//! their members and publishers, or whole pairs, and every check stays
//! inside one process. The parent registers the users (and matches the
//! pairs over REST) once. `churn` and `mixed` refuse `--workers` above 1.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::report::{Phase, Report, Timeline};
use crate::run::{self, Ctx, Env, EnvOptions};
use crate::scenario::{
    connect, pairs, rooms, ConnectOpts, PairsOpts, RoomsOpts, Scenario, MAX_DURATION_SECS,
};
use crate::stats::{self, Count, Lat, Percentiles, Stats};
use crate::system;
use crate::target;

/// The most worker processes a run starts.
pub const MAX_WORKERS: usize = 64;

/// The hidden subcommand a worker runs as.
pub const COMMAND: &str = "worker";

/// Files a worker opens besides its sockets: stdio, the poller, `/proc`.
const FD_SLACK: u64 = 64;

/// Exit status of a worker whose parent went away.
const EXIT_ORPHANED: i32 = 3;

/// Figures of a worker's report that count its own sockets, so add up
/// over the workers.
const SUMMED_FIGURES: &[&str] = &["connect_sockets_open", "rooms_member_sockets"];

/// How often a connecting worker tells its parent how far it got.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What a worker is told to do.
#[derive(Serialize, Deserialize)]
struct Spec {
    index: usize,
    env: EnvOptions,
    part: Part,
    given: Given,
}

/// A worker's share of the run's scenario.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Part {
    Connect(ConnectOpts),
    Rooms(RoomsOpts),
    Pairs(PairsOpts),
}

/// What the parent provisioned for a worker.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Given {
    /// Session tokens or minted JWTs; socket `i` of the worker uses
    /// `tokens[i % len]` (for pairs: `a, b` of each pair in turn).
    pub tokens: Vec<String>,
    /// Index among the run's of the worker's first unit (socket, room or
    /// pair).
    pub first: usize,
    /// For pairs: the conversation of each of the worker's pairs.
    pub conversations: Vec<String>,
}

/// What a worker tells its parent.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Up {
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
struct Summary {
    report: Report,
    /// When the worker's clock (its report's time zero) started, in
    /// seconds since the Unix epoch; places its times on the parent's.
    epoch_unix_secs: f64,
    /// Each latency as [`stats::buckets`].
    latency_buckets: BTreeMap<String, Vec<(u64, u64)>>,
}

/// A worker's side of the conversation with its parent, held by its run.
pub(crate) struct Link {
    given: Given,
    go: Mutex<Option<oneshot::Receiver<()>>>,
    ready: OnceCell<()>,
}

impl Link {
    pub(crate) fn given(&self) -> &Given {
        &self.given
    }

    /// Tells the parent this worker's sockets are open, then waits for the
    /// parent's `go` (once, however often it is called).
    pub(crate) async fn ready_and_wait(&self, open: i64) {
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
    }
}

/// Set once the worker has sent its report: its stdin closing is then the
/// parent letting it go, not the parent dying.
static REPORTED: AtomicBool = AtomicBool::new(false);

fn orphaned(why: &str) -> ! {
    eprintln!(
        "meshi-loadtest worker {}: {why}; stopping",
        std::process::id()
    );
    std::process::exit(EXIT_ORPHANED)
}

/// Writes one line to the parent. Nobody to report to means nobody to
/// work for, so a failed write ends the worker.
fn send(up: &Up) {
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, up)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if written.is_err() {
        orphaned("its parent stopped listening");
    }
}

/// Sends [`Up::Progress`] until aborted.
pub(crate) async fn report_progress(stats: Arc<Stats>) {
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

fn unix_secs_at(instant: Instant) -> f64 {
    let at = SystemTime::now()
        .checked_sub(instant.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
    let link = Link {
        given: spec.given,
        go: Mutex::new(Some(go_rx)),
        ready: OnceCell::new(),
    };
    let scenario = match spec.part {
        Part::Connect(opts) => Scenario::Connect(opts),
        Part::Rooms(opts) => Scenario::Rooms(opts),
        Part::Pairs(opts) => Scenario::Pairs(opts),
    };
    let (report, ctx) = run::run_in(env, scenario, Some(link))
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

/// Reads the spec line, then waits for `go`; exits the process when stdin
/// closes before the report is out.
fn listen_to_parent(spec: oneshot::Sender<String>, go: oneshot::Sender<()>) {
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

/// What a scenario splits into: units no check spans (a socket, a room
/// with its members, a pair), each of `sockets` sockets.
#[derive(Debug, Clone, Copy)]
struct Units {
    name: &'static str,
    count: usize,
    sockets: usize,
}

impl Units {
    fn of(scenario: &Scenario) -> Option<Units> {
        let (name, count, sockets) = match scenario {
            Scenario::Connect(o) => ("sockets", o.sockets, 1),
            Scenario::Rooms(o) => ("rooms", o.rooms, o.members),
            Scenario::Pairs(o) => ("pairs", o.pairs, 2),
            Scenario::Churn(_) | Scenario::Mixed(_) => return None,
        };
        Some(Units {
            name,
            count,
            sockets,
        })
    }
}

/// One worker's part of the run.
#[derive(Debug, Clone, PartialEq)]
struct Share {
    /// Index of its first unit among all of the run's.
    first: usize,
    units: usize,
    sockets: usize,
    sources: Vec<IpAddr>,
}

/// Splits the units over `workers` and gives each its source addresses:
/// every worker its own, so that no two compete for one address's
/// ephemeral ports.
fn plan(
    options: &EnvOptions,
    targets_v4_loopback: bool,
    units: Units,
    hard_nofile: u64,
    ports_per_source: usize,
) -> Result<Vec<Share>> {
    let workers = options.workers;
    let total = units.count;
    if total < workers {
        bail!(
            "{total} {} cannot be shared by {workers} workers; use --workers {total} or fewer",
            units.name
        );
    }
    let shared: Vec<usize> = (0..workers)
        .map(|w| total / workers + usize::from(w < total % workers))
        .collect();
    let counts: Vec<usize> = shared.iter().map(|&n| n * units.sockets).collect();
    let sockets = total * units.sockets;
    let largest = counts[0] as u64;
    if largest + FD_SLACK > hard_nofile {
        let fits = hard_nofile.saturating_sub(FD_SLACK).max(1) as usize;
        bail!(
            "each of {workers} workers would hold {largest} sockets, but a process may open only \
             {hard_nofile} files here; use --workers {} or more",
            sockets.div_ceil(fits)
        );
    }
    // Leave a tenth of the range to sockets of earlier runs still in
    // TIME_WAIT and to other programs.
    let ports = (ports_per_source * 9 / 10).max(1);
    let given = target::sources(
        &options.source_ips,
        options.sources,
        options.i_own_this_target,
    )?;
    let sources: Vec<Vec<IpAddr>> = if !given.is_empty() {
        if given.len() < workers {
            bail!(
                "--workers {workers} needs at least {workers} source addresses (one per worker) \
                 from --sources or --source-ip, or none at all, to give each worker its own \
                 127.0.0.x"
            );
        }
        (0..workers)
            .map(|w| given.iter().skip(w).step_by(workers).copied().collect())
            .collect()
    } else if targets_v4_loopback {
        let mut next = 1usize;
        let mut sources = Vec::with_capacity(workers);
        for &count in &counts {
            let take = count.div_ceil(ports).max(1);
            if next + take > 255 {
                bail!("the workers would need more source addresses than 127.0.0.1-254");
            }
            sources.push(
                (next..next + take)
                    .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8)))
                    .collect(),
            );
            next += take;
        }
        sources
    } else {
        // Without IPv4 loopback targets there is no 127.0.0.x to bind to;
        // the kernel then picks ports per destination.
        vec![Vec::new(); workers]
    };
    let mut first = 0;
    let mut shares = Vec::with_capacity(workers);
    for (w, ((count, sources), share)) in counts.into_iter().zip(sources).zip(shared).enumerate() {
        if !sources.is_empty() && count.div_ceil(sources.len()) > ports {
            bail!(
                "worker {w} would open {} sockets from each of its {} source addresses, more \
                 than the about {ports} ephemeral ports each has; give more --sources",
                count.div_ceil(sources.len()),
                sources.len()
            );
        }
        shares.push(Share {
            first,
            units: share,
            sockets: count,
            sources,
        });
        first += share;
    }
    Ok(shares)
}

/// Runs `scenario` over `env.options.workers` worker processes and merges
/// their reports into one.
pub(crate) async fn run_parent(env: Env, scenario: Scenario) -> Result<Report> {
    let workers = env.options.workers;
    let Some(units) = Units::of(&scenario) else {
        bail!(
            "--workers {workers}: only connect, rooms and pairs run over worker processes; {} \
             checks deliveries across all of its sockets, so one process must hold them all \
             (use --workers 1)",
            scenario.name()
        );
    };
    scenario.validate()?;
    if let Scenario::Rooms(opts) = &scenario {
        opts.check_rate(env.options.socket_rate)?;
    }
    let nofile = system::raise_nofile_limit();
    let v4_loopback = env.targets.iter().all(|t| t.loopback && t.addr.is_ipv4());
    let shares = plan(
        &env.options,
        v4_loopback,
        units,
        system::nofile_hard_limit().unwrap_or(u64::MAX),
        system::ephemeral_ports(),
    )?;
    let exe = match &env.options.worker_exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().context("finding this executable to start workers")?,
    };
    let started_at = run::now_rfc3339();
    let ctx = Arc::new(Ctx::new(env, 1, None));
    let own_before = system::own_usage();
    let server_before = ctx.server_sample();
    let (stop, stopped) = oneshot::channel();
    let sampler = tokio::spawn(run::sample(ctx.clone(), stopped));

    let outcome = drive(&ctx, &scenario, &shares, &exe).await;

    let _ = stop.send(());
    let timeline = sampler.await.unwrap_or_default();
    let summaries = outcome?;
    let own_after = system::own_usage();
    let server_after = ctx.server_sample();
    let mut report = run::build_report(
        &ctx,
        &scenario,
        started_at,
        nofile,
        (own_before, own_after),
        server_before.zip(server_after),
        timeline,
    );
    merge(&mut report, &ctx, units, &shares, summaries);
    report.warnings.clear();
    report.failures.clear();
    report.judge(&scenario.expected_counts());
    Ok(report)
}

struct Worker {
    child: Child,
    /// Kept open while the worker runs: closing it tells the worker its
    /// parent is gone.
    stdin: Option<ChildStdin>,
}

enum Heard {
    Up(Up),
    Garbled(String),
    Ended,
}

/// The users the parent provisioned for the whole run.
enum Provisioned {
    /// Socket `i` of the run uses `tokens[i % len]`.
    Tokens(Vec<String>),
    Pairs(Vec<pairs::Matched>),
}

/// Registers (or signs on) the run's users once, and matches the pairs.
async fn provision(ctx: &Ctx, scenario: &Scenario) -> Result<Provisioned> {
    Ok(match scenario {
        Scenario::Connect(opts) => Provisioned::Tokens(connect::register(ctx, opts).await?),
        Scenario::Rooms(opts) => Provisioned::Tokens(rooms::register(ctx, opts, 'r').await?),
        Scenario::Pairs(opts) => Provisioned::Pairs(pairs::match_pairs(ctx, opts).await?),
        Scenario::Churn(_) | Scenario::Mixed(_) => {
            bail!("{} does not run over worker processes", scenario.name())
        }
    })
}

/// Provisions the users, starts the workers, lets them load together and
/// collects their summaries.
async fn drive(
    ctx: &Arc<Ctx>,
    scenario: &Scenario,
    shares: &[Share],
    exe: &Path,
) -> Result<Vec<Summary>> {
    let provisioned = provision(ctx, scenario).await?;
    if let Scenario::Rooms(opts) = scenario {
        // The whole run's targets; the workers' shares add up to them.
        ctx.figure("rooms_target_msgs_per_sec", opts.rate);
        ctx.figure(
            "rooms_target_deliveries_per_sec",
            opts.rate * opts.members as f64,
        );
    }
    let rss_before = ctx.server_sample().map(|s| s.rss_kib);
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let mut workers = Vec::with_capacity(shares.len());
    for (index, share) in shares.iter().enumerate() {
        let spec = spec_for(ctx, scenario, shares.len(), index, share, &provisioned)?;
        workers.push(start(exe, index, &spec, heard_tx.clone()).await?);
    }
    drop(heard_tx);

    let n = workers.len();
    let sockets: usize = shares.iter().map(|s| s.sockets).sum();
    let name = scenario.name();
    let (opening, loading, load_secs, open_secs) = match scenario {
        Scenario::Connect(opts) => (
            "connect: open".to_owned(),
            "connect: hold".to_owned(),
            opts.hold,
            opts.sockets as f64 / opts.rate,
        ),
        Scenario::Rooms(RoomsOpts { duration, .. })
        | Scenario::Pairs(PairsOpts { duration, .. }) => (
            format!("{name}: connect"),
            format!("{name}: load"),
            *duration,
            // Sockets open as fast as they answer; a rooms worker also
            // opens and joins its rooms.
            sockets as f64 / 50.0,
        ),
        Scenario::Churn(_) | Scenario::Mixed(_) => bail!("{name} does not run over workers"),
    };
    // Generous, since every wait inside a worker is bounded already; this
    // only catches a worker that hangs without dying.
    let limit =
        Duration::from_secs_f64(open_secs + load_secs + 6.0 * ctx.timeout().as_secs_f64() + 60.0);
    let deadline = Instant::now() + limit;
    let mut answered = vec![0u64; n];
    let mut ready = vec![None::<i64>; n];
    let mut summaries: Vec<Option<Summary>> = (0..n).map(|_| None).collect();
    let mut reported = 0;
    let bar = ctx.env.progress.bar(sockets as u64, &opening);
    let mut hold: Option<(indicatif::ProgressBar, Instant)> = None;
    while reported < n {
        let next = tokio::time::timeout(PROGRESS_EVERY, heard.recv()).await;
        if let Some((bar, since)) = &hold {
            bar.set_position(since.elapsed().as_millis() as u64);
        }
        if Instant::now() >= deadline {
            bail!(
                "the workers did not finish within {:.0} s",
                limit.as_secs_f64()
            );
        }
        let Ok(next) = next else { continue };
        let Some((index, what)) = next else {
            bail!("the workers stopped talking before they all reported");
        };
        match what {
            Heard::Up(Up::Progress { answered: count }) => {
                answered[index] = count;
                bar.set_position(answered.iter().sum());
            }
            Heard::Up(Up::Ready { open }) => {
                ready[index] = Some(open);
                if ready.iter().all(Option::is_some) && hold.is_none() {
                    bar.finish_and_clear();
                    if let (Some(before), Scenario::Connect(_)) = (rss_before, scenario) {
                        let opened = ready.iter().flatten().sum::<i64>().max(0) as u64;
                        connect::server_memory_figures(ctx, before, opened).await;
                    }
                    for (index, worker) in workers.iter_mut().enumerate() {
                        if let Some(stdin) = &mut worker.stdin {
                            let sent = async {
                                stdin.write_all(b"go\n").await?;
                                stdin.flush().await
                            };
                            sent.await
                                .with_context(|| format!("telling worker {index} to go"))?;
                        }
                    }
                    let length = Duration::from_secs_f64(load_secs);
                    hold = Some((ctx.env.progress.timer(length, &loading), Instant::now()));
                }
            }
            Heard::Up(Up::Done(summary)) => {
                if summaries[index].replace(*summary).is_none() {
                    reported += 1;
                }
            }
            Heard::Garbled(line) => bail!("worker {index} said something unexpected: {line}"),
            Heard::Ended => {
                if summaries[index].is_none() {
                    let status =
                        tokio::time::timeout(Duration::from_secs(5), workers[index].child.wait())
                            .await;
                    let status = match status {
                        Ok(Ok(status)) => status.to_string(),
                        _ => "still running".to_owned(),
                    };
                    bail!(
                        "worker {index} stopped without a report ({status}); see its error above"
                    );
                }
            }
        }
    }
    bar.finish_and_clear();
    if let Some((bar, _)) = hold {
        bar.finish_and_clear();
    }
    for worker in &mut workers {
        worker.stdin = None;
    }
    for worker in &mut workers {
        let waited = tokio::time::timeout(Duration::from_secs(5), worker.child.wait()).await;
        if !matches!(waited, Ok(Ok(_))) {
            let _ = worker.child.start_kill();
        }
    }
    Ok(summaries.into_iter().flatten().collect())
}

/// The tokens of `count` sockets from socket `first` of the run on, where
/// socket `i` of the run uses `tokens[i % len]`: as many as the worker's
/// socket `i` needs to use `given[i % given.len()]` and get the same user.
fn tokens_from(tokens: &[String], first: usize, count: usize) -> Vec<String> {
    let count = tokens.len().min(count);
    (0..count)
        .map(|i| tokens[(first + i) % tokens.len()].clone())
        .collect()
}

fn spec_for(
    ctx: &Ctx,
    scenario: &Scenario,
    workers: usize,
    index: usize,
    share: &Share,
    provisioned: &Provisioned,
) -> Result<Spec> {
    let mut env = ctx.env.options.clone();
    env.workers = 1;
    env.sources = 0;
    env.source_ips = share.sources.clone();
    // The parent reads the server: one reading for all the sockets.
    env.server_pid = None;
    env.quiet = true;
    env.worker_exe = None;
    // The parent provisioned the users; a worker never needs the secret.
    env.jwt_secret_file = None;
    env.jwt_issuer = None;
    env.jwt_audience = None;
    env.connect_concurrency = env.connect_concurrency.div_ceil(workers).max(1);
    let mut given = Given {
        first: share.first,
        ..Given::default()
    };
    match provisioned {
        // Sockets keep the users they would have in one process.
        Provisioned::Tokens(tokens) => {
            let first_socket = match scenario {
                Scenario::Rooms(opts) => share.first * opts.members,
                _ => share.first,
            };
            given.tokens = tokens_from(tokens, first_socket, share.sockets);
        }
        Provisioned::Pairs(pairs) => {
            for pair in &pairs[share.first..share.first + share.units] {
                given.tokens.extend(pair.tokens.iter().cloned());
                given.conversations.push(pair.conversation.clone());
            }
        }
    }
    let part_of = |total: usize| share.units as f64 / total as f64;
    let part = match scenario {
        Scenario::Rooms(opts) => Part::Rooms(RoomsOpts {
            rooms: share.units,
            users: None,
            rate: opts.rate * part_of(opts.rooms),
            ..opts.clone()
        }),
        Scenario::Pairs(opts) => Part::Pairs(PairsOpts {
            pairs: share.units,
            ..opts.clone()
        }),
        Scenario::Connect(opts) => Part::Connect(ConnectOpts {
            sockets: share.sockets,
            users: None,
            rate: opts.rate * part_of(opts.sockets),
            hold: opts.hold,
        }),
        Scenario::Churn(_) | Scenario::Mixed(_) => {
            bail!("{} does not run over workers", scenario.name())
        }
    };
    Ok(Spec {
        index,
        env,
        part,
        given,
    })
}

async fn start(
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

/// Adds the workers' results to the parent's report (which holds the
/// registration, the server's readings and the parent's own cost).
fn merge(report: &mut Report, ctx: &Ctx, units: Units, shares: &[Share], summaries: Vec<Summary>) {
    let epoch = unix_secs_at(ctx.stats.epoch());
    let mut latencies: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut phases: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut load: Option<(f64, f64)> = None;
    let mut points = points_of(&report.timeline, 0.0);
    // Figures that count the workers' sockets add up; the others are the
    // parent's, for the whole run.
    let mut summed: BTreeMap<String, f64> = BTreeMap::new();
    let usage = &mut report.tool_usage;
    let (mut user, mut system, mut rss) = (
        usage.cpu_user_secs,
        usage.cpu_system_secs,
        usage.max_rss_kib,
    );
    for summary in summaries {
        let offset = summary.epoch_unix_secs - epoch;
        let part = summary.report;
        add_all(&mut report.counters, part.counters);
        for (name, rate) in part.rates {
            *report.rates.entry(name).or_default() += rate;
        }
        for (name, buckets) in summary.latency_buckets {
            let h = stats::from_buckets(&buckets);
            match latencies.get_mut(&name) {
                Some(sum) => {
                    let _ = sum.add(&h);
                }
                None => {
                    latencies.insert(name, h);
                }
            }
        }
        for phase in part.phases {
            let start = phase.start_secs + offset;
            let end = start + phase.secs;
            let span = phases.entry(phase.name).or_insert((start, end));
            *span = (span.0.min(start), span.1.max(end));
        }
        if part.load_secs > 0.0 {
            let start = part.load_start_secs + offset;
            let end = start + part.load_secs;
            load = Some(load.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
        }
        for (name, value) in part.figures {
            if SUMMED_FIGURES.contains(&name.as_str()) {
                *summed.entry(name).or_default() += value;
            }
        }
        report.correctness.add(&part.correctness);
        add_all(&mut report.errors_by_code, part.errors_by_code);
        add_all(&mut report.closes_by_code, part.closes_by_code);
        add_all(&mut report.transport_errors, part.transport_errors);
        user += part.tool_usage.cpu_user_secs;
        system += part.tool_usage.cpu_system_secs;
        rss += part.tool_usage.max_rss_kib;
        points.extend(points_of(&part.timeline, offset));
        for note in part.notes {
            if !report.notes.contains(&note) {
                report.notes.push(note);
            }
        }
    }
    report.latency_ms = latencies
        .iter()
        .map(|(name, h)| (name.clone(), Percentiles::of(h)))
        .collect();
    if let Some((start, end)) = load {
        report.load_start_secs = start.max(0.0);
        report.load_secs = end - start;
    }
    let mut phases: Vec<Phase> = phases
        .into_iter()
        .map(|(name, (start, end))| Phase {
            name,
            start_secs: start.max(0.0),
            secs: end - start,
        })
        .collect();
    phases.sort_by(|a, b| a.start_secs.total_cmp(&b.start_secs));
    report.phases.extend(phases);
    let opened = summed.get("connect_sockets_open").copied();
    report.figures.extend(summed);
    let open = report
        .phases
        .iter()
        .find(|p| p.name == "connect: open sockets");
    if let (Some(opened), Some(open)) = (opened, open) {
        report
            .figures
            .insert("connect_per_sec".to_owned(), opened / open.secs.max(1e-9));
    }
    report.tool_usage.cpu_user_secs = user;
    report.tool_usage.cpu_system_secs = system;
    report.tool_usage.cpu_percent = 100.0 * (user + system) / report.elapsed_secs.max(1e-9);
    report.tool_usage.max_rss_kib = rss;
    report.timeline = timeline_of(report.timeline.interval_secs, points);
    let smallest = shares.iter().map(|s| s.sockets).min().unwrap_or(0);
    let largest = shares.iter().map(|s| s.sockets).max().unwrap_or(0);
    let whole = if units.sockets > 1 {
        let fewest = shares.iter().map(|s| s.units).min().unwrap_or(0);
        let most = shares.iter().map(|s| s.units).max().unwrap_or(0);
        format!(
            " ({fewest}-{most} whole {}, so every delivery check stays inside one worker)",
            units.name
        )
    } else {
        String::new()
    };
    report.notes.push(format!(
        "{} worker processes held {smallest}-{largest} sockets each{whole}; the tool's CPU and \
         peak memory are summed over them and the parent, and the timeline's per-second \
         latency percentiles are the highest of any worker's",
        shares.len()
    ));
}

fn add_all(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (name, value) in from {
        *into.entry(name).or_default() += value;
    }
}

type Point = (f64, BTreeMap<String, Option<f64>>);

/// A timeline's points, moved `offset` seconds later.
fn points_of(timeline: &Timeline, offset: f64) -> Vec<Point> {
    timeline
        .t_secs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let values = timeline
                .series
                .iter()
                .map(|(name, values)| (name.clone(), values.get(i).copied().flatten()))
                .collect();
            (t + offset, values)
        })
        .collect()
}

/// One timeline from the points of several, second by second: counts,
/// rates, open sockets and CPU add up; a percentile cannot be added, so
/// the highest stands for the second.
fn timeline_of(interval_secs: f64, points: Vec<Point>) -> Timeline {
    let interval = if interval_secs > 0.0 {
        interval_secs
    } else {
        1.0
    };
    let mut slots: BTreeMap<i64, Point> = BTreeMap::new();
    for (t, values) in points {
        let slot = (t / interval).round() as i64;
        let (_, merged) = slots
            .entry(slot)
            .or_insert_with(|| (slot as f64 * interval, BTreeMap::new()));
        for (name, value) in values {
            let Some(value) = value else { continue };
            let percentile = name.ends_with("_ms");
            let entry = merged.entry(name).or_insert(None);
            *entry = Some(match *entry {
                None => value,
                Some(old) if percentile => old.max(value),
                Some(old) => old + value,
            });
        }
    }
    let mut timeline = Timeline::new(Duration::from_secs_f64(interval));
    for (_, (t, values)) in slots {
        if t >= 0.0 {
            timeline.push(t, values);
        }
    }
    timeline.prune();
    timeline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(workers: usize) -> EnvOptions {
        EnvOptions {
            workers,
            ..EnvOptions::default()
        }
    }

    fn sockets(count: usize) -> Units {
        Units {
            name: "sockets",
            count,
            sockets: 1,
        }
    }

    #[test]
    fn rooms_are_shared_whole_with_their_members() {
        let rooms = Units {
            name: "rooms",
            count: 5,
            sockets: 20,
        };
        let shares = plan(&options(2), true, rooms, 20_000, 28_232).unwrap();
        assert_eq!(
            shares
                .iter()
                .map(|s| (s.first, s.units, s.sockets))
                .collect::<Vec<_>>(),
            vec![(0, 3, 60), (3, 2, 40)]
        );
        let err = plan(&options(6), true, rooms, 20_000, 28_232).unwrap_err();
        assert!(
            err.to_string().contains("5 rooms cannot be shared"),
            "{err}"
        );
    }

    #[test]
    fn workers_keep_the_users_sockets_would_have_in_one_process() {
        let tokens: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let given = tokens_from(&tokens, 7, 8);
        assert_eq!(given, ["2", "3", "4", "0", "1"]);
        for i in 0..8 {
            assert_eq!(given[i % given.len()], tokens[(7 + i) % tokens.len()]);
        }
        assert_eq!(tokens_from(&tokens, 1, 2), ["1", "2"]);
    }

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn shares_are_equal_and_each_worker_has_its_own_sources() {
        let shares = plan(&options(6), true, sockets(100_000), 20_000, 28_232).unwrap();
        assert_eq!(shares.len(), 6);
        assert_eq!(shares.iter().map(|s| s.sockets).sum::<usize>(), 100_000);
        assert_eq!(shares[0].sockets, 16_667);
        assert_eq!(shares[5].sockets, 16_666);
        assert_eq!(shares[1].first, 16_667);
        for (w, share) in shares.iter().enumerate() {
            assert_eq!(share.sources, vec![v4(w as u8 + 1)]);
        }
    }

    #[test]
    fn a_share_over_one_address_s_ports_gets_more_addresses() {
        let shares = plan(&options(2), true, sockets(60_000), 100_000, 28_232).unwrap();
        assert_eq!(shares[0].sources, vec![v4(1), v4(2)]);
        assert_eq!(shares[1].sources, vec![v4(3), v4(4)]);
    }

    #[test]
    fn given_sources_are_dealt_out_and_must_suffice() {
        let mut opts = options(2);
        opts.sources = 4;
        let shares = plan(&opts, true, sockets(1000), 20_000, 28_232).unwrap();
        assert_eq!(shares[0].sources, vec![v4(1), v4(3)]);
        assert_eq!(shares[1].sources, vec![v4(2), v4(4)]);
        opts.sources = 1;
        let err = plan(&opts, true, sockets(1000), 20_000, 28_232).unwrap_err();
        assert!(err.to_string().contains("source addresses"), "{err}");
    }

    #[test]
    fn a_share_over_the_file_limit_is_refused_with_a_way_out() {
        let err = plan(&options(2), true, sockets(100_000), 20_000, 28_232).unwrap_err();
        assert!(err.to_string().contains("--workers 6"), "{err}");
        assert!(plan(&options(3), true, sockets(2), 20_000, 28_232).is_err());
    }

    #[test]
    fn timelines_add_up_second_by_second() {
        let mut a = Timeline::new(Duration::from_secs(1));
        let mut b = Timeline::new(Duration::from_secs(1));
        for t in [1.0, 2.0] {
            a.push(
                t,
                BTreeMap::from([
                    ("sockets_open".to_owned(), Some(10.0)),
                    ("hello_p99_ms".to_owned(), Some(2.0)),
                ]),
            );
            b.push(
                t - 0.3,
                BTreeMap::from([
                    ("sockets_open".to_owned(), Some(5.0)),
                    ("hello_p99_ms".to_owned(), Some(3.0)),
                ]),
            );
        }
        let mut points = points_of(&a, 0.0);
        points.extend(points_of(&b, 0.2));
        let merged = timeline_of(1.0, points);
        assert_eq!(merged.t_secs, vec![1.0, 2.0]);
        assert_eq!(merged.series["sockets_open"], vec![Some(15.0), Some(15.0)]);
        assert_eq!(merged.series["hello_p99_ms"], vec![Some(3.0), Some(3.0)]);
    }

    #[test]
    fn messages_read_back() {
        let line = serde_json::to_string(&Up::Ready { open: 7 }).unwrap();
        assert!(matches!(
            serde_json::from_str::<Up>(&line).unwrap(),
            Up::Ready { open: 7 }
        ));
    }
}
