//! The event store is the monitor's deduplication: its consumer makes no inbox claim, so a
//! redelivered or republished event must still be recorded, and move its saga, only once.

use rust_decimal::Decimal;
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{FailureReason, OrderCompleted, OrderFailed};
use testkit::effects::count;
use testkit::service::publish;

use super::*;

fn completed(order_id: i64) -> Envelope {
    let event = OrderCompleted {
        order_id,
        user_id: 1,
        items: Vec::new(),
        total_amount: Decimal::TEN,
        discount_amount: Decimal::ZERO,
        paid_amount: Decimal::TEN,
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

#[tokio::test]
async fn an_event_published_twice_is_recorded_and_counted_once_without_an_inbox_claim() {
    let s = start(monitor_service::build).await;
    let twice = completed(31);
    publish(&s.amqp, &twice, OrderCompleted::ROUTING_KEY).await;
    publish(&s.amqp, &twice, OrderCompleted::ROUTING_KEY).await;
    // A later event of the same saga: one partition, one lane, so once it is recorded both
    // copies before it have been handled.
    let failed = OrderFailed {
        order_id: 31,
        user_id: 1,
        reason: FailureReason::new("late", "a contradicting event after the saga ended"),
    };
    let sentinel = Envelope::new(&failed, Some(31)).unwrap();
    publish(&s.amqp, &sentinel, OrderFailed::ROUTING_KEY).await;
    let recorded = format!(
        "SELECT count(*) AS count FROM saga_events WHERE event_id = '{}'",
        sentinel.event_id
    );
    eventually_async(Duration::from_secs(20), "the sentinel recorded", || async {
        (count(&s.db, &recorded).await == 1).then_some(())
    })
    .await;

    let copies = format!(
        "SELECT count(*) AS count FROM saga_events WHERE event_id = '{}'",
        twice.event_id
    );
    assert_eq!(count(&s.db, &copies).await, 1, "one row for two copies");
    assert_eq!(count(&s.db, "SELECT count(*) AS count FROM inbox").await, 0);
    // The saga moved on the first copy only: a second `advance` of the duplicate would have
    // counted a second completion.
    let (status, saga) = s.app.get("/sagas/31").await;
    assert_eq!(status, 200, "{saga}");
    assert_eq!(saga["events"].as_array().unwrap().len(), 2, "{saga}");
    let sagas = "SELECT count(*) AS count FROM sagas WHERE saga_id = 31";
    assert_eq!(count(&s.db, sagas).await, 1);
}
