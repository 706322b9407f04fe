//! `pairs`: K matched pairs ping-pong direct messages, each persisted by
//! the server before it is acknowledged. One side pings, the other answers
//! each ping with a pong carrying the ping's stamp, so a round trip is
//! timed by the side that started it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::StreamExt;
use meshi_protocol::Request;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::rooms::Shared;
use super::{check_duration, check_sockets, connect_all, load_for, settle, until, Stage};
use crate::check::{CheckTotals, StreamCheck};
use crate::client::{Conn, Ended, Event};
use crate::ctx::Ctx;
use crate::frame::{Incoming, SeqData, Stamp};
use crate::stats::{Count, Lat};

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct PairsOpts {
    /// Matched pairs, two sockets each.
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,

    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Pings each pair keeps in flight.
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,

    /// Length of each message text in bytes.
    #[arg(long, default_value_t = 64)]
    pub message_bytes: usize,
}

impl Default for PairsOpts {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            options: PairsOpts,
        }
        <Bare as clap::Parser>::parse_from(["pairs"]).options
    }
}

impl PairsOpts {
    pub fn validate(&self) -> Result<()> {
        check_sockets(self.pairs * 2)?;
        check_duration(self.duration)?;
        if self.inflight == 0 || self.inflight > 100 {
            bail!("pairs: --inflight must be between 1 and 100");
        }
        if self.message_bytes > 4000 {
            bail!("pairs: --message-bytes is at most 4000");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Say {
    /// Start a round trip.
    Ping,
    /// Answer the ping stamped at this time.
    Pong(u64),
}

struct Talker {
    conn: Conn,
    conversation: Arc<str>,
    check: StreamCheck,
    starts: bool,
    inflight: usize,
    /// Sends awaiting their reply: (ref, stamp time, what it was).
    outstanding: VecDeque<(u64, u64, Say)>,
    sent: u64,
}

impl Talker {
    async fn run(mut self, shared: Arc<Shared>, mut stage: watch::Receiver<Stage>) -> CheckTotals {
        let mut sending = false;
        let mut last_seq = None;
        let mut drain_until = None;
        let ended = 'talk: loop {
            if last_seq.is_some_and(|last| self.check.last_seq() >= last)
                && self.outstanding.is_empty()
            {
                break None;
            }
            tokio::select! {
                next = self.conn.ws.next() => match Event::of(next) {
                    Event::Text(text) => {
                        if let Some(say) = self.on_text(text.as_str(), &shared, sending) {
                            if let Err(ended) = self.say(say, &shared).await {
                                break 'talk Some(ended);
                            }
                        }
                    }
                    Event::Nothing => {}
                    Event::Ended(ended) => break Some(ended),
                },
                changed = stage.changed() => {
                    if changed.is_err() {
                        break None;
                    }
                    let now = stage.borrow_and_update().clone();
                    match now {
                        Stage::Ready => {}
                        Stage::Load => {
                            sending = true;
                            if self.starts {
                                for _ in 0..self.inflight {
                                    if let Err(ended) = self.say(Say::Ping, &shared).await {
                                        break 'talk Some(ended);
                                    }
                                }
                            }
                        }
                        Stage::Quiet => sending = false,
                        Stage::Drain(finals) => {
                            sending = false;
                            last_seq = Some(finals.get(&self.conversation).copied().unwrap_or(0));
                            drain_until = Some(tokio::time::Instant::now() + shared.drain());
                        }
                    }
                }
                _ = until(drain_until) => break None,
            }
        };
        let totals = match ended {
            None => self.check.finish(last_seq),
            Some(ended) => {
                self.conn.record_end(ended);
                shared
                    .in_flight
                    .fetch_sub(self.outstanding.len() as i64, Ordering::Relaxed);
                self.check.finish(None)
            }
        };
        if ended.is_none() {
            self.conn.close().await;
        }
        totals
    }

    async fn say(&mut self, say: Say, shared: &Shared) -> Result<(), Ended> {
        shared.reserve_send();
        self.conn.pacer.ready().await;
        if !shared.still_publishing() {
            return Ok(());
        }
        let now = shared.stats.now_us();
        self.sent += 1;
        let stamp = Stamp {
            sent_us: now,
            origin_us: match say {
                Say::Ping => now,
                Say::Pong(origin) => origin,
            },
            sender: self.conn.index as u64,
            n: self.sent,
        };
        let reference = self.conn.next_ref();
        let request = Request::DmSend {
            conversation_id: self.conversation.to_string(),
            text: stamp.text(shared.message_bytes()),
            client_msg_id: None,
        };
        self.outstanding.push_back((reference, now, say));
        shared.stats.add(Count::DmSent, 1);
        self.conn
            .send_now(Some(reference), &request)
            .await
            .map_err(|_| Ended::Dropped)
    }

    /// Checks and times one frame; says what to send in answer, if
    /// anything.
    fn on_text(&mut self, text: &str, shared: &Shared, sending: bool) -> Option<Say> {
        let stats = &shared.stats;
        let Some(frame) = Incoming::parse(text) else {
            stats.add(Count::Unparsed, 1);
            return None;
        };
        match frame.kind.as_ref() {
            "dm.message" => {
                if frame.conversation_id.as_deref() != Some(&*self.conversation) {
                    return None;
                }
                let Some(seq) = frame.seq else {
                    stats.add(Count::Unparsed, 1);
                    return None;
                };
                self.check
                    .observe(seq, frame.message_id.as_deref().unwrap_or(""));
                stats.add(Count::DmDelivered, 1);
                let stamp = frame.text.as_deref().and_then(Stamp::parse)?;
                stats.record_since(Lat::DmDelivery, self.conn.index, stamp.sent_us);
                if stamp.sender == self.conn.index as u64 {
                    return None;
                }
                if self.starts {
                    stats.add(Count::RoundTrips, 1);
                    stats.record_since(Lat::DmRoundTrip, self.conn.index, stamp.origin_us);
                    sending.then_some(Say::Ping)
                } else {
                    sending.then_some(Say::Pong(stamp.origin_us))
                }
            }
            "ok" => {
                // Raised before the send counts as answered, so the drain,
                // which reads the finals once nothing is in flight, has it.
                let reference = frame.reference?;
                if !self.outstanding.iter().any(|(r, ..)| *r == reference) {
                    return None;
                }
                if let Some(data) = frame.data_as::<SeqData>() {
                    shared.raise_final(&self.conversation, data.seq);
                }
                let (sent_us, _) = self.settle(reference, shared)?;
                stats.record_since(Lat::DmAck, self.conn.index, sent_us);
                stats.add(Count::DmAcked, 1);
                None
            }
            "error" => {
                let error = frame.error.as_ref()?;
                stats.error(&error.code);
                if let Some(ms) = error.retry_after_ms {
                    self.conn.pacer.back_off(ms);
                }
                let (_, say) = frame.reference.and_then(|r| self.settle(r, shared))?;
                // A refused send would end this pair's exchange; send it
                // again once the pacer lets us.
                (error.code == "rate_limited" && sending).then_some(say)
            }
            _ => None,
        }
    }

    fn settle(&mut self, reference: u64, shared: &Shared) -> Option<(u64, Say)> {
        let at = self
            .outstanding
            .iter()
            .position(|(r, ..)| *r == reference)?;
        let (_, sent_us, say) = self.outstanding.remove(at)?;
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        Some((sent_us, say))
    }
}

/// Registers (or signs on) two users per pair and matches them over REST;
/// returns each pair as its two tokens and its conversation.
pub(crate) async fn match_pairs(ctx: &Ctx, opts: &PairsOpts) -> Result<Vec<Matched>> {
    let _phase = ctx.phase("pairs: register and match");
    let pairs = ctx
        .env
        .rest
        .pairs(&ctx.handle_prefix('p'), opts.pairs, &ctx.env.progress)
        .await?;
    Ok(pairs
        .into_iter()
        .map(|pair| Matched {
            tokens: [pair.a.token, pair.b.token],
            conversation: pair.conversation_id,
        })
        .collect())
}

/// A matched pair: the tokens of its two sides and their conversation.
pub(crate) struct Matched {
    pub tokens: [String; 2],
    pub conversation: String,
}

/// Runs the scenario; as a worker of a larger run, over the pairs its
/// parent matched for it.
pub(crate) async fn run(ctx: &Arc<Ctx>, opts: &PairsOpts) -> Result<()> {
    opts.validate()?;
    let pairs = match ctx.given("pairs")? {
        Some(given) => {
            if given.conversations.len() != opts.pairs || given.tokens.len() != opts.pairs * 2 {
                bail!(
                    "pairs: the worker was given {} pairs, not {}",
                    given.conversations.len(),
                    opts.pairs
                );
            }
            given
                .conversations
                .iter()
                .zip(given.tokens.chunks(2))
                .map(|(conversation, tokens)| Matched {
                    tokens: [tokens[0].clone(), tokens[1].clone()],
                    conversation: conversation.clone(),
                })
                .collect()
        }
        None => match_pairs(ctx, opts).await?,
    };
    let conns = {
        let _phase = ctx.phase("pairs: connect");
        connect_all(ctx, "pairs: connect", opts.pairs * 2, |i| {
            pairs[i / 2].tokens[i % 2].as_str()
        })
        .await
    };
    if conns.iter().all(Option::is_none) {
        bail!(
            "pairs: no socket could connect and say hello ({:?})",
            ctx.stats.transport_errors()
        );
    }
    let shared = Shared::new(ctx.stats.clone(), opts.message_bytes, ctx.timeout());
    let (stage, watch) = watch::channel(Stage::Ready);
    let mut tasks = Vec::with_capacity(conns.len());
    for (index, conn) in conns.into_iter().enumerate() {
        let Some(conn) = conn else {
            continue;
        };
        let talker = Talker {
            conn,
            conversation: Arc::from(pairs[index / 2].conversation.as_str()),
            check: StreamCheck::new(0),
            starts: index % 2 == 0,
            inflight: opts.inflight,
            outstanding: VecDeque::new(),
            sent: 0,
        };
        tasks.push(tokio::spawn(talker.run(shared.clone(), watch.clone())));
    }

    ctx.start_load().await;
    {
        let _phase = ctx.phase("pairs: load");
        let _ = stage.send(Stage::Load);
        let stats = &ctx.stats;
        let started = Instant::now();
        load_for(
            ctx,
            Duration::from_secs_f64(opts.duration),
            "pairs: load",
            || {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                format!(
                    "round trips {:.0}/s",
                    stats.count(Count::RoundTrips) as f64 / secs
                )
            },
        )
        .await;
        ctx.end_load();
        let _ = stage.send(Stage::Quiet);
    }
    let _phase = ctx.phase("pairs: drain");
    shared.stop_publishing();
    if !settle(&shared.in_flight, ctx.timeout()).await {
        ctx.note(format!(
            "pairs: {} sends were still unanswered when the drain began",
            shared.in_flight.load(Ordering::Relaxed)
        ));
    }
    let _ = stage.send(Stage::Drain(shared.finals()));
    let mut totals = CheckTotals::default();
    for task in tasks {
        if let Ok(talker) = task.await {
            totals.add(&talker);
        }
    }
    ctx.stats.add_checks(&totals);
    Ok(())
}
