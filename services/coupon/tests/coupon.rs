//! The coupon service, black-box: real HTTP on port 0, its own database, its own AMQP prefix.
//! Saga steps are driven by publishing events to the exchange and observed in the outbox.
//!
//! One test binary, in four modules: [`http`] (coupons and their issue), [`race`] (first come,
//! first served under concurrent requests), [`saga`] (use and restoration) and [`timeout`]
//! (what a saga closed by its deadline gives back and refuses).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "coupon/command_line.rs"]
mod command_line;

// The modules live in `tests/coupon/` (no `main.rs` there, so cargo builds no second target).
#[path = "coupon/http.rs"]
mod http;
#[path = "coupon/race.rs"]
mod race;
#[path = "coupon/saga.rs"]
mod saga;
#[path = "coupon/timeout.rs"]
mod timeout;

use std::str::FromStr;
use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::envelope::Envelope;
use testkit::service::{Setup, outbox_events};
use testkit::{TestDb, eventually_async};

async fn start() -> Setup {
    Setup::start(
        coupon_service::NAME,
        coupon_service::MIGRATIONS,
        coupon_service::build,
    )
    .await
}

fn money(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// A coupon body that passes every rule.
fn coupon_body(discount_type: &str, value: &str, total_quantity: i64) -> Value {
    json!({
        "name": format!("{discount_type} {value}"),
        "discount_type": discount_type,
        "discount_value": value,
        "total_quantity": total_quantity,
    })
}

/// Runs one statement on the service's database behind its back.
async fn execute(db: &TestDb, sql: &str, id: i64) {
    let mut conn = db.connect().await;
    let updated = diesel::sql_query(sql)
        .bind::<BigInt, _>(id)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    assert_eq!(updated, 1, "{sql}");
}

/// Moves coupon `id`'s expiry to the past, as time would.
async fn expire(db: &TestDb, id: i64) {
    execute(
        db,
        "UPDATE coupons SET expires_at = now() - interval '1 minute' WHERE id = $1",
        id,
    )
    .await;
}

/// The event emitted while handling `cause`, once it is in the outbox.
async fn reply_to(db: &TestDb, cause: &Envelope) -> Envelope {
    eventually_async(
        Duration::from_secs(20),
        &format!("the reply to {}", cause.event_type),
        || async {
            outbox_events(db)
                .await
                .into_iter()
                .find(|event| event.causation_id == Some(cause.event_id))
        },
    )
    .await
}

/// Waits until `count` messages went through the inbox (duplicates included).
async fn wait_handled(db: &TestDb, count: i64) {
    eventually_async(
        Duration::from_secs(20),
        &format!("{count} messages handled"),
        || async {
            (testkit::effects::count(db, "SELECT count(*) AS count FROM inbox").await == count)
                .then_some(())
        },
    )
    .await;
}
