//! The failures that lose messages elsewhere: a crash between confirm and mark, two relays on
//! one table, a cut broker connection, killed database sessions.

use super::*;

#[tokio::test]
async fn a_relay_killed_between_confirm_and_mark_republishes_and_the_inbox_applies_once() {
    init_tracing();
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    let amqp = TestAmqp::new().await;
    let consumer = pings_consumer(&amqp.settings(), &db);
    amqp.declare(&consumer.queue_spec()).await;
    enqueue_pings(&db, 1, 5).await;

    let mut crashing = spawn_relay(&db, &amqp, &[("OUTBOX_RELAY_CRASH_AFTER_CONFIRM", "true")]);
    let status = tokio::time::timeout(DEADLINE, crashing.wait())
        .await
        .expect("relay exits")
        .unwrap();
    assert_eq!(status.code(), Some(86), "the relay died at the fault point");
    assert_eq!(unpublished(&db).await, 5, "nothing was marked");
    assert_eq!(
        amqp.consumer_depth("pings").await,
        5,
        "but the broker has the batch"
    );

    let relay = InProcessRelay::start(relay_settings(&db, amqp.settings()));
    wait_until_published(&db).await;
    eventually_async(DEADLINE, "the republished copies", || async {
        (amqp.consumer_depth("pings").await == 10).then_some(())
    })
    .await;

    consume_until_drained(&amqp, &db, 5).await;
    relay.stop().await;
    assert_eq!(effect_count(&db).await, 5, "ten deliveries, five effects");
    assert_eq!(double_effects(&db).await, 0);
    assert_eq!(count(&db, "SELECT count(*) AS count FROM inbox").await, 5);
    assert_eq!(
        amqp.depth(&amqp.topology.dead_letter_queue("pings")).await,
        0
    );
}

#[tokio::test]
async fn two_relays_on_one_database_deliver_all_10000_rows() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let probe = amqp.probe("#").await;
    let sent: HashSet<String> = enqueue_pings(&db, 0, 10_000)
        .await
        .into_iter()
        .map(|e| e.event_id.to_string())
        .collect();

    let batch = [("RELAY_BATCH_SIZE", "200")];
    let mut first = spawn_relay(&db, &amqp, &batch);
    let mut second = spawn_relay(&db, &amqp, &batch);
    let deliveries = amqp.take_ids(&probe, &sent, Duration::from_secs(120)).await;
    wait_until_published(&db).await;
    // SKIP LOCKED keeps the relays on disjoint batches: not even a duplicate.
    assert_eq!(deliveries, 10_000);
    assert_eq!(amqp.depth(&probe).await, 0);
    assert!(first.try_wait().unwrap().is_none() && second.try_wait().unwrap().is_none());
    let _ = first.kill().await;
    let _ = second.kill().await;
}

#[tokio::test]
async fn cutting_the_broker_connection_mid_stream_loses_nothing() {
    init_tracing();
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    let amqp = TestAmqp::new().await;
    let proxy = TcpProxy::start(broker_addr()).await;
    let through_proxy = AmqpSettings {
        url: amqp.url_through(proxy.addr()),
        ..amqp.settings()
    };
    let consumer = pings_consumer(&through_proxy, &db);
    amqp.declare(&consumer.queue_spec()).await;

    let mut settings = relay_settings(&db, through_proxy.clone());
    settings.batch_size = 50;
    let relay = InProcessRelay::start(settings);
    let running = RunningConsumer::start(
        "pings",
        &through_proxy,
        &db,
        fast_consumer_settings(),
        Handlers::new().on::<Ping>(Recorder::default()),
    );

    let mut total = 0;
    for round in 0..8 {
        enqueue_pings(&db, total, 250).await;
        total += 250;
        if round % 2 == 1 {
            proxy.cut().await;
        }
        if round == 4 {
            // Down for a while: reconnects are refused until the broker "comes back".
            proxy.refuse();
            proxy.cut().await;
            enqueue_pings(&db, total, 250).await;
            total += 250;
            proxy.accept();
        }
    }
    eventually_async(Duration::from_secs(60), "every ping applied", || async {
        (effect_count(&db).await >= total && unpublished(&db).await == 0).then_some(())
    })
    .await;
    running.stop().await;
    relay.stop().await;

    assert_eq!(effect_count(&db).await, total);
    assert_eq!(double_effects(&db).await, 0);
    assert_eq!(
        amqp.depth(&amqp.topology.dead_letter_queue("pings")).await,
        0
    );
}

