//! The machine a benchmark ran on, recorded with every figure it produced: without it a rate
//! means nothing.

use serde::{Deserialize, Serialize};

use crate::db::Server;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: String,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub postgres: String,
    /// The server settings that move the figures (autovacuum above all).
    pub postgres_settings: String,
    pub rabbitmq: String,
    /// `/proc/loadavg` when the benchmark started: anything else running shows here.
    pub load_average: String,
}

impl Machine {
    /// Reads /proc, a few commands and the PostgreSQL `server`.
    pub async fn probe(server: &Server) -> anyhow::Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = line_value(&meminfo, "MemTotal")
            .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
        Ok(Self {
            cores: command_output("nproc", &[]).unwrap_or_else(unknown),
            cpu_model: line_value(&cpuinfo, "model name").unwrap_or_else(unknown),
            memory: memory.unwrap_or_else(unknown),
            kernel: command_output("uname", &["-r"]).unwrap_or_else(unknown),
            postgres: server.version().await?,
            postgres_settings: server.settings().await?,
            // Needs the Erlang cookie, i.e. a local broker run by the same user; optional.
            rabbitmq: command_output("rabbitmqctl", &["-q", "version"])
                .map(|version| format!("RabbitMQ {version}"))
                .unwrap_or_else(unknown),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .map(|text| {
                    text.split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(unknown),
        })
    }

    /// The rows of the results' machine table.
    pub fn rows(&self) -> Vec<Vec<String>> {
        [
            ("Cores (`nproc`)", &self.cores),
            ("CPU", &self.cpu_model),
            ("Memory", &self.memory),
            ("Kernel", &self.kernel),
            ("PostgreSQL", &self.postgres),
            ("PostgreSQL settings", &self.postgres_settings),
            ("RabbitMQ", &self.rabbitmq),
            ("Load average at start", &self.load_average),
        ]
        .into_iter()
        .map(|(name, value)| vec![name.to_owned(), value.clone()])
        .collect()
    }
}

fn line_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_owned())
}

fn unknown() -> String {
    "unknown".to_owned()
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
