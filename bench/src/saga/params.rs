//! The saga benchmark's knobs, read from environment variables (the one command passes the
//! environment through), printed into the results so that a figure comes with its parameters.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use shared::config::{DEFAULT_AMQP_URL, env_or, env_parse};

use crate::system::Kind;

#[derive(Debug, Clone)]
pub struct Params {
    /// `BENCH_PG_URL`: the server the benchmark's databases are created on (no database name).
    pub pg_server: String,
    /// `AMQP_URL`: the broker the distributed system uses.
    pub amqp_url: String,
    /// `SAGA_BENCH_SYSTEMS`: which systems to measure, in order (`distributed,monolith`).
    pub systems: Vec<Kind>,
    /// `SAGA_BENCH_STEP_SECS`: how long each arrival rate of the throughput search is held.
    pub step: Duration,
    /// `SAGA_BENCH_LATENCY_SECS`: how long each latency run lasts.
    pub latency_run: Duration,
    /// `SAGA_BENCH_LOW_RATE`: the fixed rate of the first latency run (sagas per second).
    pub low_rate: f64,
    /// `SAGA_BENCH_HIGH_SHARE`: the second latency run's rate as a share of the maximum.
    pub high_share: f64,
    /// `SAGA_BENCH_START_RATE`: the first rate the throughput search tries.
    pub start_rate: f64,
    /// `SAGA_BENCH_MAX_RATE`: the search never offers more than this.
    pub max_rate: f64,
    /// `SAGA_BENCH_RESOLUTION`: the search stops when the highest bounded and the lowest
    /// unbounded rate are within this fraction of each other.
    pub resolution: f64,
    /// `SAGA_BENCH_BOUND_SECS`: a rate is sustained when, at the end of its step, no more
    /// sagas are unfinished than arrive in this many seconds.
    pub bound_secs: f64,
    /// `SAGA_BENCH_PRODUCTS`: products to order from (spread, so row locks do not serialize
    /// the benchmark on a few hot rows).
    pub products: usize,
    /// `SAGA_BENCH_USERS`: users who order, each charged with plenty of balance.
    pub users: usize,
    /// `SAGA_BENCH_COUPON_PERCENT`: share of orders that use a coupon (each a fresh one).
    pub coupon_percent: f64,
    /// `SAGA_BENCH_MAX_ITEMS`: each order has 1 to this many lines, of 1 or 2 items each.
    pub max_items: usize,
    /// `SAGA_BENCH_WAIT_MS`: the `wait_ms` of each long poll.
    pub wait_ms: u64,
    /// `SAGA_BENCH_GIVE_UP_SECS`: a saga not ended this long after its order is a failure.
    pub give_up: Duration,
    /// `SAGA_BENCH_READY_SECS`: how long the system may take to start.
    pub ready_timeout: Duration,
    /// `BENCH_BIN_DIR`: where the service, relay and monolith binaries are; default: next to
    /// this binary.
    pub bin_dir: PathBuf,
    /// `BENCH_RESULTS_DIR`: where the results go; default `bench/results`.
    pub results_dir: PathBuf,
}

impl Params {
    pub fn from_env() -> anyhow::Result<Self> {
        let bin_dir = match std::env::var_os("BENCH_BIN_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => std::env::current_exe()
                .context("locating this binary")?
                .parent()
                .context("this binary has no directory")?
                .to_path_buf(),
        };
        let systems = env_or("SAGA_BENCH_SYSTEMS", "distributed,monolith")
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(Kind::parse)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let params = Self {
            pg_server: env_or("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
                .trim_end_matches('/')
                .to_owned(),
            amqp_url: env_or("AMQP_URL", DEFAULT_AMQP_URL),
            systems,
            step: Duration::from_secs(env_parse("SAGA_BENCH_STEP_SECS", 60)?),
            latency_run: Duration::from_secs(env_parse("SAGA_BENCH_LATENCY_SECS", 60)?),
            low_rate: env_parse("SAGA_BENCH_LOW_RATE", 50.0)?,
            high_share: env_parse("SAGA_BENCH_HIGH_SHARE", 0.6)?,
            start_rate: env_parse("SAGA_BENCH_START_RATE", 100.0)?,
            max_rate: env_parse("SAGA_BENCH_MAX_RATE", 5_000.0)?,
            resolution: env_parse("SAGA_BENCH_RESOLUTION", 0.05)?,
            bound_secs: env_parse("SAGA_BENCH_BOUND_SECS", 2.0)?,
            products: env_parse("SAGA_BENCH_PRODUCTS", 1_000)?,
            users: env_parse("SAGA_BENCH_USERS", 2_000)?,
            coupon_percent: env_parse("SAGA_BENCH_COUPON_PERCENT", 10.0)?,
            max_items: env_parse("SAGA_BENCH_MAX_ITEMS", 3)?,
            wait_ms: env_parse("SAGA_BENCH_WAIT_MS", 10_000)?,
            give_up: Duration::from_secs(env_parse("SAGA_BENCH_GIVE_UP_SECS", 120)?),
            ready_timeout: Duration::from_secs(env_parse("SAGA_BENCH_READY_SECS", 120)?),
            bin_dir,
            results_dir: PathBuf::from(env_or(
                "BENCH_RESULTS_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/results"),
            )),
        };
        if params.systems.is_empty() {
            bail!("SAGA_BENCH_SYSTEMS names no system");
        }
        if params.step.is_zero() || params.latency_run.is_zero() {
            bail!("SAGA_BENCH_STEP_SECS and SAGA_BENCH_LATENCY_SECS must be at least 1");
        }
        let positive = [
            params.low_rate,
            params.start_rate,
            params.max_rate,
            params.resolution,
            params.bound_secs,
        ];
        if positive
            .iter()
            .any(|value| !value.is_finite() || *value <= 0.0)
        {
            bail!(
                "SAGA_BENCH_LOW_RATE, _START_RATE, _MAX_RATE, _RESOLUTION and _BOUND_SECS \
                 must be positive"
            );
        }
        if !(0.0..=1.0).contains(&params.high_share) || params.high_share == 0.0 {
            bail!("SAGA_BENCH_HIGH_SHARE must be in (0, 1]");
        }
        if !(0.0..=100.0).contains(&params.coupon_percent) {
            bail!("SAGA_BENCH_COUPON_PERCENT must be 0 to 100");
        }
        if params.products == 0 || params.users == 0 || params.max_items == 0 {
            bail!("SAGA_BENCH_PRODUCTS, _USERS and _MAX_ITEMS must be at least 1");
        }
        if params.max_items > params.products.min(order_service::domain::MAX_ITEMS) {
            bail!("SAGA_BENCH_MAX_ITEMS exceeds the products or the order's item limit");
        }
        Ok(params)
    }
}
