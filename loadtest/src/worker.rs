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
//! `connect` splits its sockets. The other scenarios check deliveries
//! between their sockets (the members of a room, the two sides of a pair,
//! a churn room's anchor and the churners passing through it), so they
//! split along those: each worker owns whole rooms with all of their
//! members and publishers, whole pairs, or whole churn rooms with their
//! anchors and a share of the churners, who join only the rooms of their
//! own worker. Every check so stays inside one process. `mixed` deals out
//! each of its parts that way, and a part with fewer units than there are
//! workers goes to the first workers only. Rates and the bound on churn
//! cycles are totals, shared in proportion. The parent registers the users
//! (and matches the pairs over REST) once, for every part.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use futures_util::future::try_join_all;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::report::{Phase, Report, Timeline};
use crate::run::{self, Ctx, Env, EnvOptions, Measuring};
use crate::scenario::{
    churn, connect, pairs, rooms, ChurnOpts, ConnectOpts, MixedOpts, PairsOpts, RoomsOpts,
    Scenario, MAX_DURATION_SECS,
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
    /// The worker's share of the run's scenario.
    part: Scenario,
    /// By the name of each scenario the share runs (several for a mix).
    given: BTreeMap<String, Given>,
}

/// What the parent provisioned for a worker's share of one scenario.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Given {
    /// Session tokens or minted JWTs; socket `i` of the worker uses
    /// `tokens[i % len]` (for pairs: `a, b` of each pair in turn; for
    /// churn: the anchors of its rooms, then its churners).
    pub tokens: Vec<String>,
    /// Index among the run's of the worker's first unit (socket, room,
    /// pair or churn room).
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
    given: BTreeMap<String, Given>,
    go: Mutex<Option<oneshot::Receiver<()>>>,
    ready: OnceCell<()>,
}