#[tokio::test]
async fn killed_database_sessions_do_not_lose_rows() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let probe = amqp.probe("#").await;
    let mut settings = relay_settings(&db, amqp.settings());
    settings.batch_size = 20;
    let relay = InProcessRelay::start(settings);

    let mut sent = HashSet::new();
    let mut admin = db.connect().await;
    for round in 0..6 {
        sent.extend(
            enqueue_pings(&db, round * 200, 200)
                .await
                .into_iter()
                .map(|e| e.event_id.to_string()),
        );
        // Ends the relay's listener and pooled sessions, mid-batch or between batches.
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .unwrap();
    }
    // A batch confirmed by the broker but whose marking died with its session is published
    // again: duplicates are allowed here, a missing id is not.
    amqp.take_ids(&probe, &sent, DEADLINE).await;
    wait_until_published(&db).await;
    relay.stop().await;
}

/// The relay commits without waiting for the WAL flush (`outbox_relay::NON_DURABLE_COMMITS`):
/// a database crash right after it published takes its deletes back. The rows are then
/// published again, and the consumer's inbox (on another server, which did not crash) applies
/// each message once: nothing is lost, nothing is done twice.
#[tokio::test]
async fn a_database_crash_after_the_relay_committed_republishes_and_the_inbox_applies_once() {
    init_tracing();
    let server = testkit::PrivatePostgres::start();
    let outbox_db = TestDb::on_server(server.server(), Vec::new()).await;
    let consumer_db = TestDb::new().await;
    create_effects_table(&consumer_db).await;
    let amqp = TestAmqp::new().await;
    let consumer = pings_consumer(&amqp.settings(), &consumer_db);
    amqp.declare(&consumer.queue_spec()).await;
    enqueue_pings(&outbox_db, 1, 200).await;

    server.hold_wal_writer();
    let relay = InProcessRelay::start(relay_settings(&outbox_db, amqp.settings()));
    wait_until_published(&outbox_db).await;
    relay.stop().await;
    server.crash();
    server.up();
    let taken_back = unpublished(&outbox_db).await;
    assert!(
        taken_back > 0,
        "the crash took back none of the relay's unflushed commits: the test proves nothing"
    );

    let relay = InProcessRelay::start(relay_settings(&outbox_db, amqp.settings()));
    wait_until_published(&outbox_db).await;
    eventually_async(DEADLINE, "every copy on the queue", || async {
        let depth = amqp.consumer_depth("pings").await;
        (depth == 200 + u32::try_from(taken_back).unwrap()).then_some(())
    })
    .await;
    consume_until_drained(&amqp, &consumer_db, 200).await;
    relay.stop().await;
    assert_eq!(
        effect_count(&consumer_db).await,
        200,
        "each ping applied once"
    );
    assert_eq!(double_effects(&consumer_db).await, 0);
    let dead = amqp.topology.dead_letter_queue("pings");
    assert_eq!(amqp.depth(&dead).await, 0);
}

/// Runs the pings consumer on `db` until its queue is empty and `effects` pings applied.
async fn consume_until_drained(amqp: &TestAmqp, db: &TestDb, effects: i64) {
    let running = RunningConsumer::start(
        "pings",
        &amqp.settings(),
        db,
        fast_consumer_settings(),
        Handlers::new().on::<Ping>(Recorder::default()),
    );
    eventually_async(DEADLINE, "the queue drained", || async {
        (amqp.consumer_depth("pings").await == 0 && effect_count(db).await == effects).then_some(())
    })
    .await;
    running.stop().await;
}
