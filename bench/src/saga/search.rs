//! The measurements of one system: the highest arrival rate whose backlog stays bounded
//! (doubling from the start rate until one is not, then bisecting), and the latency at the low
//! fixed rate and at a share of that maximum.

use std::time::Duration;

use crate::cpu::CpuSpent;
use crate::figures::Figures;
use crate::fixtures::Fixtures;
use crate::load::Driver;
use crate::params::Params;
use crate::system::{Kind, System};

/// Not measured: fills pools and caches before the first probe.
const WARM_UP: Duration = Duration::from_secs(5);

/// One run with its figures, its CPU and what was left queued at its end.
#[derive(Debug, Clone)]
pub struct Probe {
    pub figures: Figures,
    pub cpu: CpuSpent,
    /// Messages waiting in the consumers' queues when the window closed.
    pub queued_at_end: u64,
}

#[derive(Debug, Clone)]
pub struct Measured {
    pub kind: Kind,
    pub processes: Vec<String>,
    pub probes: Vec<Probe>,
    /// The highest bounded probe.
    pub max: Option<Probe>,
    pub low: Probe,
    pub high: Option<Probe>,
    /// After everything: unpublished outbox rows and dead letters (both must be 0).
    pub unpublished: i64,
    pub dead_letters: u64,
}

pub async fn measure(system: &mut System, params: &Params) -> anyhow::Result<Measured> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(params.wait_ms) + Duration::from_secs(30))
        // Below actix's 5 s keep-alive: a connection the server is closing is never reused.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()?;
    let mut fixtures = Fixtures::create(&client, &system.urls, params).await?;
    let driver = Driver {
        client,
        urls: system.urls.clone(),
        wait_ms: params.wait_ms,
        give_up: params.give_up,
    };
    let label = system.kind.label();
    let pids = system.pids();
    driver
        .run(&mut fixtures, params.low_rate, WARM_UP, &pids, async {})
        .await?;

    let mut probes: Vec<Probe> = Vec::new();
    let mut best: Option<Probe> = None;
    let mut ceiling: Option<f64> = None;
    let mut rate = params.start_rate.min(params.max_rate).round().max(1.0);
    loop {
        let probe = probe(system, &driver, &mut fixtures, params, rate, params.step).await?;
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
        let next = match (lo, ceiling) {
            (Some(lo), None) if lo >= params.max_rate => break,
            (Some(lo), None) => (lo * 2.0).min(params.max_rate),
            (Some(lo), Some(hi)) if hi <= lo * (1.0 + params.resolution) => break,
            (Some(lo), Some(hi)) => (lo + hi) / 2.0,
            (None, Some(hi)) if hi <= 2.0 => break,
            (None, Some(hi)) => hi / 2.0,
            (None, None) => break,
        };
        let next = next.round();
        if probes.iter().any(|p| p.figures.rate == next) {
            break;
        }
        rate = next;
    }

    let low = probe(
        system,
        &driver,
        &mut fixtures,
        params,
        params.low_rate,
        params.latency_run,
    )
    .await?;
    let high = match &best {
        Some(max) => Some(
            probe(
                system,
                &driver,
                &mut fixtures,
                params,
                (max.figures.rate * params.high_share).round().max(1.0),
                params.latency_run,
            )
            .await?,
        ),
        None => None,
    };
    let unpublished = system.unpublished().await?;
    let (_, dead_letters) = system.queued().await?;
    Ok(Measured {
        kind: system.kind,
        processes: pids.into_iter().map(|(name, _)| name).collect(),
        probes,
        max: best,
        low,
        high,
        unpublished,
        dead_letters,
    })
}

async fn probe(
    system: &mut System,
    driver: &Driver,
    fixtures: &mut Fixtures,
    params: &Params,
    rate: f64,
    window: Duration,
) -> anyhow::Result<Probe> {
    let pids = system.pids();
    // The queue depths are read as the window closes, while the sagas still drain.
    let (run, queued) = driver
        .run(fixtures, rate, window, &pids, system.queued())
        .await?;
    let queued_at_end = queued?.0;
    system.check_alive()?;
    let mut figures = Figures::of(&run, params.bound_secs);
    // Five events per saga reach the monitor; allow as many queued as the client may have
    // unfinished sagas.
    let queued_bound = (rate * params.bound_secs * 5.0).ceil() as u64;
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
