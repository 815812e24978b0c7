//! The outbox relay against a real PostgreSQL and a real RabbitMQ, including the failures that
//! lose messages elsewhere: a crash between confirm and mark, two relays on one table, a cut
//! broker connection, killed database sessions, unroutable messages.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use diesel_async::{AsyncConnection, RunQueryDsl};
use outbox_relay::RelaySettings;
use shared::amqp::headers;
use shared::config::AmqpSettings;
use shared::consumer::{Consumer, Handlers};
use shared::envelope::{Envelope, SagaEvent};
use shared::outbox::{self, OutboxMessage};
use shared::shutdown::{Shutdown, ShutdownTrigger};
use testkit::effects::{
    Ping, Recorder, RunningConsumer, count, create_effects_table, double_effects, effect_count,
    enqueue_pings, fast_consumer_settings, unpublished,
};
use testkit::{TcpProxy, TestAmqp, TestDb, eventually_async, init_tracing};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(30);
/// Long enough that only a notification (or a reconnect's catch-up) can explain a publish.
const POLL_NEVER: Duration = Duration::from_secs(600);

fn relay_settings(db: &TestDb, amqp: AmqpSettings) -> RelaySettings {
    let mut settings = RelaySettings::new(vec![db.url.clone()], amqp);
    settings.poll_interval = POLL_NEVER;
    settings.max_backoff = Duration::from_millis(500);
    settings
}

/// The relay running inside the test process.
struct InProcessRelay {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcessRelay {
    fn start(settings: RelaySettings) -> Self {
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(outbox_relay::run(settings, shutdown));
        Self { trigger, task }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.expect("relay task").expect("relay run");
    }
}

/// The real `outbox-relay` binary, killed if the test ends first.
fn spawn_relay(db: &TestDb, amqp: &TestAmqp, extra: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox-relay"));
    command
        .env("RELAY_DATABASE_URLS", &db.url)
        .env("AMQP_URL", &amqp.url)
        .env("AMQP_PREFIX", &amqp.prefix)
        .env("RELAY_POLL_INTERVAL", "10m")
        .env("RELAY_MAX_BACKOFF", "500ms")
        .env("RELAY_METRICS_PORT", "0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().expect("spawn outbox-relay")
}

fn pings_consumer(amqp: &AmqpSettings, db: &TestDb) -> Consumer {
    Consumer::new(
        "pings",
        amqp,
        db.pool.clone(),
        fast_consumer_settings(),
        Handlers::new().on::<Ping>(Recorder::default()),
    )
}

fn broker_addr() -> SocketAddr {
    let url = testkit::amqp_url();
    let host_port = url
        .rsplit_once('@')
        .map_or(url.as_str(), |(_, rest)| rest)
        .trim_start_matches("amqp://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .to_owned();
    host_port
        .parse()
        .expect("AMQP_URL host:port must be an IP address and port for the proxy")
}

async fn wait_until_published(db: &TestDb) {
    eventually_async(DEADLINE, "every outbox row published", || async {
        (unpublished(db).await == 0).then_some(())
    })
    .await;
}

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
    let mut conn = db.connect().await;
    let message = OutboxMessage::of::<Ping>(committed.clone());
    conn.transaction(async |tx| outbox::enqueue(tx, &[message]).await)
        .await
        .unwrap();
    let message = OutboxMessage::of::<Ping>(rolled_back.clone());
    let aborted: Result<(), diesel::result::Error> = conn
        .transaction(async |tx| {
            outbox::enqueue(tx, &[message]).await?;
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
        message.data,
        committed.to_bytes().unwrap(),
        "body byte for byte"
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
    assert_eq!(next[0].data, later[0].to_bytes().unwrap());
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
    assert_eq!(received[0].data, second[0].to_bytes().unwrap());
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_killed_between_confirm_and_mark_republishes_and_the_inbox_applies_once() {
    init_tracing();
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    let amqp = TestAmqp::new().await;
    let consumer = pings_consumer(&amqp.settings(), &db);
    amqp.declare(&consumer.queue_spec()).await;
    let queue = consumer.queue().to_owned();
    enqueue_pings(&db, 1, 5).await;

    let mut crashing = spawn_relay(&db, &amqp, &[("OUTBOX_RELAY_CRASH_AFTER_CONFIRM", "true")]);
    let status = tokio::time::timeout(DEADLINE, crashing.wait())
        .await
        .expect("relay exits")
        .unwrap();
    assert_eq!(status.code(), Some(86), "the relay died at the fault point");
    assert_eq!(unpublished(&db).await, 5, "nothing was marked");
    assert_eq!(amqp.depth(&queue).await, 5, "but the broker has the batch");

    let relay = InProcessRelay::start(relay_settings(&db, amqp.settings()));
    wait_until_published(&db).await;
    eventually_async(DEADLINE, "the republished copies", || async {
        (amqp.depth(&queue).await == 10).then_some(())
    })
    .await;

    let running = RunningConsumer::start(
        "pings",
        &amqp.settings(),
        &db,
        fast_consumer_settings(),
        Handlers::new().on::<Ping>(Recorder::default()),
    );
    eventually_async(DEADLINE, "the queue drained", || async {
        (amqp.depth(&queue).await == 0 && effect_count(&db).await == 5).then_some(())
    })
    .await;
    running.stop().await;
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
        url: proxy.amqp_url(),
        prefix: amqp.prefix.clone(),
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

#[tokio::test]
async fn an_unroutable_row_stays_pending_with_its_error_until_a_queue_is_bound() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let envelope = Envelope::new(&Ping { n: 1 }, Some(1)).unwrap();
    let mut conn = db.connect().await;
    let message = OutboxMessage::with_routing_key(envelope.clone(), "nobody.listens");
    conn.transaction(async |tx| outbox::enqueue(tx, &[message]).await)
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
    assert_eq!(received[0].data, envelope.to_bytes().unwrap());
    wait_until_published(&db).await;
    relay.stop().await;
}

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
