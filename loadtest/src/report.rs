//! The result of a run, as data: what was asked, what was measured, what
//! was wrong. Serializes to JSON as is; [`Report::summary`] gives the text
//! printed at the end of a run and `html` renders the same data.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check::CheckTotals;
use crate::stats::Percentiles;
use crate::system::Machine;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub scenario: String,
    pub params: serde_json::Value,
    pub env: serde_json::Value,
    pub started_at: String,
    pub machine: Machine,
    pub elapsed_secs: f64,
    /// When the load window began, in seconds since the run's start.
    pub load_start_secs: f64,
    /// Length of the load window, over which `rates` are computed.
    pub load_secs: f64,
    pub phases: Vec<Phase>,
    pub counters: BTreeMap<String, u64>,
    /// Counters per second over the load window.
    pub rates: BTreeMap<String, f64>,
    /// Scenario-specific results (connect rate, memory per socket, ...).
    pub figures: BTreeMap<String, f64>,
    pub latency_ms: BTreeMap<String, Percentiles>,
    pub correctness: CheckTotals,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Sockets the server closed, by close code.
    pub closes_by_code: BTreeMap<String, u64>,
    /// Failures below the protocol: refused connects, timeouts, resets.
    pub transport_errors: BTreeMap<String, u64>,
    pub tool_usage: ToolUsage,
    pub server: Option<ServerUsage>,
    pub timeline: Timeline,
    pub notes: Vec<String>,
    /// Worth a look, but the run still counts.
    pub warnings: Vec<String>,
    /// The run does not count: lost, duplicated or reordered messages, or
    /// nothing measured at all.
    pub failures: Vec<String>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub start_secs: f64,
    pub secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolUsage {
    pub cpu_user_secs: f64,
    pub cpu_system_secs: f64,
    /// Of one core, over the whole run.
    pub cpu_percent: f64,
    pub max_rss_kib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerUsage {
    /// 0 when read from `/metrics`.
    pub pid: u32,
    pub cpu_secs: f64,
    /// Of one core, over the whole run.
    pub cpu_percent: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub rss_peak_kib: u64,
    pub threads: u64,
}

/// Values once per interval; a series holds `None` where it had nothing to
/// say (a latency in a second without samples).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub interval_secs: f64,
    pub t_secs: Vec<f64>,
    pub series: BTreeMap<String, Vec<Option<f64>>>,
}

impl Timeline {
    pub fn new(every: Duration) -> Timeline {
        Timeline {
            interval_secs: every.as_secs_f64(),
            ..Timeline::default()
        }
    }

    pub fn push(&mut self, at_secs: f64, point: BTreeMap<String, Option<f64>>) {
        let len = self.t_secs.len();
        for (name, value) in point {
            let series = self.series.entry(name).or_insert_with(|| vec![None; len]);
            series.push(value);
        }
        self.t_secs.push(at_secs);
        for series in self.series.values_mut() {
            series.resize(len + 1, None);
        }
    }

    /// Drops series that never said anything but zero.
    pub fn prune(&mut self) {
        self.series
            .retain(|_, values| values.iter().any(|v| v.is_some_and(|v| v != 0.0)));
    }
}

impl Report {
    /// Fills `warnings`, `failures` and `passed`. `expected` names the
    /// counters that must be above zero for the run to mean anything.
    pub fn judge(&mut self, expected: &[&str]) {
        let checks = self.correctness;
        if checks.lost > 0 {
            self.failures.push(format!("{} messages lost", checks.lost));
        }
        if checks.duplicated > 0 {
            self.failures
                .push(format!("{} messages delivered twice", checks.duplicated));
        }
        if checks.out_of_order > 0 {
            self.failures
                .push(format!("{} messages out of order", checks.out_of_order));
        }
        for name in expected {
            if self.counters.get(*name).copied().unwrap_or(0) == 0 {
                self.failures.push(format!("nothing counted as {name}"));
            }
        }
        let closes: u64 = self.closes_by_code.values().sum();
        if closes > 0 {
            self.warnings.push(format!(
                "the server closed {closes} sockets: {:?}",
                self.closes_by_code
            ));
        }
        let transport: u64 = self.transport_errors.values().sum();
        if transport > 0 {
            self.warnings.push(format!(
                "{transport} transport failures: {:?}",
                self.transport_errors
            ));
        }
        if !self.errors_by_code.is_empty() {
            self.warnings
                .push(format!("error frames: {:?}", self.errors_by_code));
        }
        let unparsed = self.counters.get("unparsed_frames").copied().unwrap_or(0);
        if unparsed > 0 {
            self.warnings
                .push(format!("{unparsed} frames could not be read"));
        }
        self.passed = self.failures.is_empty();
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The text printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} — scenario {} — {:.1} s ({:.1} s of load) on {} cpus, {} MiB",
            self.tool,
            self.scenario,
            self.elapsed_secs,
            self.load_secs,
            self.machine.cpus,
            self.machine.memory_mib
        );
        let _ = writeln!(out, "\nphases:");
        for phase in &self.phases {
            let _ = writeln!(out, "  {:<28} {:>8.2} s", phase.name, phase.secs);
        }
        let _ = writeln!(out, "\ncounters (total, per second of load):");
        for (name, value) in self.counters.iter().filter(|(_, v)| **v > 0) {
            let rate = self
                .rates
                .get(&format!("{name}_per_sec"))
                .map_or(String::new(), |r| format!("{r:>12.1}/s"));
            let _ = writeln!(out, "  {name:<28} {value:>12} {rate}");
        }
        if !self.figures.is_empty() {
            let _ = writeln!(out, "\nfigures:");
            for (name, value) in &self.figures {
                let _ = writeln!(out, "  {name:<28} {value:>14.1}");
            }
        }
        let _ = writeln!(
            out,
            "\nlatency (ms)              count      p50      p90      p99    p99.9      max"
        );
        for (name, p) in &self.latency_ms {
            let _ = writeln!(
                out,
                "  {name:<18} {:>12} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                p.count, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        let c = &self.correctness;
        let _ = writeln!(
            out,
            "\nchecked {} messages over {} streams: {} lost, {} duplicated, {} out of order",
            c.messages, c.streams, c.lost, c.duplicated, c.out_of_order
        );
        let _ = writeln!(
            out,
            "tool cpu {:.1}% of a core, max rss {} MiB",
            self.tool_usage.cpu_percent,
            self.tool_usage.max_rss_kib / 1024
        );
        if let Some(server) = &self.server {
            let _ = writeln!(
                out,
                "server cpu {:.1}% of a core, rss {} -> {} MiB (peak {} MiB), {} threads",
                server.cpu_percent,
                server.rss_start_kib / 1024,
                server.rss_end_kib / 1024,
                server.rss_peak_kib / 1024,
                server.threads
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        for failure in &self.failures {
            let _ = writeln!(out, "FAILED: {failure}");
        }
        let _ = writeln!(out, "{}", if self.passed { "PASSED" } else { "FAILED" });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_series_stay_aligned() {
        let mut timeline = Timeline::new(Duration::from_secs(1));
        timeline.push(1.0, BTreeMap::from([("a".to_owned(), Some(1.0))]));
        timeline.push(
            2.0,
            BTreeMap::from([("b".to_owned(), Some(2.0)), ("z".to_owned(), Some(0.0))]),
        );
        assert_eq!(timeline.series["a"], vec![Some(1.0), None]);
        assert_eq!(timeline.series["b"], vec![None, Some(2.0)]);
        timeline.prune();
        assert!(!timeline.series.contains_key("z"));
    }
}
