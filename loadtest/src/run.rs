//! The frame every scenario runs in: the validated environment, the shared
//! statistics, phase marks, and a sampler that turns counters into a
//! timeline once a second.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Barrier};

use crate::client::Connector;
use crate::jwt::Minter;
use crate::progress::Progress;
use crate::provision::Rest;
use crate::report::{self, Phase, Report, ServerUsage, Timeline};
use crate::scenario::Scenario;
use crate::stats::{Count, Lat, Percentiles, Snapshot, Stats};
use crate::system::{self, OwnUsage, ProcSample};
use crate::target::{self, Target};
use crate::worker::{self, Given, Link};

/// Where and how to load, shared by every scenario.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct EnvOptions {
    /// Server to load: http://host:port (repeat for the nodes of a
    /// cluster). Loopback only unless --i-own-this-target.
    #[arg(global = true, long = "url", default_value = "http://127.0.0.1:8080")]
    pub urls: Vec<String>,

    /// Allow a target whose host is not a loopback address. Only for a
    /// server you run yourself.
    #[arg(global = true, long)]
    pub i_own_this_target: bool,

    /// Source address to bind sockets to (repeatable).
    #[arg(global = true, long = "source-ip")]
    pub source_ips: Vec<IpAddr>,

    /// Spread sockets over the source addresses 127.0.0.1 ..= 127.0.0.N.
    #[arg(global = true, long, default_value_t = 0)]
    pub sources: u8,

    /// Pid of the server on this machine, for its CPU time and memory.
    #[arg(global = true, long)]
    pub server_pid: Option<u32>,

    /// Read the server's CPU time and memory from its `/metrics` (the first
    /// --url) instead, for a server that is not a process here.
    #[arg(global = true, long, conflicts_with = "server_pid")]
    pub server_metrics: bool,

    /// Frames per second each socket may send: set it to the server's
    /// MESHI_RATE_PER_SEC. The tool paces every socket under it.
    #[arg(global = true, long, default_value_t = 20.0)]
    pub socket_rate: f64,

    /// REST calls in flight while provisioning users.
    #[arg(global = true, long, default_value_t = 16)]
    pub register_concurrency: usize,

    /// File holding the server's HS256 JWT secret (what it was started
    /// with as MESHI_JWT_SECRET_FILE; one trailing newline is ignored).
    /// Users are then signed on with a JWT each instead of registered,
    /// which is many times faster. Only for a server you run yourself.
    #[arg(global = true, long, value_name = "PATH")]
    pub jwt_secret_file: Option<PathBuf>,

    /// `iss` of the minted JWTs: the server's MESHI_JWT_ISSUER.
    #[arg(
        global = true,
        long,
        value_name = "ISSUER",
        requires = "jwt_secret_file"
    )]
    pub jwt_issuer: Option<String>,

    /// `aud` of the minted JWTs: the server's MESHI_JWT_AUDIENCE.
    #[arg(
        global = true,
        long,
        value_name = "AUDIENCE",
        requires = "jwt_secret_file"
    )]
    pub jwt_audience: Option<String>,

    /// Socket handshakes in flight at once.
    #[arg(global = true, long, default_value_t = 256)]
    pub connect_concurrency: usize,

    /// Seconds to wait for a connect, a reply or a drain before giving up.
    #[arg(global = true, long, default_value_t = 10.0)]
    pub timeout: f64,

    /// No progress bars.
    #[arg(global = true, long)]
    pub quiet: bool,

    /// Worker processes to spread the sockets over. Rooms, pairs and
    /// churn rooms go whole, with everything their checks need, to one
    /// worker each; rates are totals over all workers. Each worker has its
    /// own open-file limit and its own source addresses, so a run can hold
    /// more sockets than one process may open files.
    #[arg(global = true, long, default_value_t = 1)]
    pub workers: usize,

    /// The executable workers run; this one when unset. Tests set it,
    /// because their own executable is the test harness, not the tool.
    #[arg(skip)]
    #[serde(skip)]
    pub worker_exe: Option<PathBuf>,
}

