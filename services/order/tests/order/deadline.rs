//! The deadline sweep: an order past its deadline ends `FAILED` with code `timeout` exactly once,
//! however many sweeps run at once, with a `SagaTimedOut` carrying its command and its
//! request's trace; orders before their deadline, or already ended, are left alone.

use shared::envelope::SagaEvent;
use shared::events::{OrderFailed, SagaTimedOut};
use testkit::clients::OrderClient;
use testkit::effects::execute;
use testkit::service::outbox_events;

use super::{eventually_async, order_in, start};

#[tokio::test]
async fn an_order_past_its_deadline_ends_once_and_others_are_left_alone() {
    let (db, _amqp, app) = start().await;
    let orders = OrderClient::new(&app);
    let late = orders.place(4, &[(7, 2), (8, 1)], Some(11)).await;
    let on_time = orders.place(4, &[(7, 1)], None).await;
    let completed = order_in(&db, &app, "COMPLETED").await;
    execute(
        &db,
        &format!(
            "UPDATE orders SET deadline_at = now() - interval '1 second' \
             WHERE id IN ({late}, {completed})"
        ),
    )
    .await;
    // Sweeps racing the service's own: SKIP LOCKED and the conditional transition let one win.
    let keys = testkit::keys::dev(Some(order_service::NAME));
    let (mut one, mut two) = (db.connect().await, db.connect().await);
    let (a, b) = tokio::join!(
        order_service::deadline::sweep(&mut one, &keys),
        order_service::deadline::sweep(&mut two, &keys)
    );
    assert!(a.unwrap() + b.unwrap() <= 1);
    let failed = eventually_async(
        std::time::Duration::from_secs(10),
        "the late order failed",
        || async {
            let order = orders.order(late).await;
            (order["status"] == "FAILED").then_some(order)
        },
    )
    .await;
    assert_eq!(failed["failure_code"], "timeout", "{failed}");
    assert!(failed["deadline_at"].is_string(), "{failed}");
    // Another sweep finds nothing more to do.
    assert_eq!(
        order_service::deadline::sweep(&mut one, &keys)
            .await
            .unwrap(),
        0
    );
    assert_eq!(orders.order(on_time).await["status"], "PENDING");
    assert_eq!(orders.order(completed).await["status"], "COMPLETED");

    let events = outbox_events(&db).await;
    let of = |event_type: &str| -> Vec<_> {
        events
            .iter()
            .filter(|e| e.event_type == event_type)
            .collect()
    };
    let timed_out = of(SagaTimedOut::TYPE);
    assert_eq!(timed_out.len(), 1, "one SagaTimedOut");
    assert_eq!(timed_out[0].saga_id, Some(late));
    let started = events
        .iter()
        .find(|e| e.saga_id == Some(late) && e.event_type != SagaTimedOut::TYPE)
        .unwrap();
    assert_eq!(
        timed_out[0].traceparent, started.traceparent,
        "the timeout continues the order's trace"
    );
    let event: SagaTimedOut = timed_out[0].decode().unwrap();
    assert_eq!(event.command.user_coupon_id, Some(11));
    assert_eq!(event.command.items.len(), 2);
    assert_eq!(event.reason.code, "timeout");
    let ended = of(OrderFailed::TYPE);
    assert_eq!(ended.len(), 1, "one OrderFailed");
    assert_eq!(ended[0].causation_id, Some(timed_out[0].event_id));
    app.stop().await;
}
