//! The product service, black-box: real HTTP on port 0, its own database, its own AMQP prefix.
//! Saga steps are driven by publishing events to the exchange and observed in the outbox.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "product/command_line.rs"]
mod command_line;

// The tests live in `tests/product/` (no `main.rs` there, so cargo builds no second target).
#[path = "product/http.rs"]
mod http;
#[path = "product/saga.rs"]
mod saga;
#[path = "product/timeout.rs"]
mod timeout;

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{
    CouponFailed, CouponRestored, FailureReason, OrderCommand, OrderLine, OrderProcessingStarted,
    PricedItem, StockFailed, StockProcessed, StockRestored,
};
use testkit::clients::ProductClient;
use testkit::effects::count;
use testkit::service::{Setup, TestApp, outbox_events, publish};
use testkit::{TestDb, eventually_async};

async fn start() -> Setup {
    Setup::start(
        product_service::NAME,
        product_service::MIGRATIONS,
        product_service::build,
    )
    .await
}

fn money(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// Order `order_id` of user 9, without a coupon, for `(product_id, quantity)` lines.
fn command(order_id: i64, lines: &[(i64, i32)]) -> OrderCommand {
    OrderCommand {
        order_id,
        user_id: 9,
        items: lines
            .iter()
            .map(|&(product_id, quantity)| OrderLine {
                product_id,
                quantity,
            })
            .collect(),
        user_coupon_id: None,
    }
}

fn started(order_id: i64, lines: &[(i64, i32)]) -> Envelope {
    let event = OrderProcessingStarted {
        command: command(order_id, lines),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

async fn wait_for_events(db: &TestDb, count: usize) -> Vec<Envelope> {
    eventually_async(
        Duration::from_secs(20),
        &format!("{count} outbox events"),
        || async {
            let events = outbox_events(db).await;
            (events.len() >= count).then_some(events)
        },
    )
    .await
}

async fn wait_for_inbox(db: &TestDb, messages: i64) {
    eventually_async(
        Duration::from_secs(20),
        &format!("{messages} distinct messages handled"),
        || async {
            (count(db, "SELECT count(*) AS count FROM inbox").await == messages).then_some(())
        },
    )
    .await;
}

async fn movements(db: &TestDb, filter: &str) -> i64 {
    count(
        db,
        &format!("SELECT count(*) AS count FROM stock_movements WHERE {filter}"),
    )
    .await
}
