//! `sagactl verify` holds on a settled system and catches a violation planted in any service's
//! database.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

use std::process::Output;

use diesel_async::RunQueryDsl;
use system::{BALANCE, COUPON, ORDER, PRODUCT, System};

async fn verify(s: &System) -> Output {
    verify_with(s, &[]).await
}

async fn verify_with(s: &System, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .arg("verify")
        .args(args)
        .env("ORDER_DATABASE_URL", &s.dbs[ORDER].url)
        .env("PRODUCT_DATABASE_URL", &s.dbs[PRODUCT].url)
        .env("COUPON_DATABASE_URL", &s.dbs[COUPON].url)
        .env("BALANCE_DATABASE_URL", &s.dbs[BALANCE].url)
        .env("AMQP_URL", &s.amqp.url)
        .env("AMQP_PREFIX", &s.amqp.prefix)
        .env("RUST_LOG", "debug")
        .output()
        .await
        .unwrap()
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

#[tokio::test]
async fn verify_passes_on_a_settled_system_and_catches_every_planted_violation() {
    let s = System::start().await;
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
    s.app(ORDER)
        .post(
            &format!("/orders/{cancelled}/cancel"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(s.wait_terminal(cancelled).await["status"], "CANCELLED");
    s.assert_settled().await;

    let clean = verify(&s).await;
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

    let json = verify_with(&s, &["--json"]).await;
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

    let product = format!("UPDATE products SET stock = stock + 1 WHERE id = {keyboard}");
    let undo = format!("UPDATE products SET stock = stock - 1 WHERE id = {keyboard}");
    catches(&s, PRODUCT, &product, &undo, "its ledger ends at").await;
    let reservation =
        format!("UPDATE stock_movements SET delta = delta - 1 WHERE order_id = {completed}");
    let undo = format!("UPDATE stock_movements SET delta = delta + 1 WHERE order_id = {completed}");
    catches(
        &s,
        PRODUCT,
        &reservation,
        &undo,
        &format!("order {completed} (COMPLETED) holds 3"),
    )
    .await;
    let balance = "UPDATE balances SET balance = balance + 1 WHERE user_id = 1";
    catches(
        &s,
        BALANCE,
        balance,
        "UPDATE balances SET balance = balance - 1 WHERE user_id = 1",
        "history sums to",
    )
    .await;
    let corrupt = format!(
        "UPDATE balance_history SET amount = 0 WHERE order_id = {cancelled} AND kind = 'REFUND'"
    );
    catches(
        &s,
        BALANCE,
        &corrupt,
        "SELECT 1",
        &format!("order {cancelled} (CANCELLED) paid"),
    )
    .await;
    let freed = format!(
        "UPDATE user_coupons SET status = 'AVAILABLE', order_id = NULL, used_at = NULL WHERE id = {coupon}"
    );
    catches(
        &s,
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
        &s,
        ORDER,
        &stuck,
        "SELECT 1",
        &format!("order {failed} is stuck in PENDING"),
    )
    .await;
    s.stop().await;
}
