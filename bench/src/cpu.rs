//! CPU time from /proc over a run's window: each process of the system under test, PostgreSQL
//! and RabbitMQ (whole servers), the benchmark itself, and the machine's busy time, so that a
//! rate always comes with what it cost on the (shared) machine.

use std::sync::OnceLock;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Cumulative CPU ticks at one instant.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    /// Per process under test; `None` when its /proc entry could not be read.
    processes: Vec<(String, Option<u64>)>,
    postgres: u64,
    rabbitmq: u64,
    bench: u64,
    /// Busy ticks of the whole machine, all cores.
    machine: u64,
}

/// CPU-seconds one process under test spent in a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessCpu {
    pub name: String,
    pub secs: f64,
}

/// CPU-seconds spent between two samples, per party.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpuUsage {
    pub wall_secs: f64,
    pub processes: Vec<ProcessCpu>,
    pub postgres_secs: f64,
    pub rabbitmq_secs: f64,
    /// The benchmark process: load generator, producers, consumer, ceiling publisher.
    pub bench_secs: f64,
    /// Busy CPU of the whole machine.
    pub machine_secs: f64,
}

impl CpuSample {
    /// Samples now; `processes` are the (name, pid) of the processes under test.
    pub fn take(processes: &[(String, u32)]) -> Self {
        Self {
            at: Instant::now(),
            processes: processes
                .iter()
                .map(|(name, pid)| (name.clone(), process_ticks(*pid).map(|t| t.own)))
                .collect(),
            // A backend that exits moves its ticks into the postmaster's children counters, so
            // own + children over all postgres processes does not lose finished sessions.
            postgres: ticks_by_comm("postgres"),
            rabbitmq: ticks_by_comm("beam.smp"),
            bench: process_ticks(std::process::id()).map_or(0, |t| t.own),
            machine: machine_busy_ticks(),
        }
    }

    /// What was spent from `start` to this sample.
    pub fn since(&self, start: &CpuSample) -> CpuUsage {
        let per_sec = ticks_per_second();
        let secs = |end: u64, begin: u64| end.saturating_sub(begin) as f64 / per_sec;
        let processes = self
            .processes
            .iter()
            .map(|(name, end)| {
                let begin = start
                    .processes
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, ticks)| *ticks);
                ProcessCpu {
                    name: name.clone(),
                    secs: secs(end.unwrap_or(0), begin.unwrap_or(0)),
                }
            })
            .collect();
        CpuUsage {
            wall_secs: self.at.duration_since(start.at).as_secs_f64(),
            processes,
            postgres_secs: secs(self.postgres, start.postgres),
            rabbitmq_secs: secs(self.rabbitmq, start.rabbitmq),
            bench_secs: secs(self.bench, start.bench),
            machine_secs: secs(self.machine, start.machine),
        }
    }
}

impl CpuUsage {
    /// `secs` as a percentage of one core over the window.
    pub fn percent(&self, secs: f64) -> f64 {
        if self.wall_secs > 0.0 {
            100.0 * secs / self.wall_secs
        } else {
            0.0
        }
    }

    /// The CPU-seconds of the process under test called `name`, if it was sampled.
    pub fn process(&self, name: &str) -> Option<f64> {
        self.processes
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.secs)
    }

    /// All processes under test together.
    pub fn processes_secs(&self) -> f64 {
        self.processes.iter().map(|p| p.secs).sum()
    }

    /// CPU spent by anything but the parties above: a large figure means something else ran on
    /// the machine during the window and the rates are not to be trusted.
    pub fn other_secs(&self) -> f64 {
        let ours =
            self.processes_secs() + self.postgres_secs + self.rabbitmq_secs + self.bench_secs;
        (self.machine_secs - ours).max(0.0)
    }
}

/// `getconf CLK_TCK`, the unit of /proc/<pid>/stat times; 100 on every common Linux.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

struct Ticks {
    comm: String,
    /// utime + stime.
    own: u64,
    /// cutime + cstime: reaped children.
    children: u64,
}

fn process_ticks(pid: u32) -> Option<Ticks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is parenthesised and may itself contain spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After the name: field 3 (state) onwards; utime is field 14, so index 11 here.
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(Ticks {
        comm,
        own: field(11)? + field(12)?,
        children: field(13)? + field(14)?,
    })
}

fn ticks_by_comm(comm: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        // A process may exit between listing and reading: it is simply skipped.
        .filter_map(process_ticks)
        .filter(|ticks| ticks.comm == comm)
        .map(|ticks| ticks.own + ticks.children)
        .sum()
}

/// Non-idle ticks summed over all cores, from the first line of /proc/stat (user, nice, system,
/// idle, iowait, irq, softirq, steal; guest time is already inside user).
fn machine_busy_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        return 0;
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    let busy = [0, 1, 2, 5, 6, 7];
    busy.iter().filter_map(|index| fields.get(*index)).sum()
}