impl Link {
    /// What the parent provisioned for this worker's share of `part`.
    pub(crate) fn given(&self, part: &str) -> Option<&Given> {
        self.given.get(part)
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
    let (report, ctx) = run::run_in(env, spec.part, Some(link))
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

/// Units of a scenario that no check spans (a socket, a room with its
/// members, a pair, a churn room with its anchor, a churner), each of
/// `sockets` sockets.
#[derive(Debug, Clone, Copy)]
struct Units {
    name: &'static str,
    count: usize,
    sockets: usize,
}

impl Units {
    fn new(name: &'static str, count: usize, sockets: usize) -> Units {
        Units {
            name,
            count,
            sockets,
        }
    }
}

/// The scenarios a run is made of: the mix's parts, or the one scenario.
fn parts_of(scenario: &Scenario) -> Vec<Scenario> {
    match scenario {
        Scenario::Mixed(opts) => opts.parts(),
        _ => vec![scenario.clone()],
    }
}

/// The kinds of units one part divides into. They are dealt out together,
/// so a worker holds some of each kind or none: churners join only rooms
/// whose anchors are in their own process, and each churning worker needs
/// some of the run's cycles.
fn units_of(part: &Scenario) -> Vec<Units> {
    match part {
        Scenario::Connect(o) => vec![Units::new("sockets", o.sockets, 1)],
        Scenario::Rooms(o) => vec![Units::new("rooms", o.rooms, o.members)],
        Scenario::Pairs(o) => vec![Units::new("pairs", o.pairs, 2)],
        Scenario::Churn(o) => vec![
            Units::new("churn rooms", o.rooms, 1),
            Units::new("churners", o.churners, 1),
            Units::new(
                "churn cycles (--max-cycles)",
                usize::try_from(o.max_cycles).unwrap_or(usize::MAX),
                0,
            ),
        ],
        // A mix is split part by part (see `parts_of`).
        Scenario::Mixed(_) => Vec::new(),
    }
}

/// Units `first..first + count` of one kind.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slice {
    first: usize,
    count: usize,
}

/// One worker's part of the run.
#[derive(Debug, Clone, PartialEq)]
struct Share {
    /// By part of the run, then by kind of its units: which are this
    /// worker's; empty for a part it has no share of.
    slices: Vec<Vec<Slice>>,
    sockets: usize,
    sources: Vec<IpAddr>,
}

/// `total` over `over` workers as evenly as whole units go: the remainder
/// one more each to the first workers.
fn deal(total: usize, over: usize) -> Vec<usize> {
    (0..over)
        .map(|w| total / over + usize::from(w < total % over))
        .collect()
}

/// Deals each part's units out over the workers and gives each worker its
/// source addresses: every worker its own, so that no two compete for one
/// address's ephemeral ports.
///
/// Each part goes to every worker, unless `partial` (the parts of a mix),
/// when a part with fewer units than workers goes to the first ones.
fn plan(
    options: &EnvOptions,
    targets_v4_loopback: bool,
    parts: &[Vec<Units>],
    partial: bool,
    hard_nofile: u64,
    ports_per_source: usize,
) -> Result<Vec<Share>> {
    let workers = options.workers;
    let mut slices = vec![vec![Vec::new(); parts.len()]; workers];
    let mut counts = vec![0usize; workers];
    let mut reached = 0;
    for (p, kinds) in parts.iter().enumerate() {
        let Some(fewest) = kinds.iter().min_by_key(|u| u.count) else {
            continue;
        };
        let over = if partial {
            workers.min(fewest.count)
        } else if fewest.count < workers {
            bail!(
                "{} {} cannot be shared by {workers} workers; use --workers {} or fewer",
                fewest.count,
                fewest.name,
                fewest.count
            );
        } else {
            workers
        };
        reached = reached.max(over);
        for kind in kinds {
            let mut first = 0;
            for (w, count) in deal(kind.count, over).into_iter().enumerate() {
                slices[w][p].push(Slice { first, count });
                counts[w] += count * kind.sockets;
                first += count;
            }
        }
    }
    if reached < workers {
        bail!(
            "no part of the run has enough whole units for {workers} workers to have a share \
             each; use --workers {} or fewer",
            reached.max(1)
        );
    }
    let sockets: usize = counts.iter().sum();
    let largest = counts.iter().copied().max().unwrap_or(0) as u64;
    if largest + FD_SLACK > hard_nofile {
        let fits = hard_nofile.saturating_sub(FD_SLACK).max(1) as usize;
        bail!(
            "each of {workers} workers would hold up to {largest} sockets, but a process may \
             open only {hard_nofile} files here; use --workers {} or more",
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
    let mut shares = Vec::with_capacity(workers);
    for (w, ((count, sources), slices)) in counts.into_iter().zip(sources).zip(slices).enumerate() {
        if !sources.is_empty() && count.div_ceil(sources.len()) > ports {
            bail!(
                "worker {w} would open {} sockets from each of its {} source addresses, more \
                 than the about {ports} ephemeral ports each has; give more --sources",
                count.div_ceil(sources.len()),
                sources.len()
            );
        }
        shares.push(Share {
            slices,
            sockets: count,
            sources,
        });
    }
    Ok(shares)
}

/// A worker's share of `part`, from its slices of the part's units: the
/// same options over fewer units, and rates and the cycle bound in
/// proportion, so that the workers' shares add up to the part.
fn share_of_part(part: &Scenario, slices: &[Slice]) -> Result<Scenario> {
    let part_of = |slice: &Slice, total: usize| slice.count as f64 / total.max(1) as f64;
    Ok(match (part, slices) {
        (Scenario::Connect(o), [sockets]) => Scenario::Connect(ConnectOpts {
            sockets: sockets.count,
            users: None,
            rate: o.rate * part_of(sockets, o.sockets),
            hold: o.hold,
        }),
        (Scenario::Rooms(o), [rooms]) => Scenario::Rooms(RoomsOpts {
            rooms: rooms.count,
            users: None,
            rate: o.rate * part_of(rooms, o.rooms),
            ..o.clone()
        }),
        (Scenario::Pairs(o), [pairs]) => Scenario::Pairs(PairsOpts {
            pairs: pairs.count,
            ..o.clone()
        }),
        (Scenario::Churn(o), [rooms, churners, cycles]) => Scenario::Churn(ChurnOpts {
            rooms: rooms.count,
            churners: churners.count,
            max_cycles: cycles.count as u64,
            ..o.clone()
        }),
        _ => bail!("{} cannot be shared that way", part.name()),
    })
}

/// The worker's share of the run: of its one scenario, or of each part of
/// its mix that the worker has some of.
fn share_of(scenario: &Scenario, parts: &[Scenario], share: &Share) -> Result<Scenario> {
    let mut mine = Vec::new();
    for (part, slices) in parts.iter().zip(&share.slices) {
        if !slices.is_empty() {
            mine.push(share_of_part(part, slices)?);
        }
    }
    let Scenario::Mixed(opts) = scenario else {
        return mine.pop().context("a worker without a share");
    };
    // A mix does not run the parts it leaves at zero; their rates and
    // bounds are zero too, so the workers' options add up to the run's.
    let mut mixed = MixedOpts {
        idle: 0,
        idle_rate: 0.0,
        rooms: 0,
        rate: 0.0,
        pairs: 0,
        churners: 0,
        churn_rooms: 0,
        max_cycles: 0,
        ..opts.clone()
    };
    for part in mine {
        match part {
            Scenario::Connect(o) => {
                mixed.idle = o.sockets;
                mixed.idle_rate = o.rate;
            }
            Scenario::Rooms(o) => {
                mixed.rooms = o.rooms;
                mixed.rate = o.rate;
            }
            Scenario::Pairs(o) => mixed.pairs = o.pairs,
            Scenario::Churn(o) => {
                mixed.churners = o.churners;
                mixed.churn_rooms = o.rooms;
                mixed.max_cycles = o.max_cycles;
            }
            Scenario::Mixed(_) => bail!("a mix does not nest"),
        }
    }
    Ok(Scenario::Mixed(mixed))
}

/// Runs `scenario` over `env.options.workers` worker processes and merges
/// their reports into one.
pub(crate) async fn run_parent(env: Env, scenario: Scenario) -> Result<Report> {
    scenario.validate()?;
    scenario.check_rate(env.options.socket_rate)?;
    let parts = parts_of(&scenario);
    let units: Vec<Vec<Units>> = parts.iter().map(units_of).collect();
    let nofile = system::raise_nofile_limit();
    let v4_loopback = env.targets.iter().all(|t| t.loopback && t.addr.is_ipv4());
    let shares = plan(
        &env.options,
        v4_loopback,
        &units,
        matches!(scenario, Scenario::Mixed(_)),
        system::nofile_hard_limit().unwrap_or(u64::MAX),
        system::ephemeral_ports(),
    )?;
    // Refused here, before any user is registered, rather than by a
    // worker later: a share can break a rule the whole keeps (more
    // churners than its rooms hold).
    let assigned = shares
        .iter()
        .enumerate()
        .map(|(w, share)| {
            let part = share_of(&scenario, &parts, share)?;
            part.validate()
                .and_then(|()| part.check_rate(env.options.socket_rate))
                .with_context(|| format!("the share of worker {w}"))?;
            Ok(part)
        })
        .collect::<Result<Vec<_>>>()?;
    let exe = match &env.options.worker_exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().context("finding this executable to start workers")?,
    };
    let ctx = Arc::new(Ctx::new(env, 1, None));
    let measuring = Measuring::start(&ctx, nofile).await;

    let plan = Plan {
        scenario: &scenario,
        parts: &parts,
        units: &units,
        shares: &shares,
        assigned: &assigned,
    };
    let outcome = drive(&ctx, &plan, &exe).await;
    let (mut report, summaries) = measuring.finish(&ctx, &scenario, outcome).await?;
    merge(&mut report, &ctx, &units, &shares, summaries);
    report.warnings.clear();
    report.failures.clear();
    report.judge(&scenario.expected_counts());
    Ok(report)
}

/// A run dealt out over its workers.
struct Plan<'a> {
    scenario: &'a Scenario,
    /// What the run is made of (see [`parts_of`]).
    parts: &'a [Scenario],
    /// By part, the kinds of units it was dealt out in.
    units: &'a [Vec<Units>],
    shares: &'a [Share],
    /// By worker, its share of the scenario.
    assigned: &'a [Scenario],
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

/// The users the parent provisioned for one part of the run.
enum Provisioned {
    /// Socket `i` of the part uses `tokens[i % len]`; for churn, the
    /// rooms' anchors come first, then the churners.
    Tokens(Vec<String>),
    Pairs(Vec<pairs::Matched>),
}

/// Registers (or signs on) a part's users once, and matches the pairs.
async fn provision(ctx: &Ctx, part: &Scenario) -> Result<Provisioned> {
    Ok(match part {
        Scenario::Connect(opts) => Provisioned::Tokens(connect::register(ctx, opts).await?),
        Scenario::Rooms(opts) => Provisioned::Tokens(rooms::register(ctx, opts, 'r').await?),
        Scenario::Pairs(opts) => Provisioned::Pairs(pairs::match_pairs(ctx, opts).await?),
        Scenario::Churn(opts) => Provisioned::Tokens(churn::register(ctx, opts).await?),
        Scenario::Mixed(_) => bail!("a mix does not nest"),
    })
}

/// Provisions the users, starts the workers, lets them load together and
/// collects their summaries.
async fn drive(ctx: &Arc<Ctx>, plan: &Plan<'_>, exe: &Path) -> Result<Vec<Summary>> {
    let Plan {
        scenario,
        parts,
        units,
        shares,
        ..
    } = *plan;
    // Side by side, as a mix provisions its parts in one process.
    let provisioned = try_join_all(parts.iter().map(|part| provision(ctx, part))).await?;
    for part in parts {
        if let Scenario::Rooms(opts) = part {
            // The whole run's targets; the workers' shares add up to them.
            ctx.figure("rooms_target_msgs_per_sec", opts.rate);
            ctx.figure(
                "rooms_target_deliveries_per_sec",
                opts.rate * opts.members as f64,
            );
        }
    }
    let rss_before = ctx.server_sample().await.map(|s| s.rss_kib);
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let mut workers = Vec::with_capacity(shares.len());
    for (index, share) in shares.iter().enumerate() {
        let spec = spec_for(ctx, plan, index, share, &provisioned)?;
        workers.push(start(exe, index, &spec, heard_tx.clone()).await?);
    }
    drop(heard_tx);

    let n = workers.len();
    let name = scenario.name();
    let (opening, loading) = match scenario {
        Scenario::Connect(_) => ("connect: open".to_owned(), "connect: hold".to_owned()),
        _ => (format!("{name}: connect"), format!("{name}: load")),
    };
    let load_secs = scenario.load_secs();
    // Connect opens at its rate; the others open as fast as sockets answer
    // (a rooms worker also opens and joins its rooms).
    let open_secs: f64 = parts
        .iter()
        .zip(units)
        .map(|(part, kinds)| {
            let sockets = kinds.iter().map(|k| k.count * k.sockets).sum::<usize>() as f64;
            match part {
                Scenario::Connect(opts) => sockets / opts.rate,
                _ => sockets / 50.0,
            }
        })
        .sum();
    // The bar counts the sockets opened before the load; churners connect
    // only once it starts, over and over.
    let churners: usize = parts
        .iter()
        .map(|part| match part {
            Scenario::Churn(opts) => opts.churners,
            _ => 0,
        })
        .sum();
    let opened_first = shares.iter().map(|s| s.sockets).sum::<usize>() - churners;
    // Generous, since every wait inside a worker is bounded already; this
    // only catches a worker that hangs without dying.
    let limit =
        Duration::from_secs_f64(open_secs + load_secs + 6.0 * ctx.timeout().as_secs_f64() + 60.0);
    let deadline = Instant::now() + limit;
    let mut answered = vec![0u64; n];
    let mut ready = vec![None::<i64>; n];
    let mut summaries: Vec<Option<Summary>> = (0..n).map(|_| None).collect();
    let mut reported = 0;
    let bar = ctx.env.progress.bar(opened_first as u64, &opening);
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
                // Churners keep connecting through the load, when the bar
                // is gone.
                if hold.is_none() {
                    bar.set_position(answered.iter().sum());
                }
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

/// What the parent provisioned for a worker's slices of one part.
fn given_for(part: &Scenario, slices: &[Slice], provisioned: &Provisioned) -> Result<Given> {
    let mut given = Given {
        first: slices.first().map_or(0, |s| s.first),
        ..Given::default()
    };
    match (part, slices, provisioned) {
        // Sockets keep the users they would have in one process.
        (Scenario::Connect(_), [sockets], Provisioned::Tokens(tokens)) => {
            given.tokens = tokens_from(tokens, sockets.first, sockets.count);
        }
        (Scenario::Rooms(opts), [rooms], Provisioned::Tokens(tokens)) => {
            given.tokens = tokens_from(
                tokens,
                rooms.first * opts.members,
                rooms.count * opts.members,
            );
        }
        (Scenario::Churn(opts), [rooms, churners, _], Provisioned::Tokens(tokens)) => {
            let churner = opts.rooms + churners.first;
            given.tokens = tokens[rooms.first..rooms.first + rooms.count]
                .iter()
                .chain(&tokens[churner..churner + churners.count])
                .cloned()
                .collect();
        }
        (Scenario::Pairs(_), [pairs], Provisioned::Pairs(matched)) => {
            for pair in &matched[pairs.first..pairs.first + pairs.count] {
                given.tokens.extend(pair.tokens.iter().cloned());
                given.conversations.push(pair.conversation.clone());
            }
        }
        _ => bail!("{}: provisioned for something else", part.name()),
    }
    Ok(given)
}

fn spec_for(
    ctx: &Ctx,
    plan: &Plan<'_>,
    index: usize,
    share: &Share,
    provisioned: &[Provisioned],
) -> Result<Spec> {
    let mut env = ctx.env.options.clone();
    env.workers = 1;
    env.sources = 0;
    env.source_ips = share.sources.clone();
    // The parent reads the server: one reading for all the sockets.
    env.server_pid = None;
    env.server_metrics = false;
    env.quiet = true;
    env.worker_exe = None;
    // The parent provisioned the users; a worker never needs the secret.
    env.jwt_secret_file = None;
    env.jwt_issuer = None;
    env.jwt_audience = None;
    env.connect_concurrency = env.connect_concurrency.div_ceil(plan.shares.len()).max(1);
    let mut given = BTreeMap::new();
    for ((part, slices), provisioned) in plan.parts.iter().zip(&share.slices).zip(provisioned) {
        if !slices.is_empty() {
            given.insert(
                part.name().to_owned(),
                given_for(part, slices, provisioned)?,
            );
        }
    }
    Ok(Spec {
        index,
        env,
        part: plan.assigned[index].clone(),
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
fn merge(
    report: &mut Report,
    ctx: &Ctx,
    units: &[Vec<Units>],
    shares: &[Share],
    summaries: Vec<Summary>,
) {
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
    let only_sockets = matches!(units, [kinds] if matches!(kinds[..], [Units { sockets: 1, .. }]));
    let whole = if only_sockets {
        String::new()
    } else {
        format!(
            " ({}; each room and pair whole in one worker, so every delivery check stays \
             inside one process)",
            dealt(units, shares)
        )
    };
    report.notes.push(format!(
        "{} worker processes held {smallest}-{largest} sockets each{whole}; the tool's CPU and \
         peak memory are summed over them and the parent, and the timeline's per-second \
         latency percentiles are the highest of any worker's",
        shares.len()
    ));
}

/// How many units of each kind the workers got, as `fewest-most name`,
/// and how many workers a part reached when not all.
fn dealt(units: &[Vec<Units>], shares: &[Share]) -> String {
    let mut parts = Vec::new();
    for (p, kinds) in units.iter().enumerate() {
        let holders: Vec<&[Slice]> = shares
            .iter()
            .map(|share| share.slices[p].as_slice())
            .filter(|slices| !slices.is_empty())
            .collect();
        let mut said: Vec<String> = kinds
            .iter()
            .enumerate()
            // A bound on cycles is not something a worker holds.
            .filter(|(_, kind)| kind.sockets > 0)
            .map(|(k, kind)| {
                let fewest = holders.iter().map(|s| s[k].count).min().unwrap_or(0);
                let most = holders.iter().map(|s| s[k].count).max().unwrap_or(0);
                format!("{fewest}-{most} {}", kind.name)
            })
            .collect();
        if holders.len() < shares.len() {
            if let Some(last) = said.last_mut() {
                last.push_str(&format!(" on {} of the workers", holders.len()));
            }
        }
        parts.push(said.join(" and "));
    }
    parts.join(", ")
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

    fn sockets(count: usize) -> Vec<Vec<Units>> {
        vec![vec![Units::new("sockets", count, 1)]]
    }

    /// Plans `scenario` over `workers` on a machine with room to spare.
    fn plan_of(scenario: &Scenario, workers: usize) -> Result<(Vec<Scenario>, Vec<Share>)> {
        let parts = parts_of(scenario);
        let units: Vec<Vec<Units>> = parts.iter().map(units_of).collect();
        let partial = matches!(scenario, Scenario::Mixed(_));
        let shares = plan(&options(workers), true, &units, partial, 20_000, 28_232)?;
        Ok((parts, shares))
    }

    fn slices(share: &Share, part: usize) -> Vec<(usize, usize)> {
        share.slices[part]
            .iter()
            .map(|s| (s.first, s.count))
            .collect()
    }

    #[test]
    fn rooms_are_shared_whole_with_their_members() {
        let rooms = vec![vec![Units::new("rooms", 5, 20)]];
        let shares = plan(&options(2), true, &rooms, false, 20_000, 28_232).unwrap();
        assert_eq!(
            shares
                .iter()
                .map(|s| (slices(s, 0), s.sockets))
                .collect::<Vec<_>>(),
            vec![(vec![(0, 3)], 60), (vec![(3, 2)], 40)]
        );
        let err = plan(&options(6), true, &rooms, false, 20_000, 28_232).unwrap_err();
        assert!(
            err.to_string().contains("5 rooms cannot be shared"),
            "{err}"
        );
    }

    #[test]
    fn churners_go_with_rooms_of_their_own_worker_and_the_cycles_add_up() {
        let churn = Scenario::Churn(ChurnOpts {
            churners: 7,
            rooms: 3,
            max_cycles: 101,
            anchor_rate: 4.0,
            ..ChurnOpts::default()
        });
        let (parts, shares) = plan_of(&churn, 2).unwrap();
        assert_eq!(slices(&shares[0], 0), [(0, 2), (0, 4), (0, 51)]);
        assert_eq!(slices(&shares[1], 0), [(2, 1), (4, 3), (51, 50)]);
        // An anchor and the churners: one socket each.
        assert_eq!(shares[0].sockets, 2 + 4);
        assert_eq!(shares[1].sockets, 1 + 3);
        let mine: Vec<ChurnOpts> = shares
            .iter()
            .map(|share| match share_of(&churn, &parts, share).unwrap() {
                Scenario::Churn(opts) => opts,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(mine.iter().map(|o| o.max_cycles).sum::<u64>(), 101);
        assert!(mine.iter().all(|o| o.anchor_rate == 4.0));

        // Anchors first, then churners, each keeping its user of one
        // process: users 0-2 anchor the rooms, users 3-9 churn.
        let tokens: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let given = given_for(
            &parts[0],
            &shares[1].slices[0],
            &Provisioned::Tokens(tokens),
        )
        .unwrap();
        assert_eq!(given.tokens, ["2", "7", "8", "9"]);
        assert_eq!(given.first, 2, "its rooms are named from the third on");

        for (churners, rooms, cycles, refused) in [
            (1, 3, 100, "1 churners cannot be shared"),
            (7, 1, 100, "1 churn rooms cannot be shared"),
            (7, 3, 1, "1 churn cycles (--max-cycles) cannot be shared"),
        ] {
            let churn = Scenario::Churn(ChurnOpts {
                churners,
                rooms,
                max_cycles: cycles,
                ..ChurnOpts::default()
            });
            let err = plan_of(&churn, 2).unwrap_err();
            assert!(err.to_string().contains(refused), "{err}");
        }
    }

    #[test]
    fn a_mix_deals_out_each_part_and_its_rates_add_up() {
        let scenario = Scenario::Mixed(MixedOpts {
            idle: 11,
            idle_rate: 900.0,
            rooms: 4,
            members: 5,
            publishers: 2,
            rate: 100.0,
            pairs: 5,
            churners: 6,
            churn_rooms: 2,
            max_cycles: 1_000,
            ..MixedOpts::default()
        });
        let (parts, shares) = plan_of(&scenario, 3).unwrap();
        assert_eq!(parts.len(), 4);
        let table: Vec<Vec<Vec<(usize, usize)>>> = shares
            .iter()
            .map(|share| (0..parts.len()).map(|p| slices(share, p)).collect())
            .collect();
        assert_eq!(
            table,
            [
                vec![
                    vec![(0, 4)],
                    vec![(0, 2)],
                    vec![(0, 2)],
                    vec![(0, 1), (0, 3), (0, 500)]
                ],
                vec![
                    vec![(4, 4)],
                    vec![(2, 1)],
                    vec![(2, 2)],
                    vec![(1, 1), (3, 3), (500, 500)]
                ],
                // Two churn rooms go to the first two workers, whole, and
                // their churners with them.
                vec![vec![(8, 3)], vec![(3, 1)], vec![(4, 1)], vec![]],
            ]
        );
        assert_eq!(shares[2].sockets, 3 + 5 + 2);

        let mine: Vec<MixedOpts> = shares
            .iter()
            .map(|share| match share_of(&scenario, &parts, share).unwrap() {
                Scenario::Mixed(opts) => opts,
                other => panic!("{other:?}"),
            })
            .collect();
        let sum = |f: fn(&MixedOpts) -> f64| mine.iter().map(f).sum::<f64>();
        assert_eq!(sum(|o| o.idle as f64), 11.0);
        assert!((sum(|o| o.idle_rate) - 900.0).abs() < 1e-9);
        assert!((sum(|o| o.rate) - 100.0).abs() < 1e-9);
        assert_eq!(sum(|o| o.pairs as f64), 5.0);
        assert_eq!(sum(|o| o.churners as f64), 6.0);
        assert_eq!(mine.iter().map(|o| o.max_cycles).sum::<u64>(), 1_000);
        assert_eq!(mine[2].churners, 0, "no churn without a room");
        assert_eq!(mine[2].parts().len(), 3);
        for share in &mine {
            Scenario::Mixed(share.clone()).validate().unwrap();
            assert_eq!((share.members, share.publishers), (5, 2));
        }

        let thin = Scenario::Mixed(MixedOpts {
            idle: 2,
            rooms: 1,
            pairs: 2,
            churners: 0,
            ..MixedOpts::default()
        });
        let err = plan_of(&thin, 3).unwrap_err();
        assert!(err.to_string().contains("--workers 2 or fewer"), "{err}");
    }

    #[test]
    fn a_share_that_breaks_a_rule_the_whole_keeps_is_refused() {
        // 1,500 churners fit 3 rooms of 500, not 750 in one room.
        let churn = Scenario::Churn(ChurnOpts {
            churners: 1_500,
            rooms: 3,
            ..ChurnOpts::default()
        });
        churn.validate().unwrap();
        let (parts, shares) = plan_of(&churn, 2).unwrap();
        let second = share_of(&churn, &parts, &shares[1]).unwrap();
        assert!(second.validate().is_err());
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
        let shares = plan(&options(6), true, &sockets(100_000), false, 20_000, 28_232).unwrap();
        assert_eq!(shares.len(), 6);
        assert_eq!(shares.iter().map(|s| s.sockets).sum::<usize>(), 100_000);
        assert_eq!(shares[0].sockets, 16_667);
        assert_eq!(shares[5].sockets, 16_666);
        assert_eq!(shares[1].slices[0][0].first, 16_667);
        for (w, share) in shares.iter().enumerate() {
            assert_eq!(share.sources, vec![v4(w as u8 + 1)]);
        }
    }

    #[test]
    fn a_share_over_one_address_s_ports_gets_more_addresses() {
        let shares = plan(&options(2), true, &sockets(60_000), false, 100_000, 28_232).unwrap();
        assert_eq!(shares[0].sources, vec![v4(1), v4(2)]);
        assert_eq!(shares[1].sources, vec![v4(3), v4(4)]);
    }

    #[test]
    fn given_sources_are_dealt_out_and_must_suffice() {
        let mut opts = options(2);
        opts.sources = 4;
        let shares = plan(&opts, true, &sockets(1000), false, 20_000, 28_232).unwrap();
        assert_eq!(shares[0].sources, vec![v4(1), v4(3)]);
        assert_eq!(shares[1].sources, vec![v4(2), v4(4)]);
        opts.sources = 1;
        let err = plan(&opts, true, &sockets(1000), false, 20_000, 28_232).unwrap_err();
        assert!(err.to_string().contains("source addresses"), "{err}");
    }

    #[test]
    fn a_share_over_the_file_limit_is_refused_with_a_way_out() {
        let err = plan(&options(2), true, &sockets(100_000), false, 20_000, 28_232).unwrap_err();
        assert!(err.to_string().contains("--workers 6"), "{err}");
        assert!(plan(&options(3), true, &sockets(2), false, 20_000, 28_232).is_err());
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
