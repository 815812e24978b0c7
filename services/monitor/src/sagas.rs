//! Saga state derived from the event stream: each recorded event moves its saga's row, and
//! feeds the monitor's metrics (per-step latency, compensations) once its transaction commits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{
    BalanceProcessingFailed, BalanceRestorationRequested, CouponFailed, OrderCancelled,
    OrderCompleted, OrderFailed, SagaTimedOut, StockRestored,
};
use shared::metrics::SERVICE;
use shared::shutdown::Shutdown;

use crate::NAME;

pub const STATES: [&str; 5] = [
    "in_flight",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
];

pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "saga_events_total",
        "Saga events recorded in the event store, by type"
    );
    describe_histogram!(
        "saga_step_duration_seconds",
        Unit::Seconds,
        "Time from an event to the event it caused, by the caused event's type (the step)"
    );
    describe_counter!(
        "saga_compensations_started_total",
        "Compensation chains started, by the event that started them"
    );
    describe_counter!(
        "saga_compensations_finished_total",
        "Compensation chains finished (stock restored)"
    );
    describe_gauge!(
        "saga_monitor_sagas",
        "Sagas per state (in_flight, cancelling, completed, failed, cancelled)"
    );
    describe_gauge!(
        "saga_monitor_oldest_in_flight_seconds",
        Unit::Seconds,
        "Age of the oldest unfinished saga (0 when none)"
    );
    describe_gauge!(
        "saga_monitor_stuck_sagas",
        "Unfinished sagas without an event for 30 s"
    );
}

/// The state a saga is in after `event_type`, if the event changes it.
fn state_after(event_type: &str) -> &'static str {
    match event_type {
        t if t == OrderCompleted::TYPE => "completed",
        t if t == OrderFailed::TYPE || t == SagaTimedOut::TYPE => "failed",
        t if t == OrderCancelled::TYPE => "cancelled",
        t if t == BalanceRestorationRequested::TYPE => "cancelling",
        _ => "in_flight",
    }
}

/// Moves the saga of `envelope` (inside the recording transaction) and schedules its metrics.
pub async fn advance(conn: &mut AsyncPgConnection, envelope: &Envelope) -> QueryResult<()> {
    let Some(saga_id) = envelope.saga_id else {
        return Ok(());
    };
    let state = state_after(&envelope.event_type);
    // Events may arrive out of order when they are not each other's cause (a cancellation
    // request can overtake the OrderCompleted before it): failed and cancelled are final, a
    // completed saga only moves on to cancelling, a cancelling one only to cancelled.
    shared::db::cached(diesel::sql_query(
        "INSERT INTO sagas (saga_id, state, started_at, last_event_at, last_event_type) \
         VALUES ($1, $2, $3, $3, $4) \
         ON CONFLICT (saga_id) DO UPDATE SET \
           state = CASE WHEN sagas.state IN ('failed', 'cancelled') THEN sagas.state \
                        WHEN sagas.state = 'completed' AND EXCLUDED.state = 'in_flight' THEN sagas.state \
                        WHEN sagas.state = 'cancelling' AND EXCLUDED.state IN ('in_flight', 'completed') THEN sagas.state \
                        ELSE EXCLUDED.state END, \
           started_at = LEAST(sagas.started_at, EXCLUDED.started_at), \
           last_event_at = GREATEST(sagas.last_event_at, EXCLUDED.last_event_at), \
           last_event_type = CASE WHEN EXCLUDED.last_event_at >= sagas.last_event_at THEN EXCLUDED.last_event_type ELSE sagas.last_event_type END",
    )
    .bind::<BigInt, _>(saga_id)
    .bind::<Text, _>(state)
    .bind::<Timestamptz, _>(envelope.occurred_at)
    .bind::<Text, _>(&envelope.event_type))
    .execute(conn)
    .await?;

    let cause_at: Option<DateTime<Utc>> = match envelope.causation_id {
        Some(cause) => crate::store::saga_events::table
            .find(cause)
            .select(crate::store::saga_events::occurred_at)
            .first(conn)
            .await
            .optional()?,
        None => None,
    };
    let event_type = envelope.event_type.clone();
    let step = cause_at.map(|at| {
        (envelope.occurred_at - at)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as f64
            / 1e6
    });
    shared::consumer::after_commit(move || record_metrics(event_type, step));
    Ok(())
}

