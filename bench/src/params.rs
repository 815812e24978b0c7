//! Every knob of both benchmarks, read from environment variables (no argument parser: each
//! one command passes the environment through). A [`Knobs`] reader records each value it reads,
//! under its variable's name, so the results list exactly the parameters they were measured
//! with; what each knob means is in `bench/README.md`.

use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use shared::config::{AmqpSettings, AmqpTls, DEFAULT_AMQP_URL, env_or, env_parse};

use crate::db::Server;

/// One knob as a run used it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knob {
    pub name: String,
    pub value: String,
}

/// Reads knobs and remembers them.
#[derive(Debug, Default)]
pub struct Knobs {
    read: Vec<Knob>,
}

impl Knobs {
    /// `name` parsed as `T`, `default` when unset.
    pub fn parse<T>(&mut self, name: &str, default: T) -> anyhow::Result<T>
    where
        T: FromStr + Display,
        T::Err: Display,
    {
        let value = env_parse(name, default)?;
        self.record(name, value.to_string());
        Ok(value)
    }

    /// `name` as a duration in the project's one format (`500ms`, `20s`, `5m`), `default`
    /// when unset. A variable of the old spelling (`{name}_SECS`, `{name}_MS`) is refused,
    /// naming this one, so an old command line cannot silently run on defaults.
    pub fn duration(&mut self, name: &str, default: &str) -> anyhow::Result<Duration> {
        for old in [format!("{name}_SECS"), format!("{name}_MS")] {
            if std::env::var_os(&old).is_some() {
                bail!("{old} was renamed {name}, which takes a duration such as 500ms, 20s or 5m");
            }
        }
        let text = env_or(name, default);
        let value = shared::config::parse_duration(&text)
            .map_err(|err| anyhow::anyhow!("{name}={text:?}: {err}"))?;
        self.record(name, humantime::format_duration(value).to_string());
        Ok(value)
    }

    /// `name` as text; recorded without any password it holds.
    pub fn text(&mut self, name: &str, default: &str) -> String {
        let value = env_or(name, default);
        self.record(name, shared::db::redact(&value));
        value
    }

    /// A path; not recorded (where files are says nothing about the figures).
    pub fn path(
        &self,
        name: &str,
        default: impl FnOnce() -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<PathBuf> {
        match std::env::var_os(name) {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => default(),
        }
    }

    fn record(&mut self, name: &str, value: String) {
        self.read.push(Knob {
            name: name.to_owned(),
            value,
        });
    }

    /// What was read, in order, then every variable set in the environment that reaches the
    /// processes under test unchanged (`DB_POOL*`, `CONSUMER_*`, `RELAY_*`, `HTTP_WORKERS`).
    pub fn finish(self) -> (Vec<Knob>, Vec<Knob>) {
        let mut passed: Vec<Knob> = std::env::vars()
            .filter(|(name, _)| {
                ["DB_POOL", "CONSUMER_", "RELAY_", "HTTP_WORKERS"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
            })
            .filter(|(name, _)| !self.read.iter().any(|knob| knob.name == *name))
            .map(|(name, value)| Knob {
                value: shared::db::redact(&value),
                name,
            })
            .collect();
        passed.sort_by(|a, b| a.name.cmp(&b.name));
        (self.read, passed)
    }
}

/// The knobs of both benchmarks.
#[derive(Debug, Clone)]
pub struct Common {
    /// `BENCH_PG_URL`: the server the benchmark's databases are created on (no database name).
    pub server: Server,
    /// `AMQP_URL`: the broker, for the benchmark and the processes under test.
    pub amqp_url: String,
    /// `AMQP_TLS_*`: TLS towards an `amqps://` broker (the processes under test inherit them).
    pub amqp_tls: AmqpTls,
    /// `BENCH_RESULTS_DIR`: where the results go; default `bench/results`.
    pub results_dir: PathBuf,
}

impl Common {
    /// The broker with the AMQP name prefix `prefix`.
    pub fn amqp(&self, prefix: &str) -> AmqpSettings {
        AmqpSettings {
            url: self.amqp_url.clone(),
            prefix: prefix.to_owned(),
            tls: self.amqp_tls.clone(),
        }
    }

    pub fn read(knobs: &mut Knobs) -> anyhow::Result<Self> {
        Ok(Self {
            server: Server::new(&knobs.text("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")),
            amqp_url: knobs.text("AMQP_URL", DEFAULT_AMQP_URL),
            amqp_tls: AmqpTls::from_env(),
            results_dir: knobs.path("BENCH_RESULTS_DIR", || {
                Ok(concat!(env!("CARGO_MANIFEST_DIR"), "/results").into())
            })?,
        })
    }
}

/// Fails naming `names` unless every value is at least 1.
fn at_least_one(values: &[u64], names: &str) -> anyhow::Result<()> {
    if values.contains(&0) {
        bail!("{names} must be at least 1");
    }
    Ok(())
}

/// Fails naming `names` unless every value is finite and positive.
fn positive(values: &[f64], names: &str) -> anyhow::Result<()> {
    if values
        .iter()
        .any(|value| !value.is_finite() || *value <= 0.0)
    {
        bail!("{names} must be positive");
    }
    Ok(())
}

pub use relay::RelayParams;
pub use saga::{SagaParams, SystemKind};

mod relay;
mod saga;
