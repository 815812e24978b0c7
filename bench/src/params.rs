//! The benchmark's knobs, read from environment variables (no argument parser: the one command
//! passes the environment through).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use shared::config::{DEFAULT_AMQP_URL, env_or, env_parse};

/// Everything a run depends on, printed into the results so a figure always comes with its
/// parameters.
#[derive(Debug, Clone)]
pub struct Params {
    /// `BENCH_PG_URL`: the server the benchmark database is created on (no database name).
    pub pg_server: String,
    /// `AMQP_URL`: the broker, shared with the relay process.
    pub amqp_url: String,
    /// `BENCH_ROWS`: rows relayed in the throughput run and messages in the ceiling run.
    pub rows: usize,
    /// `RELAY_BATCH_SIZE`: the relay's batch, and the ceiling publisher's confirm window.
    pub batch_size: usize,
    /// `RELAY_CLAIMERS`: the relay's concurrent claim loops.
    pub claimers: usize,
    /// `BENCH_RATE`: rows per second the latency run commits.
    pub rate: u32,
    /// `BENCH_LATENCY_SECS`: how long the latency run produces.
    pub latency_duration: Duration,
    /// `BENCH_PRODUCERS`: connections the latency run commits on; one connection alone cannot
    /// sustain 1,000 synchronous commits a second once the relay and broker share the CPU.
    pub producers: usize,
    /// `BENCH_PREFETCH`: the consumer's prefetch.
    pub prefetch: u16,
    /// `BENCH_ACK_EVERY`: the consumer acks with `multiple` once per this many deliveries.
    pub ack_every: u64,
    /// `BENCH_TIMEOUT_SECS`: deadline for any one wait (a stuck relay fails the run, not hangs it).
    pub timeout: Duration,
    /// `RELAY_BIN`: the relay binary; default `outbox-relay` next to this binary.
    pub relay_bin: PathBuf,
    /// `BENCH_RESULTS_DIR`: where the markdown results go; default `bench/results`.
    pub results_dir: PathBuf,
}

impl Params {
    pub fn from_env() -> anyhow::Result<Self> {
        let relay_bin = match std::env::var_os("RELAY_BIN") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => std::env::current_exe()
                .context("locating this binary")?
                .with_file_name("outbox-relay"),
        };
        let params = Self {
            pg_server: env_or("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
                .trim_end_matches('/')
                .to_owned(),
            amqp_url: env_or("AMQP_URL", DEFAULT_AMQP_URL),
            rows: env_parse("BENCH_ROWS", 100_000)?,
            batch_size: env_parse("RELAY_BATCH_SIZE", 500)?,
            claimers: env_parse("RELAY_CLAIMERS", 2)?,
            rate: env_parse("BENCH_RATE", 1_000)?,
            latency_duration: Duration::from_secs(env_parse("BENCH_LATENCY_SECS", 20)?),
            producers: env_parse("BENCH_PRODUCERS", 8)?,
            prefetch: env_parse("BENCH_PREFETCH", 1_000)?,
            ack_every: env_parse("BENCH_ACK_EVERY", 100)?,
            timeout: Duration::from_secs(env_parse("BENCH_TIMEOUT_SECS", 300)?),
            relay_bin,
            results_dir: PathBuf::from(env_or(
                "BENCH_RESULTS_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/results"),
            )),
        };
        if params.rows == 0
            || params.batch_size == 0
            || params.claimers == 0
            || params.rate == 0
            || params.producers == 0
            || params.prefetch == 0
            || params.ack_every == 0
        {
            bail!(
                "BENCH_ROWS, RELAY_BATCH_SIZE, RELAY_CLAIMERS, BENCH_RATE, BENCH_PRODUCERS, \
                 BENCH_PREFETCH and BENCH_ACK_EVERY must be at least 1"
            );
        }
        if params.ack_every > u64::from(params.prefetch) {
            // More unacked deliveries than the prefetch allows would stall the consumer.
            bail!("BENCH_ACK_EVERY must not exceed BENCH_PREFETCH");
        }
        Ok(params)
    }

    /// Rows the latency run commits.
    pub fn latency_rows(&self) -> usize {
        let rows = u128::from(self.rate) * self.latency_duration.as_millis() / 1_000;
        usize::try_from(rows).unwrap_or(usize::MAX)
    }
}
