//! One run in this process, and what any run measures around its load:
//! the tool's and the server's usage before and after, the timeline a
//! sampler takes meanwhile, and the report built from them.
//!
//! A run of one process, a worker and the parent of workers all measure
//! this way, so it stands beneath both `run` and `worker` and must import
//! neither: a worker's part reaches it only through the context's link.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::oneshot;

use crate::ctx::{Ctx, Env, Link};
use crate::report::{self, Report, ServerUsage, Timeline};
use crate::scenario::Scenario;
use crate::stats::{Count, Lat, Percentiles};
use crate::system::{self, OwnUsage, ProcSample};

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
    link: Option<Box<dyn Link>>,
) -> Result<(Report, Arc<Ctx>)> {
    let nofile = system::raise_nofile_limit();
    scenario.validate()?;
    let ctx = Arc::new(Ctx::new(env, scenario.parts(), link));
    let measuring = Measuring::start(&ctx, nofile).await;
    let reporter = ctx
        .link
        .as_ref()
        .map(|link| tokio::spawn(link.report_progress(ctx.stats.clone())));

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
