//! What happens to published rows (kept for the retention, or deleted as they are confirmed)
//! and a clean stop on SIGTERM.

use super::*;

#[tokio::test]
async fn published_rows_are_deleted_after_the_retention() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let probe = amqp.probe("#").await;
    let mut settings = relay_settings(&db, amqp.settings());
    settings.retention = Duration::from_millis(1);
    settings.cleanup_interval = Duration::from_millis(100);
    let relay = InProcessRelay::start(settings);
    enqueue_pings(&db, 0, 30).await;
    amqp.take(&probe, 30, DEADLINE).await;
    eventually_async(DEADLINE, "published rows cleaned up", || async {
        (count(&db, "SELECT count(*) AS count FROM outbox").await == 0).then_some(())
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_zero_retention_deletes_rows_in_the_confirming_transaction() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let probe = amqp.probe("#").await;
    let mut settings = relay_settings(&db, amqp.settings());
    settings.retention = Duration::ZERO;
    settings.cleanup_interval = POLL_NEVER;
    let relay = InProcessRelay::start(settings);
    let sent: HashSet<String> = enqueue_pings(&db, 0, 30)
        .await
        .into_iter()
        .map(|e| e.event_id.to_string())
        .collect();
    amqp.take_ids(&probe, &sent, DEADLINE).await;
    eventually_async(DEADLINE, "confirmed rows deleted", || async {
        (count(&db, "SELECT count(*) AS count FROM outbox").await == 0).then_some(())
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn sigterm_stops_the_relay_cleanly() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let probe = amqp.probe("#").await;
    let mut relay = spawn_relay(&db, &amqp, &[]);
    enqueue_pings(&db, 0, 3).await;
    amqp.take(&probe, 3, DEADLINE).await;

    let pid = relay.id().expect("pid").to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(10), relay.wait())
        .await
        .expect("the relay stops within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "clean exit, got {status}");
}
