//! The parent of a run over workers: it provisions every part's users once,
//! starts the workers with their specs, lets them into one load window
//! together, shows their progress, collects their summaries, and judges
//! the merged report.
//!
//! It sequences and must not decide the split (that is the plan's, which
//! can be tested without processes), frame messages beyond the `go` it
//! sends (the pipes are `ipc`'s) or add reports up (that is the merge's):
//! so this stays the one place that says in what order a run over workers
//! happens.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::future::try_join_all;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::ipc::{start, Heard, Spec, Summary, Up, PROGRESS_EVERY};
use super::merge::merge;
use super::plan::{given_for, parts_of, plan, share_of, units_of, Provisioned, Share, Units};
use crate::ctx::{Ctx, Env};
use crate::measure::Measuring;
use crate::report::Report;
use crate::scenario::{churn, connect, pairs, rooms, Scenario};
use crate::system;

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
