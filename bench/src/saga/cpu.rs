//! CPU used during a run by each process of the system, by PostgreSQL and RabbitMQ (whole
//! servers), by the load generator, and by anything else on the machine.

use std::time::Instant;

use bench::cpu::{machine_busy_ticks, process_ticks, ticks_by_comm, ticks_per_second};

/// Cumulative ticks at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    processes: Vec<(String, Option<u64>)>,
    postgres: u64,
    rabbitmq: u64,
    bench: u64,
    machine: u64,
}

/// CPU-seconds between two snapshots.
#[derive(Debug, Clone)]
pub struct CpuSpent {
    pub wall_secs: f64,
    /// Per process of the system under test.
    pub processes: Vec<(String, f64)>,
    pub postgres: f64,
    pub rabbitmq: f64,
    /// The load generator (this process).
    pub bench: f64,
    /// Busy time of the whole machine.
    pub machine: f64,
}

impl CpuSnapshot {
    pub fn take(pids: &[(String, u32)]) -> Self {
        Self {
            at: Instant::now(),
            processes: pids
                .iter()
                .map(|(name, pid)| (name.clone(), process_ticks(*pid).map(|t| t.own)))
                .collect(),
            // own + reaped children over every postgres process: finished backends count too.
            postgres: ticks_by_comm("postgres"),
            rabbitmq: ticks_by_comm("beam.smp"),
            bench: process_ticks(std::process::id()).map_or(0, |t| t.own),
            machine: machine_busy_ticks(),
        }
    }

    pub fn since(&self, start: &CpuSnapshot) -> CpuSpent {
        let per_sec = ticks_per_second();
        let secs = |end: u64, begin: u64| end.saturating_sub(begin) as f64 / per_sec;
        CpuSpent {
            wall_secs: self.at.duration_since(start.at).as_secs_f64(),
            processes: self
                .processes
                .iter()
                .map(|(name, end)| {
                    let begin = start
                        .processes
                        .iter()
                        .find(|(n, _)| n == name)
                        .and_then(|(_, ticks)| *ticks);
                    (name.clone(), secs(end.unwrap_or(0), begin.unwrap_or(0)))
                })
                .collect(),
            postgres: secs(self.postgres, start.postgres),
            rabbitmq: secs(self.rabbitmq, start.rabbitmq),
            bench: secs(self.bench, start.bench),
            machine: secs(self.machine, start.machine),
        }
    }
}

impl CpuSpent {
    /// `secs` as a percentage of one core over the run.
    pub fn percent(&self, secs: f64) -> f64 {
        if self.wall_secs > 0.0 {
            100.0 * secs / self.wall_secs
        } else {
            0.0
        }
    }

    /// What none of the above used: high means something else competed for the machine.
    pub fn other(&self) -> f64 {
        let ours: f64 = self.processes.iter().map(|(_, secs)| secs).sum::<f64>()
            + self.postgres
            + self.rabbitmq
            + self.bench;
        (self.machine - ours).max(0.0)
    }
}
