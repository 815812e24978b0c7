//! `sagactl verify` holds on a settled system and catches a violation planted in any service's
//! database.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

use std::process::Output;

use diesel_async::RunQueryDsl;
use system::{BALANCE, COUPON, ORDER, PRODUCT, System};

async fn verify(s: &System) -> Output {
    s.sagactl_verify(&[]).await
}

async fn verify_with(s: &System, args: &[&str]) -> Output {
    s.sagactl_verify(args).await
}

async fn sql(s: &System, service: &str, statement: &str) {
    let mut conn = s.dbs[service].connect().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Runs verify after `corrupt`, expects it to fail naming `symptom`, then runs `repair`.
async fn catches(s: &System, service: &str, corrupt: &str, repair: &str, symptom: &str) {
    sql(s, service, corrupt).await;
    let output = verify(s).await;
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "verify missed: {corrupt}\n{report}"
    );
    assert!(
        report.contains(symptom),
        "expected {symptom:?} in:\n{report}"
    );
    sql(s, service, repair).await;
}

/// What the settled system holds: one order of each end, and the coupon the completed one used.
struct Settled {
    keyboard: i64,
    coupon: i64,
    completed: i64,
    failed: i64,
    cancelled: i64,
}

/// Runs one order to completion (with a coupon), one to failure and one to cancellation.
async fn settle(s: &System) -> Settled {
    let keyboard = s.create_product("keyboard", "89.90", 10).await;
    let stand = s.create_product("stand", "39.50", 1).await;
    s.charge(1, "500.00").await;
    let coupon = s.coupon_for(1, "FIXED", "10").await;
    let completed = s.place(1, &[(keyboard, 2)], Some(coupon)).await;
    let failed = s.place(1, &[(stand, 5)], None).await;
    let cancelled = s.place(1, &[(keyboard, 1)], None).await;
    assert_eq!(s.wait_terminal(completed).await["status"], "COMPLETED");
    assert_eq!(s.wait_terminal(failed).await["status"], "FAILED");
    assert_eq!(s.wait_terminal(cancelled).await["status"], "COMPLETED");
    s.orders().cancel(cancelled).await;
    assert_eq!(s.wait_terminal(cancelled).await["status"], "CANCELLED");
    s.assert_settled().await;
    Settled {
        keyboard,
        coupon,
        completed,
        failed,
        cancelled,
    }
}

/// Verify passes, in its text report and in its `--json` one.
async fn assert_clean(s: &System) {
    let clean = verify(s).await;
    let report = String::from_utf8_lossy(&clean.stdout);
    assert!(
        clean.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(
        report.contains("OK: every invariant holds") && report.contains("orders: 3 (0 in flight)"),
        "{report}"
    );

    let json = verify_with(s, &["--json"]).await;
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&json.stdout)));
    assert_eq!(
        (
            parsed["ok"].as_bool(),
            parsed["violations"].as_array().map(Vec::len)
        ),
        (Some(true), Some(0)),
        "{parsed}"
    );
}

/// Stock that its ledger does not explain, and a reservation that does not match the order.
async fn catches_product_violations(s: &System, settled: &Settled) {
    let Settled {
        keyboard,
        completed,
        ..
    } = *settled;
    let product = format!("UPDATE products SET stock = stock + 1 WHERE id = {keyboard}");
    let undo = format!("UPDATE products SET stock = stock - 1 WHERE id = {keyboard}");
    catches(s, PRODUCT, &product, &undo, "its ledger ends at").await;
    let reservation =
        format!("UPDATE stock_movements SET delta = delta - 1 WHERE order_id = {completed}");
    let undo = format!("UPDATE stock_movements SET delta = delta + 1 WHERE order_id = {completed}");
    catches(
        s,
        PRODUCT,
        &reservation,
        &undo,
        &format!("order {completed} (COMPLETED) holds 3"),
    )
    .await;
}

/// A balance its history does not explain, and a cancelled order not refunded.
async fn catches_balance_violations(s: &System, settled: &Settled) {
    let balance = "UPDATE balances SET balance = balance + 1 WHERE user_id = 1";
    catches(
        s,
        BALANCE,
        balance,
        "UPDATE balances SET balance = balance - 1 WHERE user_id = 1",
        "history sums to",
    )
    .await;
    let cancelled = settled.cancelled;
    let corrupt = format!(
        "UPDATE balance_history SET amount = 0 WHERE order_id = {cancelled} AND kind = 'REFUND'"
    );
    catches(
        s,
        BALANCE,
        &corrupt,
        "SELECT 1",
        &format!("order {cancelled} (CANCELLED) paid"),
    )
    .await;
}

/// A completed order's coupon freed, and an order stuck in flight.
async fn catches_coupon_and_order_violations(s: &System, settled: &Settled) {
    let Settled {
        coupon,
        completed,
        failed,
        ..
    } = *settled;
    let freed = format!(
        "UPDATE user_coupons SET status = 'AVAILABLE', order_id = NULL, used_at = NULL WHERE id = {coupon}"
    );
    catches(
        s,
        COUPON,
        &freed,
        "SELECT 1",
        &format!("completed order {completed} used coupon {coupon}"),
    )
    .await;
    let stuck = format!(
        "UPDATE orders SET status = 'PENDING', created_at = now() - interval '1 hour' WHERE id = {failed}"
    );
    catches(
        s,
        ORDER,
        &stuck,
        "SELECT 1",
        &format!("order {failed} is stuck in PENDING"),
    )
    .await;
}

#[tokio::test]
async fn verify_passes_on_a_settled_system_and_catches_every_planted_violation() {
    let s = System::start().await;
    let settled = settle(&s).await;
    assert_clean(&s).await;
    catches_product_violations(&s, &settled).await;
    catches_balance_violations(&s, &settled).await;
    catches_coupon_and_order_violations(&s, &settled).await;
    s.stop().await;
}
