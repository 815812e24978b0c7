//! The figures of one run, the machine they were measured on, and their renderings: a console
//! summary, the results file and a table for the README.

use std::fmt::Write as _;
use std::time::Duration;

pub use bench::machine::Machine;

use crate::cpu::CpuUsage;
use crate::params::Params;

/// A run that moved a known number of messages from a start instant to the last delivery.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub label: String,
    pub messages: usize,
    /// From the start (relay process spawned / publishers started) to the last delivery.
    pub elapsed: Duration,
    /// From the first to the last delivery: excludes process start and connection set-up.
    pub steady: Duration,
    pub duplicates: usize,
    pub cpu: CpuUsage,
}

impl Transfer {
    pub fn rate(&self) -> f64 {
        per_second(self.messages, self.elapsed)
    }

    pub fn steady_rate(&self) -> f64 {
        per_second(self.messages.saturating_sub(1), self.steady)
    }
}

#[derive(Debug, Clone)]
pub struct Latency {
    pub offered_rate: u32,
    pub committed: usize,
    pub achieved_rate: f64,
    pub lag_p99: Duration,
    pub lag_max: Duration,
    /// Commit-to-consume latencies, sorted.
    pub samples: Vec<Duration>,
    pub duplicates: usize,
    pub cpu: CpuUsage,
}

