//! One report out of the parent's and its workers': counters, rates,
//! checks and errors added up, latencies from the merged histograms,
//! phases and timelines moved onto the parent's clock, and a note on how
//! the run was dealt out.
//!
//! It works only on what the workers reported and must not reach back to
//! them or to the server: it runs once they have all exited, and the parent
//! judges the merged report afterwards, as one. Kept to data in and data
//! out, every rule of adding up can be tested on made-up reports.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::ipc::{unix_secs_at, Summary};
use super::plan::{Share, Slice, Units};
use crate::ctx::Ctx;
use crate::report::{Phase, Report, Timeline};
use crate::stats::{self, Percentiles};

/// Figures of a worker's report that count its own sockets, so add up
/// over the workers.
const SUMMED_FIGURES: &[&str] = &["connect_sockets_open", "rooms_member_sockets"];

/// Adds the workers' results to the parent's report (which holds the
/// registration, the server's readings and the parent's own cost).
pub(super) fn merge(
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
}
