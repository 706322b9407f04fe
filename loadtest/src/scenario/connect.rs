//! `connect`: open N authenticated sockets at a set rate and hold them.
//! Measures how fast they open and, given the server's pid, what each
//! idle socket costs the server in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::MissedTickBehavior;

use super::{check_duration, check_sockets, load_for, Stage};
use crate::client::{Conn, Event};
use crate::ctx::Ctx;
use crate::frame::Incoming;
use crate::stats::Count;

/// How long the server is left alone after the last socket opened before
/// its memory is read, so allocations of the connect burst settle.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct ConnectOpts {
    /// Sockets to open.
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,

    /// Distinct users behind the sockets (default one per socket; sockets
    /// of one user share its token).
    #[arg(long)]
    pub users: Option<usize>,

    /// New sockets per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,

    /// Seconds to hold the sockets open once they are all up.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
}

impl Default for ConnectOpts {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            options: ConnectOpts,
        }
        <Bare as clap::Parser>::parse_from(["connect"]).options
    }
}

impl ConnectOpts {
    pub fn validate(&self) -> Result<()> {
        check_sockets(self.sockets)?;
        check_duration(self.hold)?;
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            bail!("connect: --rate must be a positive number");
        }
        if self.users == Some(0) {
            bail!("connect: --users must be at least 1");
        }
        Ok(())
    }
}

/// Runs the scenario; `alone` says no other scenario shares the server,
/// so its memory growth is the sockets' doing.
pub(crate) async fn run(ctx: &Arc<Ctx>, opts: &ConnectOpts, alone: bool) -> Result<()> {
    opts.validate()?;
    let tokens: Vec<String> = match ctx.given("connect")? {
        Some(given) if !given.tokens.is_empty() => given.tokens.clone(),
        Some(_) => bail!("connect: the worker was given no users"),
        None => register(ctx, opts).await?,
    };
    let user_count = tokens.len();
    let rss_before = ctx.server_sample().await.map(|s| s.rss_kib);
    let (stage, watch) = watch::channel(Stage::Ready);
    let (ready, mut readied) = mpsc::unbounded_channel::<bool>();
    let permits = Arc::new(Semaphore::new(ctx.env.options.connect_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(opts.sockets);
    let phase = ctx.phase("connect: open sockets");
    let started = Instant::now();
    let bar = ctx.env.progress.bar(opts.sockets as u64, "connect: open");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.rate));
    // The timer is coarser than high rates; catching up in bursts keeps the
    // average at the rate asked for.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut opened = 0u64;
    let mut answered = 0usize;
    for index in 0..opts.sockets {
        ticker.tick().await;
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let holder = Holder {
            ctx: ctx.clone(),
            index,
            token: tokens[index % user_count].clone(),
        };
        tasks.push(tokio::spawn(holder.run(
            permit,
            ready.clone(),
            watch.clone(),
        )));
        while let Ok(ok) = readied.try_recv() {
            answered += 1;
            opened += u64::from(ok);
            bar.inc(1);
        }
    }
    drop(ready);
    while answered < opts.sockets {
        match readied.recv().await {
            Some(ok) => {
                answered += 1;
                opened += u64::from(ok);
                bar.inc(1);
            }
            None => break,
        }
    }
    bar.finish_and_clear();
    let connect_secs = started.elapsed().as_secs_f64();
    drop(phase);
    if opened == 0 {
        bail!(
            "connect: no socket could connect and say hello ({:?})",
            ctx.stats.transport_errors()
        );
    }
    ctx.figure("connect_sockets_open", opened as f64);
    ctx.figure("connect_per_sec", opened as f64 / connect_secs.max(1e-9));
    if alone {
        if let Some(before) = rss_before {
            server_memory_figures(ctx, before, opened).await;
        }
    }

    ctx.start_load().await;
    {
        let _phase = ctx.phase("connect: hold");
        let _ = stage.send(Stage::Load);
        let stats = &ctx.stats;
        load_for(
            ctx,
            Duration::from_secs_f64(opts.hold),
            "connect: hold",
            || format!("open {}", stats.open_sockets()),
        )
        .await;
        ctx.end_load();
    }
    let _phase = ctx.phase("connect: close");
    let _ = stage.send(Stage::Quiet);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// What `opened` sockets cost the server, from its memory before they
/// opened (`before_kib`) and now, once the connect burst has settled.
///
/// Sockets go round-robin over the targets and `--server-pid` is one of
/// them, so with a cluster it holds its share of the sockets, not all.
pub(crate) async fn server_memory_figures(ctx: &Ctx, before_kib: u64, opened: u64) {
    tokio::time::sleep(SETTLE).await;
    if let Some(after) = ctx.server_sample().await {
        ctx.figure("server_rss_before_sockets_kib", before_kib as f64);
        ctx.figure("server_rss_with_sockets_kib", after.rss_kib as f64);
        let grown = after.rss_kib.saturating_sub(before_kib) as f64 * 1024.0;
        let held = opened as f64 / ctx.env.targets.len().max(1) as f64;
        ctx.figure("server_bytes_per_socket", grown / held.max(1.0));
    }
}

/// Provisions the users behind the sockets (registers them, or signs them
/// on with minted JWTs): `--users`, or one per socket.
pub(crate) async fn register(ctx: &Ctx, opts: &ConnectOpts) -> Result<Vec<String>> {
    let user_count = opts.users.unwrap_or(opts.sockets).min(opts.sockets);
    let _phase = ctx.phase("connect: register users");
    let users = ctx
        .env
        .rest
        .register_many(&ctx.handle_prefix('s'), user_count, &ctx.env.progress)
        .await?;
    Ok(users.into_iter().map(|user| user.token).collect())
}

struct Holder {
    ctx: Arc<Ctx>,
    index: usize,
    token: String,
}

impl Holder {
    /// Opens the socket, says whether it worked, and holds it until the
    /// hold is over.
    async fn run(
        self,
        permit: OwnedSemaphorePermit,
        ready: mpsc::UnboundedSender<bool>,
        mut stage: watch::Receiver<Stage>,
    ) {
        let ctx = &self.ctx;
        let conn = Conn::open(
            &ctx.env.connector,
            &ctx.stats,
            self.index,
            ctx.socket_rate(),
        )
        .await;
        let conn = match conn {
            Some(mut conn) => {
                let said = conn.hello(&self.token, ctx.timeout()).await;
                said.then_some(conn)
            }
            None => None,
        };
        drop(permit);
        let _ = ready.send(conn.is_some());
        let Some(mut conn) = conn else {
            return;
        };
        loop {
            tokio::select! {
                next = conn.ws.next() => match Event::of(next) {
                    Event::Text(text) => {
                        match Incoming::parse(text.as_str()) {
                            Some(frame) => {
                                if let Some(error) = &frame.error {
                                    ctx.stats.error(&error.code);
                                }
                            }
                            None => ctx.stats.add(Count::Unparsed, 1),
                        }
                    }
                    Event::Nothing => {}
                    Event::Ended(ended) => {
                        conn.record_end(ended);
                        return;
                    }
                },
                changed = stage.changed() => {
                    let holding = matches!(*stage.borrow_and_update(), Stage::Ready | Stage::Load);
                    if changed.is_err() || !holding {
                        break;
                    }
                }
            }
        }
        conn.close().await;
    }
}
