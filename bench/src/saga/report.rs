//! The results file (`bench/results/saga-<date>.md`): the machine, the parameters, the summary
//! against the targets, CPU per process, every probe of the search, and the end checks; and the
//! short table for the project README.

use std::fmt::Write as _;
use std::time::Duration;

use bench::machine::Machine;

use crate::params::Params;
use crate::search::{Measured, Probe};
use crate::system::Kind;

pub struct Report {
    pub date: String,
    pub params: Params,
    pub machine: Machine,
    /// PostgreSQL settings that move the figures (autovacuum above all).
    pub pg_settings: String,
    pub systems: Vec<Measured>,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn latency(probe: &Probe) -> String {
    let f = &probe.figures;
    format!("{} / {} / {} ms", ms(f.p50), ms(f.p95), ms(f.p99))
}

impl Report {
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

    /// The summary table, in the README's words.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "| measure |");
        for m in &self.systems {
            let _ = write!(out, " {} |", m.kind.label());
        }
        let _ = writeln!(out, " target (distributed) |");
        let _ = write!(out, "|---|");
        for _ in &self.systems {
            let _ = write!(out, "---|");
        }
        let _ = writeln!(out, "---|");
        let row =
            |out: &mut String, name: &str, cell: &dyn Fn(&Measured) -> String, target: &str| {
                let _ = write!(out, "| {name} |");
                for m in &self.systems {
                    let _ = write!(out, " {} |", cell(m));
                }
                let _ = writeln!(out, " {target} |");
            };
        row(
            &mut out,
            "sustained throughput, completed sagas/s (highest bounded arrival rate)",
            &|m| match &m.max {
                Some(p) => format!(
                    "**{:.0}** (at {:.0}/s)",
                    p.figures.completed_per_sec, p.figures.rate
                ),
                None => "none bounded".into(),
            },
            "≥ 500",
        );
        row(
            &mut out,
            &format!(
                "end-to-end p50 / p95 / p99 at {:.0}/s",
                self.params.low_rate
            ),
            &|m| latency(&m.low),
            "p50 < 15 ms, p99 < 50 ms",
        );
        row(
            &mut out,
            &format!(
                "end-to-end p50 / p95 / p99 at {:.0} % of the maximum",
                self.params.high_share * 100.0
            ),
            &|m| match &m.high {
                Some(p) => format!("{} (at {:.0}/s)", latency(p), p.figures.rate),
                None => "-".into(),
            },
            "p99 < 250 ms",
        );
        row(
            &mut out,
            "CPU at the maximum, % of one core: system / PostgreSQL / RabbitMQ / load generator",
            &|m| match &m.max {
                Some(p) => {
                    let cpu = &p.cpu;
                    let system: f64 = cpu.processes.iter().map(|(_, s)| s).sum();
                    format!(
                        "{:.0} / {:.0} / {:.0} / {:.0}",
                        cpu.percent(system),
                        cpu.percent(cpu.postgres),
                        cpu.percent(cpu.rabbitmq),
                        cpu.percent(cpu.bench)
                    )
                }
                None => "-".into(),
            },
            "",
        );
        if let Some(ratio) = self.ratio() {
            let _ = writeln!(
                out,
                "\nDistributed / monolith sustained throughput: **{:.2}** (target ≥ 0.33); the \
                 monolith does {:.1}× the sagas per second.",
                ratio,
                1.0 / ratio
            );
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let p = &self.params;
        let _ = writeln!(out, "# Saga benchmark, {}\n", self.date);
        let _ = writeln!(
            out,
            "Reproduce with `bash bench/run-saga.sh` (see `bench/README.md`). Everything ran on \
             this one machine: PostgreSQL, RabbitMQ, every process of the system under test and \
             the load generator.\n"
        );
        let _ = writeln!(out, "## Machine\n");
        let _ = writeln!(out, "- cores: {} ({})", m.cores, m.cpu_model);
        let _ = writeln!(out, "- memory: {}", m.memory);
        let _ = writeln!(out, "- kernel: {}", m.kernel);
        let _ = writeln!(out, "- {}", m.postgres);
        let _ = writeln!(out, "  - settings: {}", self.pg_settings);
        let _ = writeln!(out, "- {}", m.rabbitmq);
        let _ = writeln!(out, "- load average at start: {}\n", m.load_average);
        let _ = writeln!(out, "## Parameters\n");
        let _ = writeln!(
            out,
            "- search: from {:.0}/s, doubling, then bisecting to {:.0} %; each rate held {} s; \
             bounded = at the end of the window at most {} s of arrivals unfinished and at most \
             5× that many messages queued, no saga wrong, generator lag p99 ≤ 50 ms",
            p.start_rate,
            p.resolution * 100.0,
            p.step.as_secs(),
            p.bound_secs
        );
        let _ = writeln!(
            out,
            "- latency runs: {} s at {:.0}/s and at {:.0} % of the maximum",
            p.latency_run.as_secs(),
            p.low_rate,
            p.high_share * 100.0
        );
        let _ = writeln!(
            out,
            "- orders: {} products, {} users, 1 to {} lines of 1 or 2 items, {} % with a fresh \
             10 % coupon; every order is planned to complete; long poll `wait_ms={}`",
            p.products, p.users, p.max_items, p.coupon_percent, p.wait_ms
        );
        let overrides: Vec<String> = std::env::vars()
            .filter(|(name, _)| {
                ["DB_POOL", "CONSUMER_", "RELAY_", "HTTP_WORKERS"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
            })
            .map(|(name, value)| format!("`{name}={value}`"))
            .collect();
        let _ = writeln!(
            out,
            "- service settings: {}\n",
            if overrides.is_empty() {
                "the defaults".to_owned()
            } else {
                overrides.join(", ")
            }
        );
        let _ = writeln!(out, "## Summary\n");
        out.push_str(&self.table());
        for measured in &self.systems {
            let _ = writeln!(out, "\n## {}\n", measured.kind.label());
            let _ = writeln!(out, "### CPU, % of one core\n");
            let mut runs: Vec<(String, &Probe)> = Vec::new();
            if let Some(max) = &measured.max {
                runs.push((format!("maximum, {:.0}/s", max.figures.rate), max));
            }
            runs.push((format!("{:.0}/s", measured.low.figures.rate), &measured.low));
            if let Some(high) = &measured.high {
                runs.push((format!("{:.0}/s", high.figures.rate), high));
            }
            let _ = write!(out, "| run |");
            for name in &measured.processes {
                let _ = write!(out, " {name} |");
            }
            let _ = writeln!(
                out,
                " PostgreSQL | RabbitMQ | load generator | other | machine |"
            );
            let _ = write!(out, "|---|");
            for _ in &measured.processes {
                let _ = write!(out, "---|");
            }
            let _ = writeln!(out, "---|---|---|---|---|");
            for (label, probe) in &runs {
                let cpu = &probe.cpu;
                let _ = write!(out, "| {label} |");
                for (_, secs) in &cpu.processes {
                    let _ = write!(out, " {:.0} |", cpu.percent(*secs));
                }
                let _ = writeln!(
                    out,
                    " {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                    cpu.percent(cpu.postgres),
                    cpu.percent(cpu.rabbitmq),
                    cpu.percent(cpu.bench),
                    cpu.percent(cpu.other()),
                    cpu.percent(cpu.machine)
                );
            }
            let _ = writeln!(out, "\n### Runs\n");
            let _ = writeln!(
                out,
                "| offered/s | orders | completed/s | p50 | p95 | p99 | max | unfinished at end \
                 (max) | queued at end | generator lag p99 | drain | verdict |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
            let mut all: Vec<&Probe> = measured.probes.iter().collect();
            all.push(&measured.low);
            all.extend(measured.high.iter());
            for probe in all {
                let f = &probe.figures;
                let _ = writeln!(
                    out,
                    "| {:.0} | {} | {:.1} | {} | {} | {} | {} | {} ({}) | {} | {} ms | {:.1} s | {} |",
                    f.rate,
                    f.arrivals,
                    f.completed_per_sec,
                    ms(f.p50),
                    ms(f.p95),
                    ms(f.p99),
                    ms(f.max),
                    f.backlog_at_end,
                    f.backlog_max,
                    probe.queued_at_end,
                    ms(f.lag_p99),
                    f.drain.as_secs_f64(),
                    if f.bounded { "bounded" } else { &f.verdict }
                );
            }
            let _ = writeln!(
                out,
                "\nAt the end: {} unpublished outbox rows, {} dead letters.",
                measured.unpublished, measured.dead_letters
            );
        }
        out
    }
}
