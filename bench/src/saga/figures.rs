//! What a run's samples say: throughput, latency percentiles, whether the backlog stayed
//! bounded, and whether the generator kept its schedule.

use std::time::Duration;

use bench::report::millis;
use bench::stats::percentile;
use serde::{Deserialize, Serialize};

use crate::load::{Outcome, Run};

/// The generator is too late when its p99 lag exceeds this: the offered rate was not offered.
const MAX_LAG_P99: Duration = Duration::from_millis(50);

/// The figures of one run at one rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub rate: f64,
    pub arrivals: usize,
    /// Sagas that ended COMPLETED inside the window, per second of it.
    pub completed_per_sec: f64,
    #[serde(with = "millis")]
    pub p50: Duration,
    #[serde(with = "millis")]
    pub p95: Duration,
    #[serde(with = "millis")]
    pub p99: Duration,
    #[serde(with = "millis")]
    pub max: Duration,
    #[serde(with = "millis")]
    pub lag_p99: Duration,
    pub backlog_at_end: i64,
    pub backlog_max: i64,
    #[serde(with = "millis")]
    pub drain: Duration,
    /// The backlog at the end of the window fits in `bound_secs` of arrivals, nothing went
    /// wrong, and the generator kept its schedule.
    pub bounded: bool,
    /// Why not, when not.
    pub verdict: String,
}

impl Figures {
    pub fn of(run: &Run, bound_secs: f64) -> Self {
        let window = run.window.as_secs_f64();
        let in_window = |ended: Option<Duration>| ended.is_some_and(|at| at <= run.window);
        let completed = run
            .samples
            .iter()
            .filter(|s| in_window(s.ended) && s.outcome == Outcome::Completed)
            .count();
        let wrong: Vec<&Outcome> = run
            .samples
            .iter()
            .map(|s| &s.outcome)
            .filter(|outcome| **outcome != Outcome::Completed)
            .collect();
        let mut latencies: Vec<Duration> = run.samples.iter().filter_map(|s| s.latency).collect();
        latencies.sort();
        let mut lags: Vec<Duration> = run.samples.iter().map(|s| s.lag).collect();
        lags.sort();
        let lag_p99 = percentile(&lags, 0.99);
        let bound = (run.rate * bound_secs).ceil() as i64;
        let verdict = if !wrong.is_empty() {
            format!("{} sagas went wrong, e.g. {:?}", wrong.len(), wrong[0])
        } else if lag_p99 > MAX_LAG_P99 {
            format!("the generator fell behind (lag p99 {lag_p99:?})")
        } else if run.backlog_at_end > bound {
            format!(
                "{} sagas unfinished at the end, more than {bound} ({bound_secs} s of arrivals)",
                run.backlog_at_end
            )
        } else {
            String::new()
        };
        Self {
            rate: run.rate,
            arrivals: run.samples.len(),
            completed_per_sec: completed as f64 / window,
            p50: percentile(&latencies, 0.50),
            p95: percentile(&latencies, 0.95),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            lag_p99,
            backlog_at_end: run.backlog_at_end,
            backlog_max: run.backlog.iter().copied().max().unwrap_or(0),
            drain: run.drain,
            bounded: verdict.is_empty(),
            verdict,
        }
    }
}