impl Default for EnvOptions {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            options: EnvOptions,
        }
        <Bare as clap::Parser>::parse_from(["meshi-loadtest"]).options
    }
}

/// The options, checked: targets are allowed, limits are sane.
pub struct Env {
    pub options: EnvOptions,
    pub targets: Vec<Target>,
    pub connector: Connector,
    pub rest: Rest,
    pub progress: Progress,
}

impl Env {
    pub fn new(options: EnvOptions) -> Result<Env> {
        if options.urls.is_empty() {
            bail!("give at least one --url");
        }
        let targets = options
            .urls
            .iter()
            .map(|url| Target::parse(url, options.i_own_this_target))
            .collect::<Result<Vec<_>>>()?;
        let sources = target::sources(
            &options.source_ips,
            options.sources,
            options.i_own_this_target,
        )?;
        if !(options.socket_rate > 0.0 && options.socket_rate.is_finite()) {
            bail!("--socket-rate must be a positive number");
        }
        if !(options.timeout > 0.0 && options.timeout <= 600.0) {
            bail!("--timeout must be between 0 and 600 seconds");
        }
        if !(1..=worker::MAX_WORKERS).contains(&options.workers) {
            bail!("--workers must be between 1 and {}", worker::MAX_WORKERS);
        }
        let minter = match &options.jwt_secret_file {
            Some(path) => Some(Minter::from_file(
                path,
                options.jwt_issuer.clone(),
                options.jwt_audience.clone(),
            )?),
            None if options.jwt_issuer.is_some() || options.jwt_audience.is_some() => {
                bail!("--jwt-issuer and --jwt-audience need --jwt-secret-file")
            }
            None => None,
        };
        let timeout = Duration::from_secs_f64(options.timeout);
        Ok(Env {
            connector: Connector::new(targets.clone(), sources, timeout),
            rest: Rest::new(
                targets.clone(),
                options.register_concurrency.max(1),
                timeout * 3,
                minter,
            )?,
            progress: Progress::new(!options.quiet),
            targets,
            options,
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.options.timeout)
    }
}

#[derive(Default)]
struct Marks {
    phases: Vec<Phase>,
    load_start: Option<(Instant, Snapshot)>,
    load_end: Option<(Instant, Snapshot)>,
    figures: BTreeMap<String, f64>,
    notes: Vec<String>,
}

/// What a running scenario shares with the others and with the report.
pub struct Ctx {
    pub env: Env,
    pub stats: Arc<Stats>,
    run_id: String,
    gate: Barrier,
    marks: Mutex<Marks>,
    /// Set when this process is a worker of another run.
    link: Option<Link>,
}

impl Ctx {
    pub(crate) fn new(env: Env, parts: usize, link: Option<Link>) -> Ctx {
        let mut marks = Marks::default();
        if env.rest.mints_tokens() {
            marks.notes.push(
                "users were signed on with JWTs minted from --jwt-secret-file (created by the \
                 server at their first request, GET /me), not registered"
                    .to_owned(),
            );
        }
        if env.options.server_metrics && link.is_none() {
            marks
                .notes
                .push("the server's CPU and memory were read from its /metrics".to_owned());
        }
        Ctx {
            env,
            stats: Arc::new(Stats::new()),
            run_id: run_id(),
            gate: Barrier::new(parts.max(1)),
            marks: Mutex::new(marks),
            link,
        }
    }

    /// What the parent of a worker provisioned for its share of `part`
    /// (a scenario's name: one share per part of a mix); `None` when this
    /// process provisions its own users.
    pub(crate) fn given(&self, part: &str) -> Result<Option<&Given>> {
        let Some(link) = &self.link else {
            return Ok(None);
        };
        link.given(part)
            .map(Some)
            .with_context(|| format!("{part}: the worker was given no users"))
    }

