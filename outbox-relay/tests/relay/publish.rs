//! What the relay publishes and when: a committed row with every property, a rolled-back one
//! never, a commit on its notification, an unroutable row only once a queue is bound.

use super::*;

#[tokio::test]
async fn a_committed_row_is_published_with_its_properties_and_a_rolled_back_row_never_is() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let probe = amqp.probe("#").await;

    let committed = Envelope::new(&Ping { n: 1 }, Some(42))
        .unwrap()
        .with_traceparent(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        ));
    let rolled_back = Envelope::new(&Ping { n: 2 }, Some(43)).unwrap();
    let (mut conn, keys) = (db.connect().await, testkit::keys::dev(Some("order")));
    let message = OutboxMessage::of::<Ping>(committed.clone());
    conn.transaction(async |tx| outbox::enqueue(tx, &keys, &[message]).await)
        .await
        .unwrap();
    let message = OutboxMessage::of::<Ping>(rolled_back.clone());
    let aborted: Result<(), diesel::result::Error> = conn
        .transaction(async |tx| {
            outbox::enqueue(tx, &keys, &[message]).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(aborted.is_err());

    // Marking mode keeps published rows, so the table itself shows what the relay saw.
    let mut settings = relay_settings(&db, amqp.settings());
    settings.retention = Duration::from_secs(3_600);
    let relay = InProcessRelay::start(settings);
    let received = amqp.take(&probe, 1, DEADLINE).await;
    let message = &received[0];
    let properties = &message.properties;
    assert_eq!(
        testkit::keys::open(&message.data),
        committed,
        "the sealed body opens to what was committed"
    );
    assert_eq!(message.routing_key.as_str(), Ping::ROUTING_KEY);
    assert_eq!(
        properties.message_id().as_ref().unwrap().as_str(),
        committed.event_id.to_string()
    );
    assert_eq!(properties.kind().as_ref().unwrap().as_str(), Ping::TYPE);
    assert_eq!(*properties.delivery_mode(), Some(headers::PERSISTENT));
    assert_eq!(
        properties.content_type().as_ref().unwrap().as_str(),
        headers::CONTENT_TYPE_JSON
    );
    let timestamp = properties.timestamp().expect("timestamp");
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    assert!(
        now.abs_diff(timestamp) < 60,
        "timestamp {timestamp} vs now {now}"
    );
    let table = properties.headers().as_ref();
    assert_eq!(headers::get_i64(table, headers::SAGA_ID), Some(42));
    assert_eq!(
        headers::get_str(table, headers::TRACEPARENT),
        committed.traceparent
    );

    // A later commit arrives, and nothing was published between the two: the rolled-back row
    // never existed for the relay.
    let later = enqueue_pings(&db, 3, 1).await;
    let next = amqp.take(&probe, 1, DEADLINE).await;
    assert_eq!(testkit::keys::open(&next[0].data), later[0]);
    wait_until_published(&db).await;
    assert_eq!(amqp.depth(&probe).await, 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS count FROM outbox WHERE published_at IS NOT NULL"
        )
        .await,
        2,
        "the two committed rows, marked"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_commit_is_published_on_notify_without_waiting_for_the_poll() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let probe = amqp.probe("#").await;
    let relay = InProcessRelay::start(relay_settings(&db, amqp.settings()));

    // The first row proves the relay is up and listening (it may be caught up at connect).
    enqueue_pings(&db, 1, 1).await;
    amqp.take(&probe, 1, DEADLINE).await;
    // The relay is now idle until a notification or the 10-minute poll.
    let second = enqueue_pings(&db, 2, 1).await;
    let received = amqp.take(&probe, 1, Duration::from_secs(10)).await;
    assert_eq!(testkit::keys::open(&received[0].data), second[0]);
    relay.stop().await;
}

#[tokio::test]
async fn an_unroutable_row_stays_pending_with_its_error_until_a_queue_is_bound() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let envelope = Envelope::new(&Ping { n: 1 }, Some(1)).unwrap();
    let mut conn = db.connect().await;
    let message = OutboxMessage::with_routing_key(envelope.clone(), "nobody.listens");
    conn.transaction(async |tx| {
        outbox::enqueue(tx, &testkit::keys::dev(Some("order")), &[message]).await
    })
    .await
    .unwrap();

    let relay = InProcessRelay::start(relay_settings(&db, amqp.settings()));
    eventually_async(DEADLINE, "a recorded failed attempt", || async {
        (count(&db, "SELECT count(*) AS count FROM outbox WHERE attempts > 0 AND last_error LIKE '%NO_ROUTE%'").await == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        unpublished(&db).await,
        1,
        "a returned message is not a published one"
    );

    let probe = amqp.probe("nobody.#").await;
    let received = amqp.take(&probe, 1, DEADLINE).await;
    assert_eq!(testkit::keys::open(&received[0].data), envelope);
    wait_until_published(&db).await;
    relay.stop().await;
}
