//! The relay benchmark's figures as data, and the tables they make (rendered by
//! [`bench::report`]).

use std::time::Duration;

use bench::cpu::CpuUsage;
use bench::report::{Header, Results, Section, Table, cpu_table, millis};
use bench::stats::{ms, per_second};
use serde::{Deserialize, Serialize};

/// A run that moved a known number of messages from a start instant to the last delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transfer {
    pub label: String,
    pub messages: usize,
    /// From the start (relay process spawned / publishers started) to the last delivery.
    #[serde(with = "millis")]
    pub elapsed: Duration,
    /// From the first to the last delivery: excludes process start and connection set-up.
    #[serde(with = "millis")]
    pub steady: Duration,
    /// Messages per second over `elapsed`.
    pub rate: f64,
    /// Messages after the first per second over `steady`.
    pub steady_rate: f64,
    pub duplicates: usize,
    pub cpu: CpuUsage,
}

impl Transfer {
    pub fn new(
        label: String,
        messages: usize,
        elapsed: Duration,
        steady: Duration,
        duplicates: usize,
        cpu: CpuUsage,
    ) -> Self {
        Self {
            rate: per_second(messages, elapsed),
            steady_rate: per_second(messages.saturating_sub(1), steady),
            label,
            messages,
            elapsed,
            steady,
            duplicates,
            cpu,
        }
    }

    /// This run's rate over `ceiling`'s.
    fn ratio(&self, ceiling: &Transfer) -> f64 {
        if ceiling.rate > 0.0 {
            self.rate / ceiling.rate
        } else {
            0.0
        }
    }
}

/// Commit-to-consume latency under a steady load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub offered_rate: u32,
    pub committed: usize,
    pub achieved_rate: f64,
    /// How late transactions started against their schedule.
    #[serde(with = "millis")]
    pub lag_p99: Duration,
    #[serde(with = "millis")]
    pub lag_max: Duration,
    #[serde(with = "millis")]
    pub p50: Duration,
    #[serde(with = "millis")]
    pub p90: Duration,
    #[serde(with = "millis")]
    pub p99: Duration,
    #[serde(with = "millis")]
    pub max: Duration,
    pub duplicates: usize,
    pub cpu: CpuUsage,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayResults {
    pub header: Header,
    /// Average envelope size.
    pub body_bytes: f64,
    /// How long committing the last backlog took.
    #[serde(with = "millis")]
    pub prefill: Duration,
    /// One throughput run per way of retiring confirmed rows.
    pub relays: Vec<Transfer>,
    pub ceilings: Vec<Transfer>,
    /// The ceiling run with as many publishers as the relay has claimers.
    pub matching_ceiling: usize,
    pub latency: Latency,
}

impl RelayResults {
    fn ceiling(&self) -> Option<&Transfer> {
        self.ceilings.get(self.matching_ceiling)
    }
}

impl Results for RelayResults {
    const NAME: &'static str = "relay";
    const TITLE: &'static str = "Outbox relay benchmark";
    const README_ANCHOR: &'static str = "the-relay-benchmark";

    fn header(&self) -> &Header {
        &self.header
    }

    fn summary(&self) -> Vec<Table> {
        let mut table = Table::new(None, &["measure", "figure"]);
        for relay in &self.relays {
            let share = self.ceiling().map_or(0.0, |c| relay.ratio(c));
            table.row(vec![
                format!(
                    "throughput, {} (outbox → quorum queue, confirmed)",
                    relay.label
                ),
                format!(
                    "{:.0} rows/s ({:.0} % of the ceiling)",
                    relay.rate,
                    share * 100.0
                ),
            ]);
        }
        for ceiling in &self.ceilings {
            table.row(vec![
                format!(
                    "throughput, broker {} (same window, no database)",
                    ceiling.label
                ),
                format!("{:.0} msg/s", ceiling.rate),
            ]);
        }
        let l = &self.latency;
        table.row(vec![
            format!(
                "commit → consume latency at {} rows/s, p50 / p90 / p99",
                l.offered_rate
            ),
            format!("{:.1} / {:.1} / {:.1} ms", ms(l.p50), ms(l.p90), ms(l.p99)),
        ]);
        for (label, cpu) in self
            .cpu_runs()
            .iter()
            .filter(|(_, cpu)| cpu.process("relay").is_some())
        {
            let relay = cpu.process("relay").unwrap_or_default();
            table.row(vec![
                format!("relay CPU: {label}"),
                format!("{:.0} % of one core", cpu.percent(relay)),
            ]);
        }
        vec![table]
    }

