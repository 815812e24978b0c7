//! The machine a benchmark ran on, written next to every figure it produced.

/// Where the figures came from; without it a rate means nothing.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: String,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub postgres: String,
    pub rabbitmq: String,
    /// `/proc/loadavg` when the benchmark started: anything else running shows here.
    pub load_average: String,
}

impl Machine {
    pub fn probe(postgres: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let line_value = |text: &str, key: &str| {
            text.lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
        };
        let memory = line_value(&meminfo, "MemTotal")
            .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
        Self {
            cores: command_output("nproc", &[]).unwrap_or_else(unknown),
            cpu_model: line_value(&cpuinfo, "model name").unwrap_or_else(unknown),
            memory: memory.unwrap_or_else(unknown),
            kernel: command_output("uname", &["-r"]).unwrap_or_else(unknown),
            postgres,
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
        }
    }
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
