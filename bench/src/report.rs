//! Results as data, rendered once. Each benchmark fills a serializable results struct and
//! implements [`Results`] for it, saying which tables its figures make; [`save`] writes the
//! struct as JSON and its one markdown rendering side by side
//! (`bench/results/<name>-<date>.{json,md}`). Only figures are rendered here: what they mean is
//! written once, in `bench/README.md`, which the markdown links.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::cpu::CpuUsage;
use crate::machine::Machine;
use crate::params::Knob;

/// What every run records besides its figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub benchmark: String,
    /// UTC date of the run; part of the file names.
    pub date: String,
    pub machine: Machine,
    /// Every knob as the run read it.
    pub knobs: Vec<Knob>,
    /// Variables set for the processes under test and passed to them unchanged.
    pub passed: Vec<Knob>,
}

impl Header {
    pub fn new(benchmark: &str, machine: Machine, (knobs, passed): (Vec<Knob>, Vec<Knob>)) -> Self {
        Self {
            benchmark: benchmark.to_owned(),
            date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
            machine,
            knobs,
            passed,
        }
    }
}

/// One table of figures, with an optional caption (a subheading).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub caption: Option<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(caption: Option<&str>, columns: &[&str]) -> Self {
        Self {
            caption: caption.map(str::to_owned),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

/// A heading with its tables and, after them, short notes (figures in a sentence).
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub heading: String,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
}

/// A benchmark's results.
pub trait Results: Serialize {
    /// `relay` or `saga`: the file names and the command `bash bench/run-<name>.sh`.
    const NAME: &'static str;
    const TITLE: &'static str;
    /// The anchor of the `bench/README.md` section that explains the figures.
    const README_ANCHOR: &'static str;

    fn header(&self) -> &Header;
    /// The headline figures: printed at the end of a run and first in the file.
    fn summary(&self) -> Vec<Table>;
    /// Everything else, section by section.
    fn sections(&self) -> Vec<Section>;
}

/// Writes `<dir>/<name>-<date>.json` and `.md` (a second run on the same day overwrites them);
/// returns the markdown's path.
pub fn save<R: Results>(results: &R, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!("{}-{}", R::NAME, results.header().date);
    let json = dir.join(format!("{stem}.json"));
    let data = serde_json::to_string_pretty(results).context("serializing the results")?;
    std::fs::write(&json, data + "\n").with_context(|| format!("writing {}", json.display()))?;
    let markdown_path = dir.join(format!("{stem}.md"));
    std::fs::write(&markdown_path, markdown(results))
        .with_context(|| format!("writing {}", markdown_path.display()))?;
    Ok(markdown_path)
}

/// The summary tables, for the console.
pub fn summary<R: Results>(results: &R) -> String {
    let mut out = String::new();
    for table in results.summary() {
        render_table(&mut out, &table);
    }
    out
}

/// The results file.
pub fn markdown<R: Results>(results: &R) -> String {
    let header = results.header();
    let stem = format!("{}-{}", R::NAME, header.date);
    let mut out = format!("# {}, {}\n\n", R::TITLE, header.date);
    let _ = writeln!(
        out,
        "Produced by `bash bench/run-{}.sh`. What is measured and how to read each table: \
         [`bench/README.md`](../README.md#{}). The same results as data: \
         [`{stem}.json`]({stem}.json).\n",
        R::NAME,
        R::README_ANCHOR,
    );
    let mut sections = vec![Section {
        heading: "Summary".into(),
        tables: results.summary(),
        notes: Vec::new(),
    }];
    sections.push(setup_section(header));
    sections.extend(results.sections());
    for section in &sections {
        let _ = writeln!(out, "## {}\n", section.heading);
        for table in &section.tables {
            render_table(&mut out, table);
        }
        for note in &section.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !section.notes.is_empty() {
            out.push('\n');
        }
    }
    out
}

/// The machine and the parameters.
fn setup_section(header: &Header) -> Section {
    let mut machine = Table::new(Some("Machine"), &["", ""]);
    machine.rows = header.machine.rows();
    let mut knobs = Table::new(Some("Parameters"), &["Variable", "Value"]);
    for knob in &header.knobs {
        knobs.row(vec![format!("`{}`", knob.name), knob.value.clone()]);
    }
    for knob in &header.passed {
        knobs.row(vec![
            format!("`{}` (passed through)", knob.name),
            knob.value.clone(),
        ]);
    }
    Section {
        heading: "Setup".into(),
        tables: vec![machine, knobs],
        notes: Vec::new(),
    }
}

