//! Observability end to end: the whole system runs a small batch of orders with mixed outcomes
//! while a real Prometheus scrapes every service, the relay and RabbitMQ's plugin and evaluates
//! the alerting rules; then every expression of every Grafana dashboard must parse and return
//! data ([`dashboards`]: also that they take their data source and filters from variables), every
//! alerting rule must evaluate and find its metrics and labels ([`alerts`]), and the saga
//! counters must match the orders placed.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

#[path = "observability/alerts.rs"]
mod alerts;
#[path = "observability/dashboards.rs"]
mod dashboards;
#[path = "observability/prometheus.rs"]
mod prometheus;

use std::time::Duration;

use chrono::Utc;
use prometheus::{Prometheus, poll};
use shared::shutdown::Shutdown;
use system::{SERVICES, System};

const RABBITMQ_PROMETHEUS: &str = "127.0.0.1:15692";

/// Places orders with every outcome; returns how many were placed.
async fn run_orders(s: &System) -> usize {
    let keyboard = s.create_product("keyboard", "89.90", 10).await;
    let stand = s.create_product("stand", "39.50", 1).await;
    s.charge(21, "1000.00").await;
    s.charge(22, "10.00").await;
    let coupon = s.coupon_for(21, "FIXED", "5").await;
    let orders = [
        (s.place(21, &[(keyboard, 1)], None).await, "COMPLETED"),
        (
            s.place(21, &[(keyboard, 1)], Some(coupon)).await,
            "COMPLETED",
        ),
        (s.place(21, &[(stand, 2)], None).await, "FAILED"),
        (s.place(21, &[(keyboard, 1)], Some(999_999)).await, "FAILED"),
        (s.place(22, &[(keyboard, 1)], None).await, "FAILED"),
    ];
    for (id, status) in orders {
        assert_eq!(s.wait_terminal(id).await["status"], status, "order {id}");
    }
    let cancelled = s.place(21, &[(keyboard, 2)], None).await;
    assert_eq!(s.wait_terminal(cancelled).await["status"], "COMPLETED");
    s.orders().cancel(cancelled).await;
    assert_eq!(s.wait_terminal(cancelled).await["status"], "CANCELLED");
    s.assert_settled().await;
    orders.len() + 1
}

/// The value of a single-series instant query, polled until it equals `expected`.
async fn assert_value(prometheus: &Prometheus, expr: &str, expected: f64) {
    poll(Duration::from_secs(20), expr, || async {
        let body = prometheus.query(expr).await?;
        let value = body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        (value == Some(expected))
            .then_some(())
            .ok_or(format!("got {body}"))
    })
    .await
    .unwrap();
}

/// What Prometheus scrapes: every service, the relay's metrics on `relay_port`, and RabbitMQ's
/// plugin (queue metrics only).
fn scrape_jobs(s: &System, relay_port: u16) -> Vec<(String, String, &'static str)> {
    let mut jobs: Vec<(String, String, &str)> = SERVICES
        .iter()
        .map(|name| {
            let address = s
                .app(name)
                .base_url
                .trim_start_matches("http://")
                .to_owned();
            (name.to_string(), address, "/metrics")
        })
        .collect();
    jobs.push((
        "relay".into(),
        format!("127.0.0.1:{relay_port}"),
        "/metrics",
    ));
    jobs.push((
        "rabbitmq".into(),
        RABBITMQ_PROMETHEUS.into(),
        "/metrics/detailed?family=queue_coarse_metrics",
    ));
    jobs
}

/// One start per order; one end per terminal outcome, where the cancelled order ended twice:
/// completed first, cancelled after.
async fn assert_saga_counters(prometheus: &Prometheus, placed: usize) {
    assert_value(
        prometheus,
        r#"sum(saga_started_total{service="order"})"#,
        placed as f64,
    )
    .await;
    assert_value(
        prometheus,
        r#"sum(saga_finished_total{service="order"})"#,
        (placed + 1) as f64,
    )
    .await;
    for (outcome, count) in [("completed", 3.0), ("failed", 3.0), ("cancelled", 1.0)] {
        let expr = format!(r#"sum(saga_finished_total{{service="order",outcome="{outcome}"}})"#);
        assert_value(prometheus, &expr, count).await;
    }
    for reason in [
        "insufficient_stock",
        "coupon_not_found",
        "insufficient_balance",
    ] {
        let expr = format!(r#"sum(saga_finished_total{{service="order",reason="{reason}"}})"#);
        assert_value(prometheus, &expr, 1.0).await;
    }
}

#[tokio::test]
async fn every_dashboard_expression_returns_data_after_a_mixed_run() {
    let s = System::start().await;
    let (relay_trigger, relay_shutdown) = Shutdown::new();
    let (relay_port, relay_task) =
        outbox_relay::metrics::serve("127.0.0.1", 0, relay_shutdown).unwrap();
    let jobs = scrape_jobs(&s, relay_port);
    let prometheus = Prometheus::start(&jobs, &alerts::rule_file());

    let placed = run_orders(&s).await;
    let ended = Utc::now() + chrono::Duration::seconds(3);
    prometheus.wait_scraped(jobs.len(), ended).await;

    let failures = dashboards::dashboard_failures(&prometheus).await;
    assert!(
        failures.is_empty(),
        "dashboard expressions failed:\n{}",
        failures.join("\n")
    );
    let failures = alerts::alert_failures(&prometheus).await;
    assert!(
        failures.is_empty(),
        "alerting rules failed:\n{}",
        failures.join("\n")
    );
    assert_saga_counters(&prometheus, placed).await;

    drop(prometheus);
    relay_trigger.trigger();
    relay_task.await.unwrap();
    s.stop().await;
}
