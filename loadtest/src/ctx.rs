//! The frame every scenario runs in: the validated environment, the shared
//! statistics, phase marks, and what the run in a worker asks of its parent.
//!
//! Scenarios, the worker processes and the run that starts them all hold a
//! [`Ctx`], so it stands beneath them and must import none of `run`,
//! `scenario` or `worker`: anything of theirs it needed would tie them all
//! into one circle. What only a worker's parent can do comes in through
//! the `Link` trait, implemented where the pipes are.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;

use crate::client::Connector;
use crate::jwt::Minter;
use crate::progress::Progress;
use crate::provision::Rest;
use crate::report::Phase;
use crate::stats::{Snapshot, Stats};
use crate::system::ProcSample;
use crate::target::{self, Target};

/// The most worker processes a run starts: the bound of `--workers`,
/// checked with the other options.
pub const MAX_WORKERS: usize = 64;

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
        if !(1..=MAX_WORKERS).contains(&options.workers) {
            bail!("--workers must be between 1 and {}", MAX_WORKERS);
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

/// What the run in a worker asks of its parent. The worker's pipes are
/// `worker`'s; the context sees only this, so it need not import them.
pub(crate) trait Link: Send + Sync {
    /// What the parent provisioned for this worker's share of `part`.
    fn given(&self, part: &str) -> Option<&Given>;

    /// Tells the parent this worker's sockets are open, then waits for the
    /// parent's `go` (once, however often it is called).
    fn ready_and_wait(&self, open: i64) -> BoxFuture<'_, ()>;

    /// Tells the parent how many sockets have answered so far, until
    /// aborted.
    fn report_progress(&self, stats: Arc<Stats>) -> BoxFuture<'static, ()>;
}

#[derive(Default)]
pub(crate) struct Marks {
    pub(crate) phases: Vec<Phase>,
    pub(crate) load_start: Option<(Instant, Snapshot)>,
    pub(crate) load_end: Option<(Instant, Snapshot)>,
    pub(crate) figures: BTreeMap<String, f64>,
    pub(crate) notes: Vec<String>,
}

/// What a running scenario shares with the others and with the report.
pub struct Ctx {
    pub env: Env,
    pub stats: Arc<Stats>,
    run_id: String,
    gate: Barrier,
    marks: Mutex<Marks>,
    /// Set when this process is a worker of another run.
    pub(crate) link: Option<Box<dyn Link>>,
}

impl Ctx {
    pub(crate) fn new(env: Env, parts: usize, link: Option<Box<dyn Link>>) -> Ctx {
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

    pub(crate) fn marks(&self) -> MutexGuard<'_, Marks> {
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
