//! The relay benchmark's knobs (the relay section of `bench/README.md` says what each means).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::{Common, Knob, Knobs, at_least_one};
use crate::process::beside_this_binary;

/// Each field is the knob named on it.
#[derive(Debug, Clone)]
pub struct RelayParams {
    /// `BENCH_ROWS`
    pub rows: usize,
    /// `RELAY_BATCH_SIZE`, also the ceiling publisher's confirm window
    pub batch_size: usize,
    /// `RELAY_CLAIMERS`
    pub claimers: usize,
    /// `BENCH_RATE`
    pub rate: u32,
    /// `BENCH_LATENCY`
    pub latency_duration: Duration,
    /// `BENCH_PRODUCERS`
    pub producers: usize,
    /// `BENCH_PREFETCH`
    pub prefetch: u16,
    /// `BENCH_ACK_EVERY`
    pub ack_every: u64,
    /// `BENCH_TIMEOUT`
    pub timeout: Duration,
    /// `RELAY_BIN`
    pub relay_bin: PathBuf,
    pub common: Common,
    /// The knobs as read, and the variables passed through to the relay, for the results.
    pub knobs: (Vec<Knob>, Vec<Knob>),
}

impl RelayParams {
    pub fn from_env() -> anyhow::Result<Self> {
        let mut knobs = Knobs::default();
        let mut params = Self {
            rows: knobs.parse("BENCH_ROWS", 100_000)?,
            batch_size: knobs.parse("RELAY_BATCH_SIZE", 500)?,
            claimers: knobs.parse("RELAY_CLAIMERS", 2)?,
            rate: knobs.parse("BENCH_RATE", 1_000)?,
            latency_duration: knobs.duration("BENCH_LATENCY", "20s")?,
            producers: knobs.parse("BENCH_PRODUCERS", 8)?,
            prefetch: knobs.parse("BENCH_PREFETCH", 1_000)?,
            ack_every: knobs.parse("BENCH_ACK_EVERY", 100)?,
            timeout: knobs.duration("BENCH_TIMEOUT", "5m")?,
            relay_bin: knobs.path("RELAY_BIN", || beside_this_binary("outbox-relay"))?,
            common: Common::read(&mut knobs)?,
            knobs: Default::default(),
        };
        let counts = [
            params.rows,
            params.batch_size,
            params.claimers,
            params.producers,
        ];
        at_least_one(
            &counts
                .map(|n| n as u64)
                .into_iter()
                .chain([
                    u64::from(params.rate),
                    u64::from(params.prefetch),
                    params.ack_every,
                ])
                .collect::<Vec<_>>(),
            "BENCH_ROWS, RELAY_BATCH_SIZE, RELAY_CLAIMERS, BENCH_PRODUCERS, BENCH_RATE, \
             BENCH_PREFETCH and BENCH_ACK_EVERY",
        )?;
        if params.ack_every > u64::from(params.prefetch) {
            // More unacked deliveries than the prefetch allows would stall the consumer.
            bail!("BENCH_ACK_EVERY must not exceed BENCH_PREFETCH");
        }
        params.knobs = knobs.finish();
        Ok(params)
    }

    /// Rows the latency run commits.
    pub fn latency_rows(&self) -> usize {
        let rows = u128::from(self.rate) * self.latency_duration.as_millis() / 1_000;
        usize::try_from(rows).unwrap_or(usize::MAX)
    }
}