fn render_table(out: &mut String, table: &Table) {
    if let Some(caption) = &table.caption {
        let _ = writeln!(out, "### {caption}\n");
    }
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|cell| escape(cell)).collect();
        format!("| {} |", cells.join(" | "))
    };
    let _ = writeln!(out, "{}", line(&table.columns));
    let _ = writeln!(out, "|{}", "---|".repeat(table.columns.len()));
    for row in &table.rows {
        let _ = writeln!(out, "{}", line(row));
    }
    out.push('\n');
}

/// A cell's text on one line, with no `|` that would end it.
fn escape(cell: &str) -> String {
    cell.replace('|', "\\|").replace('\n', " ")
}

/// CPU per run in % of one core over each run's window, one column per party: the processes
/// under test (by name, in order of first appearance), PostgreSQL, RabbitMQ, the benchmark
/// process, the rest of the machine, and the machine's total.
pub fn cpu_table(caption: &str, runs: &[(String, &CpuUsage)]) -> Table {
    let mut names: Vec<&str> = Vec::new();
    for (_, cpu) in runs {
        for process in &cpu.processes {
            if !names.contains(&process.name.as_str()) {
                names.push(&process.name);
            }
        }
    }
    let mut columns = vec!["run", "window"];
    columns.extend(names.iter().copied());
    columns.extend(["PostgreSQL", "RabbitMQ", "benchmark", "other", "machine"]);
    let mut table = Table::new(Some(caption), &columns);
    for (label, cpu) in runs {
        let pct = |secs: f64| format!("{:.0}", cpu.percent(secs));
        let mut cells = vec![label.clone(), format!("{:.1} s", cpu.wall_secs)];
        cells.extend(
            names
                .iter()
                .map(|name| cpu.process(name).map_or("–".into(), pct)),
        );
        cells.extend(
            [
                cpu.postgres_secs,
                cpu.rabbitmq_secs,
                cpu.bench_secs,
                cpu.other_secs(),
                cpu.machine_secs,
            ]
            .map(pct),
        );
        table.row(cells);
    }
    table
}

/// `#[serde(with = "bench::report::millis")]`: a `Duration` as (fractional) milliseconds, the
/// unit every figure uses.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(crate::stats::ms(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(ms / 1_000.0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample {
        header: Header,
    }

    impl Results for Sample {
        const NAME: &'static str = "sample";
        const TITLE: &'static str = "Sample benchmark";
        const README_ANCHOR: &'static str = "sample";

        fn header(&self) -> &Header {
            &self.header
        }

        fn summary(&self) -> Vec<Table> {
            let mut table = Table::new(None, &["measure", "figure"]);
            table.row(vec!["a | b".into(), "1\n2".into()]);
            vec![table]
        }

        fn sections(&self) -> Vec<Section> {
            vec![Section {
                heading: "More".into(),
                tables: vec![Table::new(Some("Empty"), &["x"])],
                notes: vec!["a note".into()],
            }]
        }
    }

    fn sample() -> Sample {
        let machine: Machine = serde_json::from_value(serde_json::json!({
            "cores": "2", "cpu_model": "cpu", "memory": "1 GiB", "kernel": "k",
            "postgres": "PostgreSQL 15", "postgres_settings": "fsync=on",
            "rabbitmq": "RabbitMQ 3", "load_average": "0 0 0"
        }))
        .unwrap();
        let knob = |name: &str| Knob {
            name: name.into(),
            value: "1".into(),
        };
        let mut header = Header::new("sample", machine, (vec![knob("K")], vec![knob("P")]));
        header.date = "2026-01-02".into();
        Sample { header }
    }

    #[test]
    fn renders_the_summary_setup_and_sections_once() {
        let text = markdown(&sample());
        assert!(
            text.starts_with("# Sample benchmark, 2026-01-02\n"),
            "{text}"
        );
        assert!(text.contains("[`sample-2026-01-02.json`](sample-2026-01-02.json)"));
        assert!(text.contains("| a \\| b | 1 2 |"), "{text}");
        assert!(text.contains("| `K` | 1 |"));
        assert!(text.contains("| `P` (passed through) | 1 |"));
        assert!(text.contains("| PostgreSQL settings | fsync=on |"));
        assert!(
            text.contains("## More\n\n### Empty\n\n| x |\n|---|\n\n- a note\n"),
            "{text}"
        );
        let order: Vec<usize> = ["## Summary", "## Setup", "## More"]
            .iter()
            .map(|heading| text.find(heading).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn saves_the_data_next_to_its_rendering() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        let path = save(&sample(), &dir).unwrap();
        assert_eq!(path, dir.join("sample-2026-01-02.md"));
        let json = std::fs::read_to_string(dir.join("sample-2026-01-02.json")).unwrap();
        let data: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(data["header"]["knobs"][0]["name"], "K");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), markdown(&sample()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
