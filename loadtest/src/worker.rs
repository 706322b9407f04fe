//! A run spread over worker processes, and one worker of such a run.
//!
//! One process holds at most as many sockets as it may open files, and the
//! hard limit on those is not the tool's to raise. With `--workers N` the
//! parent provisions the users once, then starts its own executable N times
//! as hidden `worker` subprocesses, each with an equal share of the
//! sockets and of the connect rate, and source addresses of its own. The
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
//! Only `connect` is split. The other scenarios check deliveries between
//! their sockets (the members of a room, the two sides of a pair), and a
//! check spanning processes would need them to share streams' final seqs
//! mid-run; they refuse `--workers` above 1.

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
use crate::scenario::{connect, ConnectOpts, Scenario, MAX_DURATION_SECS};
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

/// How often a connecting worker tells its parent how far it got.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What a worker is told to do.
#[derive(Serialize, Deserialize)]
struct Spec {
    index: usize,
    env: EnvOptions,
    connect: ConnectOpts,
    /// Session tokens or minted JWTs; socket `i` of the worker uses
    /// `tokens[i % len]`.
    tokens: Vec<String>,
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
    tokens: Vec<String>,
    go: Mutex<Option<oneshot::Receiver<()>>>,
    ready: OnceCell<()>,
}

impl Link {
    pub(crate) fn tokens(&self) -> &[String] {
        &self.tokens
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
        tokens: spec.tokens,
        go: Mutex::new(Some(go_rx)),
        ready: OnceCell::new(),
    };
    let (report, ctx) = run::run_in(env, Scenario::Connect(spec.connect), Some(link))
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

/// One worker's part of the sockets.
#[derive(Debug, Clone, PartialEq)]
struct Share {
    /// Index of its first socket among all of the run's.
    first: usize,
    sockets: usize,
    sources: Vec<IpAddr>,
}

/// Splits `sockets` over `workers` and gives each its source addresses:
/// every worker its own, so that no two compete for one address's
/// ephemeral ports.
fn plan(
    options: &EnvOptions,
    targets_v4_loopback: bool,
    sockets: usize,
    hard_nofile: u64,
    ports_per_source: usize,
) -> Result<Vec<Share>> {
    let workers = options.workers;
    if sockets < workers {
        bail!("connect: {sockets} sockets cannot be shared by {workers} workers");
    }
    let counts: Vec<usize> = (0..workers)
        .map(|w| sockets / workers + usize::from(w < sockets % workers))
        .collect();
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
    for (w, (count, sources)) in counts.into_iter().zip(sources).enumerate() {
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
            sockets: count,
            sources,
        });
        first += count;
    }
    Ok(shares)
}