    fn marks(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles of this run's users in one scenario: `lt<run><tag>_`, so
    /// runs against the same database never collide.
    pub fn handle_prefix(&self, tag: char) -> String {
        format!("lt{}{tag}_", self.run_id)
    }

    pub fn socket_rate(&self) -> f64 {
        self.env.options.socket_rate
    }

    pub fn timeout(&self) -> Duration {
        self.env.timeout()
    }

    /// Marks a phase from now until the returned guard drops.
    pub fn phase(&self, name: impl Into<String>) -> PhaseGuard<'_> {
        PhaseGuard {
            ctx: self,
            name: name.into(),
            started: Instant::now(),
        }
    }

    /// Waits until every scenario of the run is set up, so their loads
    /// overlap; the first through marks the start of the load window.
    pub async fn start_load(&self) {
        self.gate.wait().await;
        if let Some(link) = &self.link {
            // Workers load over one window: each waits here until every
            // other worker has opened its sockets too.
            link.ready_and_wait(self.stats.open_sockets()).await;
        }
        let mut marks = self.marks();
        if marks.load_start.is_none() {
            marks.load_start = Some((Instant::now(), self.stats.snapshot()));
        }
    }

    /// Marks the end of the load window (the first call counts).
    pub fn end_load(&self) {
        let mut marks = self.marks();
        if marks.load_end.is_none() {
            marks.load_end = Some((Instant::now(), self.stats.snapshot()));
        }
    }

    /// A scenario-specific result for the report.
    pub fn figure(&self, name: &str, value: f64) {
        self.marks().figures.insert(name.to_owned(), value);
    }

    /// Something a reader of the report should know.
    pub fn note(&self, text: impl Into<String>) {
        self.marks().notes.push(text.into());
    }

    pub async fn server_sample(&self) -> Option<ProcSample> {
        if let Some(pid) = self.env.options.server_pid {
            return ProcSample::read(pid);
        }
        if !self.env.options.server_metrics {
            return None;
        }
        ProcSample::from_metrics(&self.env.rest.first_metrics().await?)
    }
}

pub struct PhaseGuard<'a> {
    ctx: &'a Ctx,
    name: String,
    started: Instant,
}

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        let epoch = self.ctx.stats.epoch();
        let phase = Phase {
            name: std::mem::take(&mut self.name),
            start_secs: self.started.saturating_duration_since(epoch).as_secs_f64(),
            secs: self.started.elapsed().as_secs_f64(),
        };
        self.ctx.marks().phases.push(phase);
    }
}

fn run_id() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..6)
        .map(|_| DIGITS[fastrand::usize(..DIGITS.len())] as char)
        .collect()
}

