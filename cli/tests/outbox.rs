//! `sagactl outbox pending`: the relay's view of trouble.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use diesel_async::RunQueryDsl;
use serde_json::Value;
use testkit::effects::enqueue_pings;
use testkit::{TestDb, init_tracing};

#[tokio::test]
async fn pending_lists_only_unpublished_rows_older_than_the_threshold() {
    init_tracing();
    let db = TestDb::new().await;
    let old = enqueue_pings(&db, 1, 3).await;
    let mut conn = db.connect().await;
    // Row 1: stuck for an hour. Row 2: an hour old but published. Row 3: fresh.
    diesel::sql_query(format!(
        "UPDATE outbox SET created_at = now() - interval '1 hour', attempts = 4, last_error = 'returned by the broker: 312 NO_ROUTE' WHERE event_id = '{}'",
        old[0].event_id
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(format!(
        "UPDATE outbox SET created_at = now() - interval '1 hour', published_at = now() WHERE event_id = '{}'",
        old[1].event_id
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .args([
            "outbox",
            "pending",
            "--older-than",
            "5m",
            "--json",
            "--database-urls",
            &db.url,
        ])
        // Log lines belong on stderr: at any level, stdout stays one JSON document.
        .env("RUST_LOG", "debug")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["database"], db.name.as_str());
    let rows = report[0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["event_id"], old[0].event_id.to_string());
    assert_eq!(rows[0]["attempts"], 4);
    assert!(rows[0]["last_error"].as_str().unwrap().contains("NO_ROUTE"));

    let table = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .args([
            "outbox",
            "pending",
            "--older-than",
            "10ms",
            "--database-urls",
            &db.url,
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("2 unpublished row(s)"), "{text}");
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .args([
            "outbox",
            "pending",
            "--older-than",
            "soon",
            "--database-urls",
            &db.url,
        ])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
}
