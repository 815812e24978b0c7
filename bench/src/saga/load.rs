//! The load generator: orders arrive at a fixed rate (open loop: an arrival is due at
//! `start + i / rate` whether or not earlier sagas have ended, so a slow system cannot slow its
//! own load down), each placed with `POST /orders` and followed with `GET /orders/{id}?wait_ms=`
//! until it ends. A saga's latency runs from just before its POST to the answer that shows it
//! terminal, which is what a user waiting on the order sees.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::cpu::{CpuSample, CpuUsage};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::fixtures::Fixtures;
use crate::system::Urls;

/// How one saga went.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When its arrival was due, from the run's start.
    pub due: Duration,
    /// How late the generator sent it.
    pub lag: Duration,
    /// When it ended, from the run's start; `None` if it never did.
    pub ended: Option<Duration>,
    /// POST to terminal answer.
    pub latency: Option<Duration>,
    /// The terminal status, or what went wrong.
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Terminal but not COMPLETED: every planned order should complete.
    Ended(String),
    /// The POST or a GET failed.
    Error(String),
    /// Not terminal within the give-up time.
    GaveUp,
}

/// One run at one rate.
#[derive(Debug, Clone)]
pub struct Run {
    pub rate: f64,
    pub window: Duration,
    pub samples: Vec<Sample>,
    /// Unfinished sagas, once a second through the window.
    pub backlog: Vec<i64>,
    /// Unfinished sagas when the window closed.
    pub backlog_at_end: i64,
    /// From the window's end until the last saga ended.
    pub drain: Duration,
    pub cpu: CpuUsage,
}

pub struct Driver {
    pub client: reqwest::Client,
    pub urls: Urls,
    pub wait_ms: u64,
    pub give_up: Duration,
}

impl Driver {
    /// Offers `rate` orders per second for `window`, awaits `at_end` as the window closes (to
    /// read what is queued then), then waits for every saga to end.
    pub async fn run<F: Future>(
        &self,
        fixtures: &mut Fixtures,
        rate: f64,
        window: Duration,
        pids: &[(String, u32)],
        at_end: F,
    ) -> anyhow::Result<(Run, F::Output)> {
        let arrivals = (rate * window.as_secs_f64()).round() as usize;
        fixtures
            .refill_coupons(&self.client, &self.urls, arrivals)
            .await?;
        let plans: Vec<Value> = (0..arrivals).map(|_| fixtures.next_order().body).collect();

        let in_flight = Arc::new(AtomicI64::new(0));
        let backlog = Arc::new(Mutex::new(Vec::new()));
        let cpu_start = CpuSample::take(pids);
        let start = Instant::now();
        let sampler = sample_backlog(start, in_flight.clone(), backlog.clone());
        let orders = &self.urls.orders;
        anyhow::ensure!(
            !orders.is_empty(),
            "no order-service instance to place orders on"
        );
        let mut sagas = JoinSet::new();
        for (index, body) in plans.into_iter().enumerate() {
            let due = Duration::from_secs_f64(index as f64 / rate);
            tokio::time::sleep_until(tokio::time::Instant::from_std(start + due)).await;
            let lag = start.elapsed().saturating_sub(due);
            in_flight.fetch_add(1, Ordering::SeqCst);
            let saga = Saga {
                client: self.client.clone(),
                // Round robin over the order instances; a saga stays on the one it started on.
                order_url: orders[index % orders.len()].clone(),
                wait_ms: self.wait_ms,
                give_up: self.give_up,
                start,
            };
            let in_flight = in_flight.clone();
            sagas.spawn(async move {
                let mut sample = saga.drive(body).await;
                sample.due = due;
                sample.lag = lag;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                sample
            });
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(start + window)).await;
        let backlog_at_end = in_flight.load(Ordering::SeqCst);
        let cpu = CpuSample::take(pids).since(&cpu_start);
        sampler.abort();
        let window_end = Instant::now();
        let at_end = at_end.await;
        let mut samples = Vec::with_capacity(arrivals);
        while let Some(sample) = sagas.join_next().await {
            samples.push(sample.context("a saga task panicked")?);
        }
        let drain = window_end.elapsed();
        samples.sort_by_key(|sample| sample.due);
        let backlog = backlog.lock().map(|b| b.clone()).unwrap_or_default();
        let run = Run {
            rate,
            window,
            samples,
            backlog,
            backlog_at_end,
            drain,
            cpu,
        };
        Ok((run, at_end))
    }
}

/// Records the unfinished sagas into `backlog` once a second from `start`, until aborted.
fn sample_backlog(
    start: Instant,
    in_flight: Arc<AtomicI64>,
    backlog: Arc<Mutex<Vec<i64>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::from_std(start) + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        loop {
            tick.tick().await;
            if let Ok(mut samples) = backlog.lock() {
                samples.push(in_flight.load(Ordering::SeqCst));
            }
        }
    })
}

/// What one saga task needs.
struct Saga {
    client: reqwest::Client,
    order_url: String,
    wait_ms: u64,
    give_up: Duration,
    start: Instant,
}

impl Saga {
    async fn drive(&self, body: Value) -> Sample {
        let sent = Instant::now();
        let outcome = match self.place_and_wait(body, sent).await {
            Ok(outcome) => outcome,
            Err(err) => Outcome::Error(format!("{err:#}")),
        };
        let ended = matches!(outcome, Outcome::Completed | Outcome::Ended(_)).then(Instant::now);
        Sample {
            due: Duration::ZERO,
            lag: Duration::ZERO,
            ended: ended.map(|at| at.duration_since(self.start)),
            latency: ended.map(|at| at.duration_since(sent)),
            outcome,
        }
    }

    async fn place_and_wait(&self, body: Value, sent: Instant) -> anyhow::Result<Outcome> {
        let response = self
            .client
            .post(format!("{}/orders", self.order_url))
            .json(&body)
            .send()
            .await
            .context("POST /orders")?;
        let status = response.status();
        let placed: Value = response.json().await.context("POST /orders body")?;
        anyhow::ensure!(
            status.is_success(),
            "POST /orders answered {status}: {placed}"
        );
        let id = placed["order_id"]
            .as_i64()
            .context("POST /orders answered without an order_id")?;
        // The monolith's POST already answers with the end state; the order is read back all
        // the same, so that both systems serve the same two requests per saga.
        loop {
            if sent.elapsed() >= self.give_up {
                return Ok(Outcome::GaveUp);
            }
            let response = self
                .client
                .get(format!(
                    "{}/orders/{id}?wait_ms={}",
                    self.order_url, self.wait_ms
                ))
                .send()
                .await
                .context("GET /orders/{id}")?;
            let status = response.status();
            let order: Value = response.json().await.context("GET /orders/{id} body")?;
            anyhow::ensure!(
                status.is_success(),
                "GET /orders/{id} answered {status}: {order}"
            );
            if let Some(outcome) = terminal(&order) {
                return Ok(outcome);
            }
        }
    }
}

fn terminal(order: &Value) -> Option<Outcome> {
    use order_service::domain::OrderStatus;
    let status: OrderStatus = order["status"].as_str()?.parse().ok()?;
    match status {
        OrderStatus::Completed => Some(Outcome::Completed),
        status if status.is_terminal() => Some(Outcome::Ended(format!(
            "{status} {}",
            order["failure_code"].as_str().unwrap_or("")
        ))),
        _ => None,
    }
}
