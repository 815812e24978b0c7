//! The relay's metrics: published rows, confirm latency, errors, and the outbox backlog of every
//! database it serves (rows waiting and the age of the oldest), computed on a timer. Served on
//! `GET /metrics` of a small HTTP listener (`RELAY_METRICS_PORT`).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::Utc;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use shared::metrics::SERVICE;
use shared::shutdown::Shutdown;

use crate::store;
use crate::worker::Target;

/// The `service` label of every relay metric.
pub const NAME: &str = "relay";

pub fn describe() {
    describe_counter!(
        "relay_published_total",
        "Outbox rows published and confirmed, by database"
    );
    describe_counter!(
        "relay_errors_total",
        "Relay failures that forced a back-off (broker or database), by database"
    );
    describe_histogram!(
        "relay_confirm_seconds",
        Unit::Seconds,
        "Time from publishing a batch to its last confirm"
    );
    describe_histogram!(
        "relay_batch_seconds",
        Unit::Seconds,
        "Time of one claim-publish-confirm-mark transaction"
    );
    describe_gauge!(
        "outbox_backlog_rows",
        "Unpublished outbox rows, by database"
    );
    describe_gauge!(
        "outbox_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest unpublished outbox row (0 when none), by database"
    );
}

/// Creates `database`'s counters at zero, so that their series exist before its first row or
/// failure: `increase()` sees no first sample of a series, so a counter born at 1 would hide that
/// first failure from the RelayErrors alert (prometheus/alerts.yml).
pub fn register(database: &str) {
    for name in ["relay_published_total", "relay_errors_total"] {
        metrics::counter!(name, SERVICE => NAME, "database" => database.to_owned()).increment(0);
    }
}

/// Refreshes the backlog gauges of `target` every `every` until shutdown.
pub async fn backlog(target: Arc<Target>, every: Duration, mut shutdown: Shutdown) {
    loop {
        match target.pool.get().await {
            Ok(mut conn) => match store::backlog(&mut conn).await {
                Ok((rows, oldest)) => {
                    let age = oldest.map_or(0.0, |at| {
                        (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
                    });
                    metrics::gauge!("outbox_backlog_rows", SERVICE => NAME, "database" => target.name.clone()).set(rows as f64);
                    metrics::gauge!("outbox_oldest_age_seconds", SERVICE => NAME, "database" => target.name.clone()).set(age);
                }
                Err(err) => {
                    tracing::debug!(database = %target.name, error = %err, "backlog query failed")
                }
            },
            Err(err) => {
                tracing::debug!(database = %target.name, error = %err, "backlog: no connection")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Serves `/metrics` and `/health` on `host:port` until shutdown; returns the bound port.
pub fn serve(
    host: &str,
    port: u16,
    mut shutdown: Shutdown,
) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let (listener, port) = shared::http::bind(host, port)?;
    let server = HttpServer::new(|| {
        App::new()
            .wrap(actix_web::middleware::from_fn(
                shared::http::fallback::json_errors,
            ))
            .route("/metrics", web::get().to(render))
            .route(
                "/health",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(async move {
        let running = tokio::spawn(server);
        shutdown.wait().await;
        handle.stop(true).await;
        let _ = running.await;
    });
    Ok((port, task))
}

async fn render() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(shared::metrics::handle(NAME).render())
}