/// Runs `scenario` against `env` and reports what happened; with
/// `--workers` above 1, over that many worker processes.
pub async fn run(env: Env, scenario: Scenario) -> Result<Report> {
    if env.options.workers > 1 {
        return worker::run_parent(env, scenario).await;
    }
    Ok(run_in(env, scenario, None).await?.0)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs `scenario` in this process, as the whole run or as one worker of
/// it (`link`); the context comes back for what a worker sends on.
pub(crate) async fn run_in(
    env: Env,
    scenario: Scenario,
    link: Option<Link>,
) -> Result<(Report, Arc<Ctx>)> {
    let nofile = system::raise_nofile_limit();
    scenario.validate()?;
    let ctx = Arc::new(Ctx::new(env, scenario.parts(), link));
    let measuring = Measuring::start(&ctx, nofile).await;
    let reporter = ctx
        .link
        .is_some()
        .then(|| tokio::spawn(worker::report_progress(ctx.stats.clone())));

    let outcome = scenario.run(&ctx).await;

    if let Some(reporter) = reporter {
        reporter.abort();
    }
    let (report, ()) = measuring.finish(&ctx, &scenario, outcome).await?;
    Ok((report, ctx))
}

/// What a run measures around its load, in this process or over workers:
/// the tool's and the server's usage before and after, and the timeline a
/// sampler takes meanwhile.
pub(crate) struct Measuring {
    started_at: String,
    nofile: u64,
    own_before: OwnUsage,
    server_before: Option<ProcSample>,
    stop: oneshot::Sender<()>,
    sampler: tokio::task::JoinHandle<Timeline>,
}

impl Measuring {
    pub(crate) async fn start(ctx: &Arc<Ctx>, nofile: u64) -> Self {
        let (stop, stopped) = oneshot::channel();
        Measuring {
            started_at: now_rfc3339(),
            nofile,
            own_before: system::own_usage(),
            server_before: ctx.server_sample().await,
            stop,
            sampler: tokio::spawn(sample(ctx.clone(), stopped)),
        }
    }

    /// Stops the sampler; unless the load failed, reads the usage after it
    /// and builds the report.
    pub(crate) async fn finish<T>(
        self,
        ctx: &Ctx,
        scenario: &Scenario,
        outcome: Result<T>,
    ) -> Result<(Report, T)> {
        let _ = self.stop.send(());
        let timeline = self.sampler.await.unwrap_or_default();
        let value = outcome?;
        let own_after = system::own_usage();
        let server_after = ctx.server_sample().await;
        let report = build_report(
            ctx,
            scenario,
            self.started_at,
            self.nofile,
            (self.own_before, own_after),
            self.server_before.zip(server_after),
            timeline,
        );
        Ok((report, value))
    }
}

pub(crate) fn build_report(
    ctx: &Ctx,
    scenario: &Scenario,
    started_at: String,
    nofile: u64,
    own: (OwnUsage, OwnUsage),
    server: Option<(ProcSample, ProcSample)>,
    timeline: Timeline,
) -> Report {
    let stats = &ctx.stats;
    let elapsed = stats.epoch().elapsed().as_secs_f64();
    let marks = ctx.marks();
    let counters: BTreeMap<String, u64> = Count::ALL
        .iter()
        .map(|&c| (c.name().to_owned(), stats.count(c)))
        .collect();
    let mut rates = BTreeMap::new();
    let mut load_secs = 0.0;
    let mut load_start_secs = 0.0;
    if let (Some((start, before)), Some((end, after))) = (&marks.load_start, &marks.load_end) {
        load_start_secs = start.saturating_duration_since(stats.epoch()).as_secs_f64();
        load_secs = end.saturating_duration_since(*start).as_secs_f64();
        if load_secs > 0.0 {
            for &count in Count::ALL {
                let delta = after[count as usize].saturating_sub(before[count as usize]);
                if delta > 0 {
                    rates.insert(
                        format!("{}_per_sec", count.name()),
                        delta as f64 / load_secs,
                    );
                }
            }
        }
    }
    let latency_ms = Lat::ALL
        .iter()
        .filter_map(|&lat| {
            let h = stats.latency(lat);
            (!h.is_empty()).then(|| (lat.name().to_owned(), Percentiles::of(&h)))
        })
        .collect();
    let cpu_secs = |u: &OwnUsage| (u.user + u.system).as_secs_f64();
    let server = server.map(|(before, after)| ServerUsage {
        pid: ctx.env.options.server_pid.unwrap_or(0),
        cpu_secs: (after.cpu().saturating_sub(before.cpu())).as_secs_f64(),
        cpu_percent: 100.0 * after.cpu().saturating_sub(before.cpu()).as_secs_f64()
            / elapsed.max(1e-9),
        rss_start_kib: before.rss_kib,
        rss_end_kib: after.rss_kib,
        rss_peak_kib: after.peak_rss_kib,
        threads: after.threads,
    });
    let mut report = Report {
        tool: concat!("meshi-loadtest ", env!("CARGO_PKG_VERSION")).to_owned(),
        scenario: scenario.name().to_owned(),
        params: scenario.params(),
        env: serde_json::to_value(&ctx.env.options).unwrap_or_default(),
        started_at,
        machine: system::Machine::current(nofile),
        elapsed_secs: elapsed,
        load_start_secs,
        load_secs,
        phases: marks.phases.clone(),
        counters,
        rates,
        figures: marks.figures.clone(),
        latency_ms,
        correctness: stats.checks(),
        errors_by_code: stats.errors(),
        closes_by_code: stats.closes(),
        transport_errors: stats.transport_errors(),
        tool_usage: report::ToolUsage {
            cpu_user_secs: (own.1.user.saturating_sub(own.0.user)).as_secs_f64(),
            cpu_system_secs: (own.1.system.saturating_sub(own.0.system)).as_secs_f64(),
            cpu_percent: 100.0 * (cpu_secs(&own.1) - cpu_secs(&own.0)) / elapsed.max(1e-9),
            max_rss_kib: own.1.max_rss_kib,
        },
        server,
        timeline,
        notes: marks.notes.clone(),
        warnings: Vec::new(),
        failures: Vec::new(),
        passed: true,
    };
    report.judge(&scenario.expected_counts());
    report
}

/// Once a second: counter rates, latency percentiles of the last second,
/// open sockets, and CPU and memory of the tool and the server.
async fn sample(ctx: Arc<Ctx>, mut stop: oneshot::Receiver<()>) -> Timeline {
    const EVERY: Duration = Duration::from_secs(1);
    let stats = &ctx.stats;
    let mut timeline = Timeline::new(EVERY);
    let mut last_at = Instant::now();
    let mut last_counts = stats.snapshot();
    let mut last_own = system::own_usage();
    let mut last_server = ctx.server_sample().await;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    loop {
        let done = tokio::select! {
            _ = ticker.tick() => false,
            _ = &mut stop => true,
        };
        let now = Instant::now();
        let dt = now.saturating_duration_since(last_at).as_secs_f64();
        if dt >= 0.2 || !done {
            let at = now.saturating_duration_since(stats.epoch()).as_secs_f64();
            let counts = stats.snapshot();
            let mut point = BTreeMap::new();
            for &count in Count::ALL {
                let i = count as usize;
                let delta = counts[i].saturating_sub(last_counts[i]);
                point.insert(
                    format!("{}_per_sec", count.name()),
                    Some(delta as f64 / dt.max(1e-9)),
                );
            }
            for &lat in Lat::ALL {
                let h = stats.take_interval(lat);
                let (p50, p99) = if h.is_empty() {
                    (None, None)
                } else {
                    (
                        Some(h.value_at_quantile(0.5) as f64 / 1000.0),
                        Some(h.value_at_quantile(0.99) as f64 / 1000.0),
                    )
                };
                point.insert(format!("{}_p50_ms", lat.name()), p50);
                point.insert(format!("{}_p99_ms", lat.name()), p99);
            }
            point.insert("sockets_open".to_owned(), Some(stats.open_sockets() as f64));
            let own = system::own_usage();
            let own_cpu = (own.user + own.system).saturating_sub(last_own.user + last_own.system);
            point.insert(
                "tool_cpu_percent".to_owned(),
                Some(100.0 * own_cpu.as_secs_f64() / dt.max(1e-9)),
            );
            let server = ctx.server_sample().await;
            if let (Some(before), Some(after)) = (&last_server, &server) {
                let cpu = after.cpu().saturating_sub(before.cpu());
                point.insert(
                    "server_cpu_percent".to_owned(),
                    Some(100.0 * cpu.as_secs_f64() / dt.max(1e-9)),
                );
                point.insert(
                    "server_rss_mib".to_owned(),
                    Some(after.rss_kib as f64 / 1024.0),
                );
            }
            timeline.push(at, point);
            last_at = now;
            last_counts = counts;
            last_own = own;
            last_server = server;
        }
        if done {
            break;
        }
    }
    timeline.prune();
    timeline
}