fn record_metrics(event_type: String, step: Option<f64>) {
    let compensation_start = [
        CouponFailed::TYPE,
        BalanceProcessingFailed::TYPE,
        BalanceRestorationRequested::TYPE,
    ]
    .contains(&event_type.as_str());
    if compensation_start {
        ::metrics::counter!("saga_compensations_started_total", SERVICE => NAME, "trigger" => event_type.clone()).increment(1);
    }
    if event_type == StockRestored::TYPE {
        ::metrics::counter!("saga_compensations_finished_total", SERVICE => NAME).increment(1);
    }
    if let Some(seconds) = step {
        ::metrics::histogram!("saga_step_duration_seconds", SERVICE => NAME, "step" => event_type.clone()).record(seconds);
    }
    ::metrics::counter!("saga_events_total", SERVICE => NAME, "event_type" => event_type)
        .increment(1);
}

#[derive(Debug, QueryableByName)]
struct StateCount {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Nullable<Double>)]
    oldest_seconds: Option<f64>,
    #[diesel(sql_type = BigInt)]
    stuck: i64,
}

/// Refreshes the per-state gauges every `every` until shutdown.
pub async fn gauges(pool: shared::db::PgPool, every: Duration, mut shutdown: Shutdown) {
    loop {
        if let Ok(mut conn) = pool.get().await {
            let rows: QueryResult<Vec<StateCount>> = diesel::sql_query(
                "SELECT state, count(*) AS count, \
                 EXTRACT(EPOCH FROM now() - min(started_at))::float8 AS oldest_seconds, \
                 count(*) FILTER (WHERE last_event_at < now() - interval '30 seconds') AS stuck \
                 FROM sagas GROUP BY state",
            )
            .load(&mut conn)
            .await;
            if let Ok(rows) = rows {
                let mut oldest: f64 = 0.0;
                let mut stuck = 0;
                for state in STATES {
                    let row = rows.iter().find(|row| row.state == state);
                    let count = row.map_or(0, |row| row.count);
                    ::metrics::gauge!("saga_monitor_sagas", SERVICE => NAME, "state" => state)
                        .set(count as f64);
                    if matches!(state, "in_flight" | "cancelling")
                        && let Some(row) = row
                    {
                        oldest = oldest.max(row.oldest_seconds.unwrap_or(0.0));
                        stuck += row.stuck;
                    }
                }
                ::metrics::gauge!("saga_monitor_oldest_in_flight_seconds", SERVICE => NAME)
                    .set(oldest);
                ::metrics::gauge!("saga_monitor_stuck_sagas", SERVICE => NAME).set(stuck as f64);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// A saga as the stuck/state listing shows it.
#[derive(Debug, Serialize, QueryableByName, utoipa::ToSchema)]
pub struct SagaSummary {
    #[diesel(sql_type = BigInt)]
    pub order_id: i64,
    /// `in_flight`, `cancelling`, `completed`, `failed` or `cancelled`.
    #[diesel(sql_type = Text)]
    #[schema(pattern = "^(in_flight|cancelling|completed|failed|cancelled)$")]
    pub state: String,
    #[diesel(sql_type = Timestamptz)]
    pub started_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub last_event_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub last_event_type: String,
    #[diesel(sql_type = Double)]
    pub idle_seconds: f64,
}

/// Sagas in `states` without an event for `idle`, idlest first.
pub async fn idle(
    conn: &mut AsyncPgConnection,
    states: &[&str],
    idle: Duration,
    limit: i64,
) -> QueryResult<Vec<SagaSummary>> {
    let states: Vec<String> = states.iter().map(|s| (*s).to_owned()).collect();
    diesel::sql_query(
        "SELECT saga_id AS order_id, state, started_at, last_event_at, last_event_type, \
         EXTRACT(EPOCH FROM now() - last_event_at)::float8 AS idle_seconds \
         FROM sagas WHERE state = ANY($1) AND last_event_at <= now() - make_interval(secs => $2) \
         ORDER BY last_event_at LIMIT $3",
    )
    .bind::<diesel::sql_types::Array<Text>, _>(states)
    .bind::<Double, _>(idle.as_secs_f64())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}
