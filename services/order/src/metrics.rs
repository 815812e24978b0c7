//! The order service's saga metrics: sagas started, sagas ended by outcome and failure code,
//! how long they took from acceptance to their end, and how many are in flight.
//!
//! Outcome counters are incremented after the transaction that decided the outcome commits
//! (`after_commit`), so a retried message counts once.

use std::time::Duration;

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared::db::PgPool;
use shared::metrics::SERVICE;
use shared::shutdown::Shutdown;

use crate::NAME;
use crate::domain::OrderStatus;
use crate::schema::orders;

pub fn describe() {
    // Before the service's own start installs it, or the zero series below would be lost.
    shared::metrics::install();
    describe_counter!(
        "saga_started_total",
        "Orders accepted, each starting a saga"
    );
    describe_counter!(
        "saga_finished_total",
        "Sagas that reached an end, by outcome (completed, failed, cancelled) and failure code"
    );
    describe_histogram!(
        "saga_duration_seconds",
        Unit::Seconds,
        "Time from an order's acceptance to its end, by outcome"
    );
    describe_gauge!("sagas_in_flight", "Orders PENDING or CANCELLING right now");
    // At zero from the start, so that the first timeout is an increase alerts can see.
    ::metrics::counter!("saga_finished_total", SERVICE => NAME, "outcome" => "failed", "reason" => crate::deadline::TIMEOUT)
        .absolute(0);
}

/// An order was accepted (call after its transaction committed).
pub fn started() {
    ::metrics::counter!("saga_started_total", SERVICE => NAME).increment(1);
}

/// A saga ended with `outcome`; `reason` is the failure code (`none` otherwise).
pub fn finished(outcome: &'static str, reason: String, accepted_at: DateTime<Utc>) {
    let took = (Utc::now() - accepted_at)
        .num_microseconds()
        .unwrap_or(0)
        .max(0) as f64
        / 1e6;
    shared::consumer::after_commit(move || {
        ::metrics::counter!("saga_finished_total", SERVICE => NAME, "outcome" => outcome, "reason" => reason).increment(1);
        ::metrics::histogram!("saga_duration_seconds", SERVICE => NAME, "outcome" => outcome)
            .record(took);
    });
}

/// Refreshes `sagas_in_flight` every `every` until shutdown.
pub async fn in_flight(pool: PgPool, every: Duration, mut shutdown: Shutdown) {
    loop {
        if let Ok(mut conn) = pool.get().await {
            let counted: QueryResult<i64> = orders::table
                .filter(orders::status.eq_any([OrderStatus::Pending, OrderStatus::Cancelling]))
                .select(count_star())
                .first(&mut conn)
                .await;
            if let Ok(count) = counted {
                ::metrics::gauge!("sagas_in_flight", SERVICE => NAME).set(count as f64);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}
