//! The measurements of one system: the highest arrival rate whose backlog stays bounded
//! (doubling from the start rate until one is not, then bisecting), and the latency at the low
//! fixed rate and at a share of that maximum.

use std::time::Duration;

use bench::cpu::CpuUsage;
use bench::params::{SagaParams, SystemKind as Kind};
use serde::{Deserialize, Serialize};

use crate::figures::Figures;
use crate::fixtures::Fixtures;
use crate::load::Driver;
use crate::system::System;

/// Not measured: fills pools and caches before the first probe.
const WARM_UP: Duration = Duration::from_secs(5);

/// One run with its figures, its CPU and what was left queued at its end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub figures: Figures,
    pub cpu: CpuUsage,
    /// Messages waiting in the consumers' queues when the window closed.
    pub queued_at_end: u64,
}

/// Everything measured on one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub kind: Kind,
    /// Processes of each service: `SAGA_BENCH_INSTANCES` for the distributed system (its relay
    /// is always one), 1 for the monolith. Results written before the knob ran one.
    #[serde(default = "one")]
    pub instances: usize,
    pub processes: Vec<String>,
    /// Every probe of the search, in order.
    pub probes: Vec<Probe>,
    /// The highest bounded probe.
    pub max: Option<Probe>,
    pub low: Probe,
    pub high: Option<Probe>,
    /// After everything: unpublished outbox rows and dead letters (both must be 0).
    pub unpublished: i64,
    pub dead_letters: u64,
}

fn one() -> usize {
    1
}

/// A system under load, with what loading it needs.
struct Session<'a> {
    system: &'a mut System,
    driver: Driver,
    fixtures: Fixtures,
    params: &'a SagaParams,
}

pub async fn measure(system: &mut System, params: &SagaParams) -> anyhow::Result<Measured> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(params.wait_ms) + Duration::from_secs(30))
        // Below actix's 5 s keep-alive: a connection the server is closing is never reused.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()?;
    let fixtures = Fixtures::create(&client, &system.urls, params).await?;
    let driver = Driver {
        client,
        urls: system.urls.clone(),
        wait_ms: params.wait_ms,
        give_up: params.give_up,
    };
    let mut session = Session {
        system,
        driver,
        fixtures,
        params,
    };
    let pids = session.system.pids();
    session
        .driver
        .run(
            &mut session.fixtures,
            params.low_rate,
            WARM_UP,
            &pids,
            async {},
        )
        .await?;

    let (probes, best) = session.search().await?;
    session.system.vacuum().await?;
    let low = session.probe(params.low_rate, params.latency_run).await?;
    let high = match &best {
        Some(max) => {
            let rate = (max.figures.rate * params.high_share).round().max(1.0);
            Some(session.probe(rate, params.latency_run).await?)
        }
        None => None,
    };
    let unpublished = session.system.unpublished().await?;
    let (_, dead_letters) = session.system.queued().await?;
    let kind = session.system.kind;
    Ok(Measured {
        kind,
        instances: match kind {
            Kind::Distributed => params.instances,
            Kind::Monolith => 1,
        },
        processes: pids.into_iter().map(|(name, _)| name).collect(),
        probes,
        max: best,
        low,
        high,
        unpublished,
        dead_letters,
    })
}

impl Session<'_> {
    /// Every probe of the search, and the highest bounded one.
    async fn search(&mut self) -> anyhow::Result<(Vec<Probe>, Option<Probe>)> {
        let params = self.params;
        let label = self.system.kind.label();
        let mut probes: Vec<Probe> = Vec::new();
        let mut best: Option<Probe> = None;
        let mut ceiling: Option<f64> = None;
        let mut rate = params.start_rate.min(params.max_rate).round().max(1.0);
        loop {
            let probe = self.probe(rate, params.step).await?;
            let f = &probe.figures;
            eprintln!(
                "saga-bench {label}: {rate:>6.0}/s → {:>7.1} completed/s, p50 {:?} p99 {:?}, \
                 backlog {} + {} queued, {}",
                f.completed_per_sec,
                f.p50,
                f.p99,
                f.backlog_at_end,
                probe.queued_at_end,
                if f.bounded { "bounded" } else { &f.verdict },
            );
            if f.bounded {
                if best.as_ref().is_none_or(|b| rate > b.figures.rate) {
                    best = Some(probe.clone());
                }
            } else {
                ceiling = Some(ceiling.map_or(rate, |c: f64| c.min(rate)));
            }
            probes.push(probe);
            let lo = best.as_ref().map(|b| b.figures.rate);
            match next_rate(lo, ceiling, params) {
                Some(next) if !probes.iter().any(|p| p.figures.rate == next) => rate = next,
                _ => break,
            }
        }
        Ok((probes, best))
    }

    /// One window at `rate`.
    async fn probe(&mut self, rate: f64, window: Duration) -> anyhow::Result<Probe> {
        let pids = self.system.pids();
        // The queue depths are read as the window closes, while the sagas still drain.
        let (run, queued) = self
            .driver
            .run(
                &mut self.fixtures,
                rate,
                window,
                &pids,
                self.system.queued(),
            )
            .await?;
        let queued_at_end = queued?.0;
        self.system.check_alive()?;
        self.system.wait_until_drained(self.params.give_up).await?;
        let bound_secs = self.params.bound_secs;
        let mut figures = Figures::of(&run, bound_secs);
        // Five events per saga reach the monitor; allow as many queued as the client may have
        // unfinished sagas.
        let queued_bound = (rate * bound_secs * 5.0).ceil() as u64;
        if figures.bounded && queued_at_end > queued_bound {
            figures.bounded = false;
            figures.verdict =
                format!("{queued_at_end} messages queued at the end, more than {queued_bound}");
        }
        Ok(Probe {
            figures,
            cpu: run.cpu,
            queued_at_end,
        })
    }
}

/// The search's next rate from the highest bounded rate and the lowest unbounded one so far,
/// or `None` when it is done: doubling while nothing failed, then bisecting to the resolution.
fn next_rate(lo: Option<f64>, hi: Option<f64>, params: &SagaParams) -> Option<f64> {
    let next = match (lo, hi) {
        (Some(lo), None) if lo >= params.max_rate => return None,
        (Some(lo), None) => (lo * 2.0).min(params.max_rate),
        (Some(lo), Some(hi)) if hi <= lo * (1.0 + params.resolution) => return None,
        (Some(lo), Some(hi)) => (lo + hi) / 2.0,
        (None, Some(hi)) if hi <= 2.0 => return None,
        (None, Some(hi)) => hi / 2.0,
        (None, None) => return None,
    };
    Some(next.round())
}