impl Latency {
    /// Nearest-rank percentile.
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.samples, p)
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ratio(relay: &Transfer, ceiling: &Transfer) -> f64 {
    if ceiling.rate() > 0.0 {
        relay.rate() / ceiling.rate()
    } else {
        0.0
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub date: String,
    pub params: Params,
    pub machine: Machine,
    pub body_bytes: f64,
    pub prefill: Duration,
    /// One throughput run per way of retiring confirmed rows; the first is the default mode.
    pub relays: Vec<Transfer>,
    pub ceilings: Vec<Transfer>,
    /// The ceiling run with as many publishers as the relay has claimers.
    pub matching_ceiling: usize,
    pub latency: Latency,
}

impl Report {
    /// `relay`'s rate over the ceiling with as many publishers as claimers.
    pub fn ratio(&self, relay: &Transfer) -> f64 {
        ratio(relay, &self.ceilings[self.matching_ceiling])
    }

    /// The console summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let p = &self.params;
        let _ = writeln!(out, "\n== relay benchmark {} ==", self.date);
        let _ = writeln!(
            out,
            "rows {} (~{:.0} B bodies), batch {}, claimers {}, quorum queue, prefill {:.1} s",
            p.rows,
            self.body_bytes,
            p.batch_size,
            p.claimers,
            self.prefill.as_secs_f64()
        );
        for transfer in self.relays.iter().chain(&self.ceilings) {
            let _ = writeln!(
                out,
                "{:<34} {:>9.0} msg/s  ({:.2} s; steady {:.0} msg/s; duplicates {})",
                transfer.label,
                transfer.rate(),
                transfer.elapsed.as_secs_f64(),
                transfer.steady_rate(),
                transfer.duplicates
            );
            let _ = writeln!(out, "{:<34} {}", "", cpu_line(&transfer.cpu));
        }
        for relay in &self.relays {
            let _ = writeln!(
                out,
                "{} / {}: {:.0} %",
                relay.label,
                self.ceilings[self.matching_ceiling].label,
                self.ratio(relay) * 100.0
            );
        }
        let l = &self.latency;
        let _ = writeln!(
            out,
            "latency at {} rows/s offered ({:.0} achieved, {} rows, start lag p99 {:.1} ms): \
             p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.offered_rate,
            l.achieved_rate,
            l.committed,
            ms(l.lag_p99),
            ms(l.percentile(50.0)),
            ms(l.percentile(90.0)),
            ms(l.percentile(99.0)),
            ms(l.percentile(100.0))
        );
        let _ = writeln!(out, "{:<34} {}", "", cpu_line(&l.cpu));
        out
    }

    /// The short table for the project README.
    pub fn readme_table(&self) -> String {
        let p = &self.params;
        let l = &self.latency;
        let ceiling = &self.ceilings[self.matching_ceiling];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| Relay benchmark ({}, {} cores, {} rows, batch {}, {} claimers) | |",
            self.date, self.machine.cores, p.rows, p.batch_size, p.claimers
        );
        let _ = writeln!(out, "|---|---|");
        for relay in &self.relays {
            let _ = writeln!(
                out,
                "| Throughput of the {} (outbox → quorum queue, confirmed) | {:.0} rows/s ({:.0} % of the ceiling) |",
                relay.label,
                relay.rate(),
                self.ratio(relay) * 100.0
            );
        }
        let _ = writeln!(
            out,
            "| Broker ceiling (same window, {} publisher{}, no database) | {:.0} msg/s |",
            p.claimers,
            if p.claimers == 1 { "" } else { "s" },
            ceiling.rate()
        );
        let _ = writeln!(
            out,
            "| Commit → consume latency at {} rows/s, p50 / p99 | {:.1} ms / {:.1} ms |",
            l.offered_rate,
            ms(l.percentile(50.0)),
            ms(l.percentile(99.0))
        );
        let _ = writeln!(
            out,
            "| Relay CPU at full throughput / at {} rows/s | {} / {} of one core |",
            l.offered_rate,
            relay_percent(&self.relays[0].cpu),
            relay_percent(&l.cpu)
        );
        out
    }

    /// The results file.
    pub fn markdown(&self) -> String {
        let p = &self.params;
        let m = &self.machine;
        let l = &self.latency;
        let mut out = String::new();
        let _ = writeln!(out, "# Outbox relay benchmark, {}\n", self.date);
        let _ = writeln!(
            out,
            "Produced by `bash bench/run-relay.sh` (see `bench/README.md` for what is measured).\n"
        );
        let _ = writeln!(out, "## Machine\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| Cores (`nproc`) | {} |", m.cores);
        let _ = writeln!(out, "| CPU | {} |", m.cpu_model);
        let _ = writeln!(out, "| Memory | {} |", m.memory);
        let _ = writeln!(out, "| Kernel | {} |", m.kernel);
        let _ = writeln!(out, "| PostgreSQL | {} |", m.postgres);
        let _ = writeln!(out, "| RabbitMQ | {} |", m.rabbitmq);
        let _ = writeln!(out, "| Load average at start | {} |", m.load_average);
        let _ = writeln!(
            out,
            "\nThe relay, PostgreSQL, RabbitMQ and the benchmark (producer and consumer) all share \
             these cores. *Other CPU* below is what the rest of the machine used during a run; \
             if it is large, something else competed and the figures are pessimistic.\n"
        );
        let _ = writeln!(out, "## Parameters\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| Rows (`BENCH_ROWS`) | {} |", p.rows);
        let _ = writeln!(
            out,
            "| Body | JSON envelope, {:.0} bytes on average, plus a `traceparent` header |",
            self.body_bytes
        );
        let _ = writeln!(
            out,
            "| Relay batch = ceiling window (`RELAY_BATCH_SIZE`) | {} |",
            p.batch_size
        );
        let _ = writeln!(
            out,
            "| Relay claimers (`RELAY_CLAIMERS`) | {} |",
            p.claimers
        );
        let _ = writeln!(
            out,
            "| Queue | quorum, declared by `Topology::declare_queue` |"
        );
        let _ = writeln!(
            out,
            "| Consumer | prefetch {}, `multiple` ack every {} |",
            p.prefetch, p.ack_every
        );
        let _ = writeln!(
            out,
            "| Latency run (`BENCH_RATE`, `BENCH_LATENCY_SECS`, `BENCH_PRODUCERS`) | {} rows/s \
             for {} s, one row per transaction, on {} connections |",
            p.rate,
            p.latency_duration.as_secs(),
            p.producers
        );
        let _ = writeln!(
            out,
            "| Pre-fill | {:.1} s (`shared::outbox::enqueue`, 1,000 rows per transaction) |",
            self.prefill.as_secs_f64()
        );

        let _ = writeln!(out, "\n## Throughput\n");
        let _ = writeln!(
            out,
            "Wall time runs from the relay process being spawned (or the ceiling publishers \
             starting) to the consumer receiving the last message; the steady rate is first to \
             last delivery. CPU is over the same span, in CPU-seconds and % of one core.\n"
        );
        let _ = writeln!(
            out,
            "| Run | Messages | Wall time | Rate | Steady rate | Duplicates | Relay CPU | \
             PostgreSQL CPU | RabbitMQ CPU | Bench CPU | Other CPU |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for t in self.relays.iter().chain(&self.ceilings) {
            let relay_cpu = t
                .cpu
                .relay_secs
                .map_or_else(|| "–".to_owned(), |s| cpu_cell(&t.cpu, s));
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} s | {:.0} msg/s | {:.0} msg/s | {} | {} | {} | {} | {} | {} |",
                t.label,
                t.messages,
                t.elapsed.as_secs_f64(),
                t.rate(),
                t.steady_rate(),
                t.duplicates,
                relay_cpu,
                cpu_cell(&t.cpu, t.cpu.postgres_secs),
                cpu_cell(&t.cpu, t.cpu.rabbitmq_secs),
                cpu_cell(&t.cpu, t.cpu.bench_secs),
                cpu_cell(&t.cpu, t.cpu.other_secs()),
            );
        }
        let _ = writeln!(out);
        for relay in &self.relays {
            for ceiling in &self.ceilings {
                let _ = writeln!(
                    out,
                    "- {} / {}: **{:.0} %**",
                    relay.label,
                    ceiling.label,
                    ratio(relay, ceiling) * 100.0
                );
            }
        }

        let _ = writeln!(out, "\n## Latency\n");
        let _ = writeln!(
            out,
            "Commit → consume: the instant the consumer receives the message minus the instant \
             taken just before the row's COMMIT (so the commit itself is included). Rows are \
             scheduled at fixed instants from the start; start lag is how late a transaction \
             began against its schedule.\n"
        );
        let _ = writeln!(
            out,
            "| Offered | Achieved | Rows | Start lag p99 / max | p50 | p90 | p99 | max | \
             Duplicates |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} rows/s | {:.0} rows/s | {} | {:.1} / {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms \
             | {:.1} ms | {} |",
            l.offered_rate,
            l.achieved_rate,
            l.committed,
            ms(l.lag_p99),
            ms(l.lag_max),
            ms(l.percentile(50.0)),
            ms(l.percentile(90.0)),
            ms(l.percentile(99.0)),
            ms(l.percentile(100.0)),
            l.duplicates
        );
        let _ = writeln!(out, "\nCPU during the latency run: {}\n", cpu_line(&l.cpu));
        let _ = writeln!(out, "## For the README\n");
        out.push_str(&self.readme_table());
        out
    }
}

fn per_second(count: usize, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn cpu_cell(cpu: &CpuUsage, secs: f64) -> String {
    format!("{secs:.1} s ({:.0} %)", cpu.percent(secs))
}

fn relay_percent(cpu: &CpuUsage) -> String {
    cpu.relay_secs
        .map_or_else(|| "–".to_owned(), |s| format!("{:.0} %", cpu.percent(s)))
}

fn cpu_line(cpu: &CpuUsage) -> String {
    let relay = cpu
        .relay_secs
        .map_or_else(String::new, |s| format!("relay {}, ", cpu_cell(cpu, s)));
    format!(
        "CPU over {:.1} s: {relay}postgres {}, rabbitmq {}, bench {}, other {}",
        cpu.wall_secs,
        cpu_cell(cpu, cpu.postgres_secs),
        cpu_cell(cpu, cpu.rabbitmq_secs),
        cpu_cell(cpu, cpu.bench_secs),
        cpu_cell(cpu, cpu.other_secs())
    )
}
