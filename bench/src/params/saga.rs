//! The saga benchmark's knobs (the saga section of `bench/README.md` says what each means), and
//! the systems it measures.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::{Common, Knob, Knobs, at_least_one, positive};
use crate::process::binary_dir;

/// A system the saga benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// Four services, the monitor and the relay, over RabbitMQ.
    Distributed,
    /// One process, one database, one transaction per order.
    Monolith,
}

impl SystemKind {
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "distributed" => Ok(Self::Distributed),
            "monolith" => Ok(Self::Monolith),
            other => bail!("unknown system {other:?}: expected distributed or monolith"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Distributed => "distributed",
            Self::Monolith => "monolith",
        }
    }
}

/// Each field is the knob named on it.
#[derive(Debug, Clone)]
pub struct SagaParams {
    /// `SAGA_BENCH_SYSTEMS`
    pub systems: Vec<SystemKind>,
    /// `SAGA_BENCH_INSTANCES`: processes of each service of the distributed system.
    pub instances: usize,
    /// `SAGA_BENCH_STEP`
    pub step: Duration,
    /// `SAGA_BENCH_LATENCY`
    pub latency_run: Duration,
    /// `SAGA_BENCH_LOW_RATE`
    pub low_rate: f64,
    /// `SAGA_BENCH_HIGH_SHARE`
    pub high_share: f64,
    /// `SAGA_BENCH_START_RATE`
    pub start_rate: f64,
    /// `SAGA_BENCH_MAX_RATE`
    pub max_rate: f64,
    /// `SAGA_BENCH_RESOLUTION`
    pub resolution: f64,
    /// `SAGA_BENCH_BOUND`
    pub bound_secs: f64,
    /// `SAGA_BENCH_PRODUCTS`
    pub products: usize,
    /// `SAGA_BENCH_USERS`
    pub users: usize,
    /// `SAGA_BENCH_COUPON_PERCENT`
    pub coupon_percent: f64,
    /// `SAGA_BENCH_MAX_ITEMS`
    pub max_items: usize,
    /// `SAGA_BENCH_WAIT`
    pub wait_ms: u64,
    /// `SAGA_BENCH_GIVE_UP`
    pub give_up: Duration,
    /// `SAGA_BENCH_READY`
    pub ready_timeout: Duration,
    /// `SAGA_BENCH_RUST_LOG`
    pub rust_log: String,
    /// `BENCH_BIN_DIR`
    pub bin_dir: PathBuf,
    pub common: Common,
    /// The knobs as read, and the variables passed through to the system, for the results.
    pub knobs: (Vec<Knob>, Vec<Knob>),
}

impl SagaParams {
    pub fn from_env() -> anyhow::Result<Self> {
        let mut knobs = Knobs::default();
        let systems = knobs
            .text("SAGA_BENCH_SYSTEMS", "distributed,monolith")
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(SystemKind::parse)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let params = Self {
            systems,
            instances: knobs.parse("SAGA_BENCH_INSTANCES", 1)?,
            step: knobs.duration("SAGA_BENCH_STEP", "60s")?,
            latency_run: knobs.duration("SAGA_BENCH_LATENCY", "60s")?,
            low_rate: knobs.parse("SAGA_BENCH_LOW_RATE", 50.0)?,
            high_share: knobs.parse("SAGA_BENCH_HIGH_SHARE", 0.6)?,
            start_rate: knobs.parse("SAGA_BENCH_START_RATE", 100.0)?,
            max_rate: knobs.parse("SAGA_BENCH_MAX_RATE", 5_000.0)?,
            resolution: knobs.parse("SAGA_BENCH_RESOLUTION", 0.05)?,
            bound_secs: knobs.duration("SAGA_BENCH_BOUND", "2s")?.as_secs_f64(),
            products: knobs.parse("SAGA_BENCH_PRODUCTS", 1_000)?,
            users: knobs.parse("SAGA_BENCH_USERS", 2_000)?,
            coupon_percent: knobs.parse("SAGA_BENCH_COUPON_PERCENT", 10.0)?,
            max_items: knobs.parse("SAGA_BENCH_MAX_ITEMS", 3)?,
            wait_ms: u64::try_from(knobs.duration("SAGA_BENCH_WAIT", "10s")?.as_millis())
                .unwrap_or(u64::MAX),
            give_up: knobs.duration("SAGA_BENCH_GIVE_UP", "2m")?,
            ready_timeout: knobs.duration("SAGA_BENCH_READY", "2m")?,
            rust_log: knobs.text("SAGA_BENCH_RUST_LOG", "warn"),
            bin_dir: knobs.path("BENCH_BIN_DIR", binary_dir)?,
            common: Common::read(&mut knobs)?,
            knobs: Default::default(),
        };
        params.validate()?;
        Ok(Self {
            knobs: knobs.finish(),
            ..params
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.systems.is_empty() {
            bail!("SAGA_BENCH_SYSTEMS names no system");
        }
        at_least_one(&[self.instances as u64], "SAGA_BENCH_INSTANCES")?;
        at_least_one(
            &[self.step.as_secs(), self.latency_run.as_secs()],
            "SAGA_BENCH_STEP and SAGA_BENCH_LATENCY (at least 1s)",
        )?;
        positive(
            &[
                self.low_rate,
                self.start_rate,
                self.max_rate,
                self.resolution,
                self.bound_secs,
            ],
            "SAGA_BENCH_LOW_RATE, _START_RATE, _MAX_RATE, _RESOLUTION and _BOUND",
        )?;
        if !(0.0..=1.0).contains(&self.high_share) || self.high_share == 0.0 {
            bail!("SAGA_BENCH_HIGH_SHARE must be in (0, 1]");
        }
        if !(0.0..=100.0).contains(&self.coupon_percent) {
            bail!("SAGA_BENCH_COUPON_PERCENT must be 0 to 100");
        }
        at_least_one(
            &[
                self.products as u64,
                self.users as u64,
                self.max_items as u64,
            ],
            "SAGA_BENCH_PRODUCTS, _USERS and _MAX_ITEMS",
        )?;
        if self.max_items > self.products.min(order_service::domain::MAX_ITEMS) {
            bail!("SAGA_BENCH_MAX_ITEMS exceeds the products or the order's item limit");
        }
        Ok(())
    }
}
