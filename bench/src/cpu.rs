//! CPU time from /proc: the relay process, PostgreSQL, RabbitMQ and the benchmark itself, so a
//! rate comes with what it cost on the (shared) machine.

use std::time::Instant;

/// Cumulative CPU ticks at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    relay: Option<u64>,
    postgres: u64,
    rabbitmq: u64,
    bench: u64,
    /// Busy ticks of the whole machine, all cores.
    machine: u64,
}

/// CPU-seconds spent between two samples, per party.
#[derive(Debug, Clone, Copy)]
pub struct CpuUsage {
    pub wall_secs: f64,
    pub relay_secs: Option<f64>,
    pub postgres_secs: f64,
    pub rabbitmq_secs: f64,
    pub bench_secs: f64,
    /// Busy CPU of the whole machine.
    pub machine_secs: f64,
}

impl CpuUsage {
    /// `secs` as a percentage of one core over the interval.
    pub fn percent(&self, secs: f64) -> f64 {
        if self.wall_secs > 0.0 {
            100.0 * secs / self.wall_secs
        } else {
            0.0
        }
    }

    /// CPU spent by anything but the parties above: a large figure means something else ran on
    /// the machine during the run and the rates are not to be trusted.
    pub fn other_secs(&self) -> f64 {
        let ours = self.relay_secs.unwrap_or(0.0)
            + self.postgres_secs
            + self.rabbitmq_secs
            + self.bench_secs;
        (self.machine_secs - ours).max(0.0)
    }
}

impl CpuSample {
    /// Samples now; `relay` is the relay's pid when one runs.
    pub fn take(relay: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            relay: relay.and_then(|pid| process_ticks(pid).map(|t| t.own)),
            // A backend that exits moves its ticks into the postmaster's children counters,
            // so own + children over all postgres processes does not lose finished sessions.
            postgres: ticks_by_comm("postgres"),
            rabbitmq: ticks_by_comm("beam.smp"),
            bench: process_ticks(std::process::id()).map_or(0, |t| t.own),
            machine: machine_busy_ticks(),
        }
    }

    pub fn since(&self, start: &CpuSample, ticks_per_sec: f64) -> CpuUsage {
        let secs = |end: u64, begin: u64| end.saturating_sub(begin) as f64 / ticks_per_sec;
        CpuUsage {
            wall_secs: self.at.duration_since(start.at).as_secs_f64(),
            relay_secs: match (self.relay, start.relay) {
                (Some(end), Some(begin)) => Some(secs(end, begin)),
                (Some(end), None) => Some(secs(end, 0)),
                _ => None,
            },
            postgres_secs: secs(self.postgres, start.postgres),
            rabbitmq_secs: secs(self.rabbitmq, start.rabbitmq),
            bench_secs: secs(self.bench, start.bench),
            machine_secs: secs(self.machine, start.machine),
        }
    }
}

/// `getconf CLK_TCK`, the unit of /proc/<pid>/stat times; 100 on every common Linux.
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

pub struct Ticks {
    pub comm: String,
    /// utime + stime.
    pub own: u64,
    /// cutime + cstime: reaped children.
    pub children: u64,
}

pub fn process_ticks(pid: u32) -> Option<Ticks> {
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

pub fn ticks_by_comm(comm: &str) -> u64 {
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
pub fn machine_busy_ticks() -> u64 {
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
