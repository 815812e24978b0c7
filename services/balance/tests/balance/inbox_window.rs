//! The inbox's deduplication window (docs/messaging.md#inbox): claims are kept for
//! `INBOX_WINDOW` and then deleted by the service's cleanup job in batches; a redelivery inside
//! the window is still absorbed. The balance service stands in for every service: the job is the
//! shared runtime's.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use shared::config::InboxSettings;
use shared::envelope::Envelope;
use shared::envelope::SagaEvent;
use shared::events::{CouponProcessed, OrderCommand, OrderLine, PricedItem};
use testkit::clients::BalanceClient;
use testkit::effects::{count, execute};
use testkit::service::{Setup, outbox_events, publish};
use testkit::{TestDb, eventually_async};

const WINDOW: Duration = Duration::from_secs(3600);

/// The balance service with a one-hour window, cleaning up every 50 ms.
async fn start() -> Setup {
    Setup::start(
        balance_service::NAME,
        balance_service::MIGRATIONS,
        async |settings| {
            let mut settings = settings.clone();
            settings.inbox = InboxSettings {
                window: WINDOW,
                cleanup_interval: Duration::from_millis(50),
            };
            balance_service::build(&settings).await
        },
    )
    .await
}

fn payment(order_id: i64, user_id: i64) -> Envelope {
    let money = |text| Decimal::from_str(text).unwrap();
    let event = CouponProcessed {
        command: OrderCommand {
            order_id,
            user_id,
            items: vec![OrderLine {
                product_id: 1,
                quantity: 1,
            }],
            user_coupon_id: None,
        },
        items: vec![PricedItem {
            product_id: 1,
            quantity: 1,
            unit_price: money("100.00"),
        }],
        total_amount: money("100.00"),
        discount_amount: Decimal::ZERO,
        amount_to_pay: money("100.00"),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

/// Waits until `sql` (a `SELECT count(*) AS count`) counts `expected`.
async fn wait_count(db: &TestDb, sql: &str, expected: i64) {
    eventually_async(Duration::from_secs(20), sql, || async {
        (count(db, sql).await == expected).then_some(())
    })
    .await;
}

/// The value of the counter line of `/metrics` that contains every one of `parts`.
async fn counter(s: &Setup, parts: &[&str]) -> Option<f64> {
    let metrics = s.app.client.get(s.app.url("/metrics")).send().await.ok()?;
    let text = metrics.text().await.ok()?;
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| parts.iter().all(|part| line.contains(part)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn a_redelivery_inside_the_window_is_absorbed_after_the_cleanup_ran() {
    let s = start().await;
    let balances = BalanceClient::new(&s.app);
    balances.charge(1, "500.00").await;
    let event = payment(1, 1);
    publish(&s.amqp, &event, CouponProcessed::ROUTING_KEY).await;
    eventually_async(Duration::from_secs(20), "the payment", || async {
        (outbox_events(&s.db).await.len() == 1).then_some(())
    })
    .await;

    // The claim is now old but inside the window; a sentinel claim outside it shows when the
    // job has run since.
    execute(
        &s.db,
        &format!(
            "UPDATE inbox SET processed_at = now() - interval '50 minutes' \
             WHERE message_id = '{}'",
            event.event_id
        ),
    )
    .await;
    execute(
        &s.db,
        "INSERT INTO inbox (consumer, message_id, event_type, processed_at) \
         VALUES ('balance', gen_random_uuid(), 'Sentinel', now() - interval '61 minutes')",
    )
    .await;
    let sentinel = "SELECT count(*) AS count FROM inbox WHERE event_type = 'Sentinel'";
    wait_count(&s.db, sentinel, 0).await;
    let claim = format!(
        "SELECT count(*) AS count FROM inbox WHERE message_id = '{}'",
        event.event_id
    );
    assert_eq!(count(&s.db, &claim).await, 1, "the claim inside the window");

    publish(&s.amqp, &event, CouponProcessed::ROUTING_KEY).await;
    let duplicate = ["consumer_messages_total", "outcome=\"duplicate\""];
    eventually_async(
        Duration::from_secs(20),
        "the duplicate absorbed",
        || async { counter(&s, &duplicate).await.filter(|n| *n >= 1.0) },
    )
    .await;
    assert_eq!(balances.balance(1).await, "400.00", "paid once");
    assert_eq!(outbox_events(&s.db).await.len(), 1, "one BalanceProcessed");
    let payments = "SELECT count(*) AS count FROM balance_history WHERE kind = 'PAYMENT'";
    assert_eq!(count(&s.db, payments).await, 1);
}

#[tokio::test]
async fn claims_older_than_the_window_are_deleted_in_batches_and_recent_ones_kept() {
    let s = start().await;
    // Past the window: more than two batches of them. Inside it: recent claims. Another
    // consumer's old claims: that consumer's own job (and window) decides about those.
    execute(
        &s.db,
        "INSERT INTO inbox (consumer, message_id, event_type, processed_at) \
         SELECT 'balance', gen_random_uuid(), 'Old', now() - interval '61 minutes' - n * interval '1 second' \
         FROM generate_series(1, 12000) AS n",
    )
    .await;
    execute(
        &s.db,
        "INSERT INTO inbox (consumer, message_id, event_type, processed_at) \
         SELECT 'balance', gen_random_uuid(), 'Recent', now() - interval '50 minutes' + n * interval '1 second' \
         FROM generate_series(1, 300) AS n",
    )
    .await;
    execute(
        &s.db,
        "INSERT INTO inbox (consumer, message_id, event_type, processed_at) \
         SELECT 'other', gen_random_uuid(), 'Old', now() - interval '2 days' \
         FROM generate_series(1, 50)",
    )
    .await;

    let old =
        "SELECT count(*) AS count FROM inbox WHERE consumer = 'balance' AND event_type = 'Old'";
    wait_count(&s.db, old, 0).await;
    let recent = "SELECT count(*) AS count FROM inbox WHERE event_type = 'Recent'";
    assert_eq!(count(&s.db, recent).await, 300, "claims inside the window");
    let other = "SELECT count(*) AS count FROM inbox WHERE consumer = 'other'";
    assert_eq!(count(&s.db, other).await, 50, "another consumer's claims");
    let cleaned = counter(&s, &["inbox_cleaned_total", "service=\"balance\""]).await;
    assert_eq!(cleaned, Some(12000.0), "inbox_cleaned_total");
}