/// Runs `scenario` over `env.options.workers` worker processes and merges
/// their reports into one.
pub(crate) async fn run_parent(env: Env, scenario: Scenario) -> Result<Report> {
    let workers = env.options.workers;
    let Scenario::Connect(opts) = &scenario else {
        bail!(
            "--workers {workers}: only the connect scenario runs over worker processes; {} checks \
             deliveries between its sockets, so one process must hold them all (use --workers 1)",
            scenario.name()
        );
    };
    scenario.validate()?;
    let nofile = system::raise_nofile_limit();
    let v4_loopback = env.targets.iter().all(|t| t.loopback && t.addr.is_ipv4());
    let shares = plan(
        &env.options,
        v4_loopback,
        opts.sockets,
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

    let outcome = drive(&ctx, opts, &shares, &exe).await;

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
    merge(&mut report, &ctx, &shares, summaries);
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

/// Provisions the users, starts the workers, lets them hold together and
/// collects their summaries.
async fn drive(
    ctx: &Arc<Ctx>,
    opts: &ConnectOpts,
    shares: &[Share],
    exe: &Path,
) -> Result<Vec<Summary>> {
    let tokens = connect::register(ctx, opts).await?;
    let rss_before = ctx.server_sample().map(|s| s.rss_kib);
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let mut workers = Vec::with_capacity(shares.len());
    for (index, share) in shares.iter().enumerate() {
        let spec = spec_for(ctx, opts, shares.len(), index, share, &tokens);
        workers.push(start(exe, index, &spec, heard_tx.clone()).await?);
    }
    drop(heard_tx);

    let n = workers.len();
    // Generous, since every wait inside a worker is bounded already; this
    // only catches a worker that hangs without dying.
    let limit = Duration::from_secs_f64(
        opts.sockets as f64 / opts.rate + opts.hold + 6.0 * ctx.timeout().as_secs_f64() + 60.0,
    );
    let deadline = Instant::now() + limit;
    let mut answered = vec![0u64; n];
    let mut ready = vec![None::<i64>; n];
    let mut summaries: Vec<Option<Summary>> = (0..n).map(|_| None).collect();
    let mut reported = 0;
    let bar = ctx.env.progress.bar(opts.sockets as u64, "connect: open");
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
                    if let Some(before) = rss_before {
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
                    let length = Duration::from_secs_f64(opts.hold);
                    hold = Some((
                        ctx.env.progress.timer(length, "connect: hold"),
                        Instant::now(),
                    ));
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

fn spec_for(
    ctx: &Ctx,
    opts: &ConnectOpts,
    workers: usize,
    index: usize,
    share: &Share,
    tokens: &[String],
) -> Spec {
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
    // Sockets keep the users they would have in one process: socket `i`
    // of the run uses user `i % users`.
    let count = tokens.len().min(share.sockets);
    let tokens = (0..count)
        .map(|i| tokens[(share.first + i) % tokens.len()].clone())
        .collect();
    Spec {
        index,
        env,
        connect: ConnectOpts {
            sockets: share.sockets,
            users: None,
            rate: opts.rate * share.sockets as f64 / opts.sockets as f64,
            hold: opts.hold,
        },
        tokens,
    }
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
fn merge(report: &mut Report, ctx: &Ctx, shares: &[Share], summaries: Vec<Summary>) {
    let epoch = unix_secs_at(ctx.stats.epoch());
    let mut latencies: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut phases: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut load: Option<(f64, f64)> = None;
    let mut points = points_of(&report.timeline, 0.0);
    let mut opened = 0.0;
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
        opened += part
            .figures
            .get("connect_sockets_open")
            .copied()
            .unwrap_or(0.0);
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
    report
        .figures
        .insert("connect_sockets_open".to_owned(), opened);
    if let Some(open) = report
        .phases
        .iter()
        .find(|p| p.name == "connect: open sockets")
    {
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
    report.notes.push(format!(
        "{} worker processes held {smallest}-{largest} sockets each; the tool's CPU and peak \
         memory are summed over them and the parent, and the timeline's per-second latency \
         percentiles are the highest of any worker's",
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

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn shares_are_equal_and_each_worker_has_its_own_sources() {
        let shares = plan(&options(6), true, 100_000, 20_000, 28_232).unwrap();
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
        let shares = plan(&options(2), true, 60_000, 100_000, 28_232).unwrap();
        assert_eq!(shares[0].sources, vec![v4(1), v4(2)]);
        assert_eq!(shares[1].sources, vec![v4(3), v4(4)]);
    }

    #[test]
    fn given_sources_are_dealt_out_and_must_suffice() {
        let mut opts = options(2);
        opts.sources = 4;
        let shares = plan(&opts, true, 1000, 20_000, 28_232).unwrap();
        assert_eq!(shares[0].sources, vec![v4(1), v4(3)]);
        assert_eq!(shares[1].sources, vec![v4(2), v4(4)]);
        opts.sources = 1;
        let err = plan(&opts, true, 1000, 20_000, 28_232).unwrap_err();
        assert!(err.to_string().contains("source addresses"), "{err}");
    }

    #[test]
    fn a_share_over_the_file_limit_is_refused_with_a_way_out() {
        let err = plan(&options(2), true, 100_000, 20_000, 28_232).unwrap_err();
        assert!(err.to_string().contains("--workers 6"), "{err}");
        assert!(plan(&options(3), true, 2, 20_000, 28_232).is_err());
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
