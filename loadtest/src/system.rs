//! What this process and the server under test cost: file limits, CPU
//! time and memory. Reads `/proc` for the server, so server figures are
//! Linux-only and need the server's pid on this machine.

use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};
use serde::{Deserialize, Serialize};

/// Raises the soft limit on open files to the hard limit and returns the
/// new soft limit (0 when it cannot be read).
///
/// Every socket is a file descriptor. The soft limit is often 1024, which
/// would cap a connect run long before the server does, while the hard
/// limit is what the administrator actually allows this process.
pub fn raise_nofile_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Ephemeral ports the kernel hands out per source address, from
/// `ip_local_port_range` (Linux's default range when it cannot be read).
///
/// A socket bound to a source address before it connects takes a port of
/// that address whatever it connects to, so this caps the sockets one
/// source address can hold at once.
pub fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut ends = range.split_whitespace().map(|n| n.parse::<usize>());
            match (ends.next()?, ends.next()?) {
                (Ok(low), Ok(high)) if high >= low => Some(high - low + 1),
                _ => None,
            }
        })
        .unwrap_or(60_999 - 32_768 + 1)
}

/// The hard limit on open files: as far as the soft limit can be raised.
pub fn nofile_hard_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(_, hard)| hard)
}

/// CPU time and peak memory of this process so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnUsage {
    pub user: Duration,
    pub system: Duration,
    pub max_rss_kib: u64,
}

pub fn own_usage() -> OwnUsage {
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return OwnUsage::default();
    };
    let micros = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec().max(0) as u64)
            + Duration::from_micros(tv.tv_usec().max(0) as u64)
    };
    OwnUsage {
        user: micros(usage.user_time()),
        system: micros(usage.system_time()),
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: usage.max_rss().max(0) as u64,
    }
}

/// One reading of another process from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProcSample {
    pub user: Duration,
    pub system: Duration,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub threads: u64,
}

impl ProcSample {
    pub fn read(pid: u32) -> Option<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        // The command name may hold spaces and parentheses; fields are
        // counted from the last `)`.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let ticks = clock_ticks_per_sec();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let to_time = |t: u64| Duration::from_secs_f64(t as f64 / ticks as f64);
        Some(ProcSample {
            user: to_time(field(14)?),
            system: to_time(field(15)?),
            threads: field(20)?,
            rss_kib: status_kib(&status, "VmRSS:")?,
            peak_rss_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        })
    }

    /// The process gauges a meshi server publishes on `/metrics`.
    pub fn from_metrics(text: &str) -> Option<ProcSample> {
        let value = |name: &str| {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))?
                .trim()
                .parse::<f64>()
                .ok()
        };
        let cpu = Duration::from_secs_f64(value("process_cpu_seconds_total")?.max(0.0));
        Some(ProcSample {
            user: cpu,
            system: Duration::ZERO,
            rss_kib: value("process_resident_memory_bytes")? as u64 / 1024,
            // The server publishes no peak; the latest reading is the
            // closest bound there is.
            peak_rss_kib: value("process_resident_memory_bytes")? as u64 / 1024,
            threads: value("process_threads").unwrap_or(0.0) as u64,
        })
    }

    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn clock_ticks_per_sec() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// The machine a run happened on, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_mib: u64,
    pub nofile_limit: u64,
}

impl Machine {
    pub fn current(nofile_limit: u64) -> Machine {
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| status_kib(&m, "MemTotal:"))
            .unwrap_or(0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib: memory_kib / 1024,
            nofile_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let sample = ProcSample::read(std::process::id()).expect("own /proc entry");
        assert!(sample.rss_kib > 0);
        assert!(sample.threads >= 1);
        assert!(ProcSample::read(u32::MAX).is_none());
    }

    #[test]
    fn there_are_ephemeral_ports() {
        assert!(ephemeral_ports() > 1000);
    }

    #[test]
    fn the_file_limit_only_goes_up() {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0;
        assert!(raise_nofile_limit() >= before);
    }
}
