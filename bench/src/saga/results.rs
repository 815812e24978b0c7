//! The saga benchmark's figures as data, and the tables they make (rendered by
//! [`bench::report`]): the summary against the targets, then per system the CPU of each run,
//! every probe of the search and the end checks.

use bench::params::SystemKind as Kind;
use bench::report::{Header, Results, Section, Table, cpu_table};
use bench::stats::ms;
use serde::{Deserialize, Serialize};

use crate::search::{Measured, Probe};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SagaResults {
    pub header: Header,
    /// The rate of the first latency run.
    pub low_rate: f64,
    /// The second latency run's rate as a share of the maximum.
    pub high_share: f64,
    pub systems: Vec<Measured>,
}

/// The system's name, with its instances per service when there are several.
fn label(m: &Measured) -> String {
    match m.instances {
        1 => m.kind.label().to_owned(),
        n => format!("{}, {n} instances", m.kind.label()),
    }
}

fn latency(probe: &Probe) -> String {
    let f = &probe.figures;
    format!("{:.1} / {:.1} / {:.1} ms", ms(f.p50), ms(f.p95), ms(f.p99))
}

impl SagaResults {
    fn system(&self, kind: Kind) -> Option<&Measured> {
        self.systems.iter().find(|m| m.kind == kind)
    }

    /// Distributed over monolith sustained throughput, when both were measured.
    pub fn ratio(&self) -> Option<f64> {
        let max = |kind| {
            self.system(kind)
                .and_then(|m| m.max.as_ref())
                .map(|p| p.figures.completed_per_sec)
        };
        match (max(Kind::Distributed), max(Kind::Monolith)) {
            (Some(d), Some(m)) if m > 0.0 => Some(d / m),
            _ => None,
        }
    }

    /// One summary row: `cell` per system, then the target.
    fn row(
        &self,
        table: &mut Table,
        name: String,
        cell: impl Fn(&Measured) -> String,
        target: &str,
    ) {
        let mut cells = vec![name];
        cells.extend(self.systems.iter().map(cell));
        cells.push(target.to_owned());
        table.row(cells);
    }
}

/// CPU at the maximum: the system's processes together, PostgreSQL, RabbitMQ, the generator.
fn cpu_at_max(m: &Measured) -> String {
    let Some(p) = &m.max else {
        return "-".into();
    };
    let cpu = &p.cpu;
    format!(
        "{:.0} / {:.0} / {:.0} / {:.0}",
        cpu.percent(cpu.processes_secs()),
        cpu.percent(cpu.postgres_secs),
        cpu.percent(cpu.rabbitmq_secs),
        cpu.percent(cpu.bench_secs)
    )
}

impl Results for SagaResults {
    const NAME: &'static str = "saga";
    const TITLE: &'static str = "Saga benchmark";
    const README_ANCHOR: &'static str = "the-saga-benchmark";

    fn header(&self) -> &Header {
        &self.header
    }

    fn summary(&self) -> Vec<Table> {
        let labels: Vec<String> = self.systems.iter().map(label).collect();
        let mut columns = vec!["measure"];
        columns.extend(labels.iter().map(String::as_str));
        columns.push("target (distributed)");
        let mut table = Table::new(None, &columns);
        let sustained = |m: &Measured| match &m.max {
            Some(p) => format!(
                "**{:.0}** (at {:.0}/s)",
                p.figures.completed_per_sec, p.figures.rate
            ),
            None => "none bounded".into(),
        };
        let name = "sustained throughput, completed sagas/s (highest bounded arrival rate)";
        // The targets of issue 15 ("the price of distribution"), on the machine the run describes.
        self.row(&mut table, name.into(), sustained, "half the monolith's");
        if let Some(ratio) = self.ratio() {
            let cell = |m: &Measured| match m.kind {
                Kind::Distributed => format!("**{ratio:.2}**"),
                Kind::Monolith => "1".into(),
            };
            self.row(&mut table, "distributed / monolith".into(), cell, "≥ 0.5");
        }
        let name = format!("end-to-end p50 / p95 / p99 at {:.0}/s", self.low_rate);
        self.row(
            &mut table,
            name,
            |m| latency(&m.low),
            "p50 < 10 ms, p99 < 40 ms",
        );
        let name = format!(
            "end-to-end p50 / p95 / p99 at {:.0} % of the maximum",
            self.high_share * 100.0
        );
        let high = |m: &Measured| match &m.high {
            Some(p) => format!("{} (at {:.0}/s)", latency(p), p.figures.rate),
            None => "-".into(),
        };
        self.row(&mut table, name, high, "p99 < 250 ms");
        let name =
            "CPU at the maximum, % of one core: system / PostgreSQL / RabbitMQ / load generator";
        self.row(&mut table, name.into(), cpu_at_max, "");
        vec![table]
    }

    fn sections(&self) -> Vec<Section> {
        self.systems.iter().map(system_section).collect()
    }
}

/// One system's CPU per run, every probe, and the end checks.
fn system_section(measured: &Measured) -> Section {
    let mut cpu_runs: Vec<(String, &bench::cpu::CpuUsage)> = Vec::new();
    if let Some(max) = &measured.max {
        cpu_runs.push((format!("maximum, {:.0}/s", max.figures.rate), &max.cpu));
    }
    cpu_runs.push((
        format!("{:.0}/s", measured.low.figures.rate),
        &measured.low.cpu,
    ));
    if let Some(high) = &measured.high {
        cpu_runs.push((format!("{:.0}/s", high.figures.rate), &high.cpu));
    }
    let mut runs = Table::new(
        Some("Runs"),
        &[
            "offered/s",
            "orders",
            "completed/s",
            "p50 (ms)",
            "p95 (ms)",
            "p99 (ms)",
            "max (ms)",
            "unfinished at end (max)",
            "queued at end",
            "generator lag p99",
            "drain",
            "verdict",
        ],
    );
    let all = measured
        .probes
        .iter()
        .chain([&measured.low])
        .chain(&measured.high);
    for probe in all {
        let f = &probe.figures;
        runs.row(vec![
            format!("{:.0}", f.rate),
            f.arrivals.to_string(),
            format!("{:.1}", f.completed_per_sec),
            format!("{:.1}", ms(f.p50)),
            format!("{:.1}", ms(f.p95)),
            format!("{:.1}", ms(f.p99)),
            format!("{:.1}", ms(f.max)),
            format!("{} ({})", f.backlog_at_end, f.backlog_max),
            probe.queued_at_end.to_string(),
            format!("{:.1} ms", ms(f.lag_p99)),
            format!("{:.1} s", f.drain.as_secs_f64()),
            if f.bounded {
                "bounded".into()
            } else {
                f.verdict.clone()
            },
        ]);
    }
    let mut notes = Vec::new();
    if measured.kind == Kind::Distributed {
        let processes = match measured.instances {
            1 => "1 process".to_owned(),
            n => format!("{n} processes"),
        };
        notes.push(format!(
            "{processes} of each service (order, product, coupon, balance, monitor), one relay"
        ));
    }
    notes.push(format!(
        "at the end: {} unpublished outbox rows, {} dead letters",
        measured.unpublished, measured.dead_letters
    ));
    Section {
        heading: label(measured),
        tables: vec![cpu_table("CPU, % of one core", &cpu_runs), runs],
        notes,
    }
}