    fn sections(&self) -> Vec<Section> {
        vec![self.throughput(), self.latency_section()]
    }
}

impl RelayResults {
    fn cpu_runs(&self) -> Vec<(String, &CpuUsage)> {
        let mut runs: Vec<(String, &CpuUsage)> = self
            .relays
            .iter()
            .chain(&self.ceilings)
            .map(|t| (t.label.clone(), &t.cpu))
            .collect();
        runs.push((
            format!("latency, {} rows/s", self.latency.offered_rate),
            &self.latency.cpu,
        ));
        runs
    }

    fn throughput(&self) -> Section {
        let mut runs = Table::new(
            Some("Runs"),
            &[
                "run",
                "messages",
                "wall time",
                "rate",
                "steady rate",
                "duplicates",
            ],
        );
        for t in self.relays.iter().chain(&self.ceilings) {
            runs.row(vec![
                t.label.clone(),
                t.messages.to_string(),
                format!("{:.2} s", t.elapsed.as_secs_f64()),
                format!("{:.0} msg/s", t.rate),
                format!("{:.0} msg/s", t.steady_rate),
                t.duplicates.to_string(),
            ]);
        }
        let mut columns = vec!["relay run".to_owned()];
        columns.extend(self.ceilings.iter().map(|c| format!("/ {}", c.label)));
        let mut ratios = Table {
            caption: Some("Relay / ceiling".into()),
            columns,
            rows: Vec::new(),
        };
        for relay in &self.relays {
            let mut cells = vec![relay.label.clone()];
            cells.extend(
                self.ceilings
                    .iter()
                    .map(|c| format!("**{:.0} %**", relay.ratio(c) * 100.0)),
            );
            ratios.row(cells);
        }
        let cpu = cpu_table(
            "CPU, % of one core",
            &self.cpu_runs()[..self.relays.len() + self.ceilings.len()],
        );
        Section {
            heading: "Throughput".into(),
            tables: vec![runs, ratios, cpu],
            notes: vec![
                format!("bodies: {:.0} bytes on average", self.body_bytes),
                format!("pre-fill: {:.1} s per backlog", self.prefill.as_secs_f64()),
            ],
        }
    }

    fn latency_section(&self) -> Section {
        let l = &self.latency;
        let mut table = Table::new(
            None,
            &[
                "offered",
                "achieved",
                "rows",
                "start lag p99 / max",
                "p50",
                "p90",
                "p99",
                "max",
                "duplicates",
            ],
        );
        table.row(vec![
            format!("{} rows/s", l.offered_rate),
            format!("{:.0} rows/s", l.achieved_rate),
            l.committed.to_string(),
            format!("{:.1} / {:.1} ms", ms(l.lag_p99), ms(l.lag_max)),
            format!("{:.1} ms", ms(l.p50)),
            format!("{:.1} ms", ms(l.p90)),
            format!("{:.1} ms", ms(l.p99)),
            format!("{:.1} ms", ms(l.max)),
            l.duplicates.to_string(),
        ]);
        let runs = self.cpu_runs();
        let cpu = cpu_table("CPU, % of one core", &runs[runs.len() - 1..]);
        Section {
            heading: "Latency".into(),
            tables: vec![table, cpu],
            notes: Vec::new(),
        }
    }
}
