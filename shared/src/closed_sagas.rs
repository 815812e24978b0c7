//! Sagas a participant closed because their order missed its deadline (docs/design.md#deadlines).
//!
//! When the order service gives up on an order it emits `SagaTimedOut`. Each participant then,
//! in one transaction: takes the row lock its forward step takes (the products, the user
//! coupon, the balance), [`close`]s the saga, and undoes from its own ledger what it did for the
//! order. Its forward step takes the same lock and then asks [`is_closed`]: whichever of the two
//! commits first, the other sees it, so a step that arrives after the timeout (late, or replayed
//! from a dead-letter queue days later, when the inbox no longer knows its id) changes nothing.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use metrics::describe_counter;

use crate::metrics::SERVICE;
use crate::schema::closed_sagas;

/// Closes the saga of `order_id`; `false` if it was closed already (its compensation ran then).
pub async fn close(conn: &mut AsyncPgConnection, order_id: i64) -> QueryResult<bool> {
    let inserted = diesel::insert_into(closed_sagas::table)
        .values(closed_sagas::order_id.eq(order_id))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Whether the saga of `order_id` was closed here. Ask it under the lock [`close`] is taken
/// under, or a closing transaction may commit between the answer and the step.
pub async fn is_closed(conn: &mut AsyncPgConnection, order_id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(closed_sagas::table.find(order_id)))
        .get_result(conn)
        .await
}

/// Describes the participant metrics and creates `service`'s series at zero, so that the first
/// timeout or refusal is an increase a rate or an alert can see.
pub fn describe(service: &'static str, forward_step: &'static str) {
    // Before the service's own start installs it, or the zero series below would be lost.
    crate::metrics::install();
    describe_counter!(
        "saga_timeouts_applied_total",
        "SagaTimedOut events applied, by whether something had to be undone (compensated) or not"
    );
    describe_counter!(
        "saga_late_steps_refused_total",
        "Forward steps of sagas already closed by their deadline, refused (changed nothing)"
    );
    for outcome in ["compensated", "nothing_to_undo"] {
        metrics::counter!("saga_timeouts_applied_total", SERVICE => service, "outcome" => outcome)
            .absolute(0);
    }
    metrics::counter!("saga_late_steps_refused_total", SERVICE => service, "event_type" => forward_step)
        .absolute(0);
}

/// A `SagaTimedOut` was applied; `undone` says whether the order had left anything to undo.
/// Counted once its transaction commits.
pub fn applied(service: &'static str, order_id: i64, undone: bool) {
    let outcome = if undone {
        "compensated"
    } else {
        "nothing_to_undo"
    };
    tracing::info!(order_id, outcome, "saga closed by its deadline");
    crate::consumer::after_commit(move || {
        metrics::counter!("saga_timeouts_applied_total", SERVICE => service, "outcome" => outcome)
            .increment(1);
    });
}

/// A forward step of a closed saga was refused. Counted once its transaction commits.
pub fn refused(service: &'static str, order_id: i64, event_type: &'static str) {
    tracing::warn!(
        order_id,
        event_type,
        "a step of a saga closed by its deadline arrived late; refused"
    );
    crate::consumer::after_commit(move || {
        metrics::counter!("saga_late_steps_refused_total", SERVICE => service, "event_type" => event_type)
            .increment(1);
    });
}
