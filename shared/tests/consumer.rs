//! The consumer runtime against a real PostgreSQL and a real RabbitMQ: one effect per message
//! whatever the broker does, bounded retries, dead letters with reasons, clean shutdown.

use std::time::Duration;

use shared::amqp::headers;
use shared::config::ConsumerSettings;
use shared::consumer::Handlers;
use shared::envelope::{Envelope, SagaEvent};
use testkit::effects::{
    Behaviour, Ping, Recorder, RunningConsumer, create_effects_table, double_effects, effect_count,
    fast_consumer_settings,
};
use testkit::service::publish_raw;
use testkit::{TestAmqp, TestDb, eventually_async, init_tracing};

const DEADLINE: Duration = Duration::from_secs(20);

struct Setup {
    db: TestDb,
    amqp: TestAmqp,
    recorder: Recorder,
    settings: ConsumerSettings,
}

async fn setup(behaviour: Behaviour, settings: ConsumerSettings) -> Setup {
    init_tracing();
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    let amqp = TestAmqp::new().await;
    let recorder = Recorder::new(behaviour);
    let setup = Setup {
        db,
        amqp,
        recorder,
        settings,
    };
    amqp_declare(&setup).await;
    setup
}

fn handlers(setup: &Setup) -> Handlers {
    Handlers::new().on::<Ping>(setup.recorder.clone())
}

async fn amqp_declare(setup: &Setup) {
    let probe = shared::consumer::Consumer::new(
        "pings",
        &setup.amqp.settings(),
        setup.db.pool.clone(),
        setup.settings.clone(),
        handlers(setup),
        testkit::keys::reader(),
    );
    setup.amqp.declare(&probe.queue_spec()).await;
}

fn start(setup: &Setup) -> RunningConsumer {
    RunningConsumer::start(
        "pings",
        &setup.amqp.settings(),
        &setup.db,
        setup.settings.clone(),
        handlers(setup),
    )
}

async fn publish_envelope(amqp: &TestAmqp, envelope: &Envelope) {
    publish_raw(
        amqp,
        Ping::ROUTING_KEY,
        &envelope.event_id.to_string(),
        &envelope.event_type,
        &testkit::keys::seal(envelope),
    )
    .await;
}

/// How many messages wait on the pings queue and on its dead-letter queue.
async fn depths(setup: &Setup) -> (u32, u32) {
    let (amqp, topology) = (&setup.amqp, &setup.amqp.topology);
    let waiting = amqp.consumer_depth("pings").await;
    let dead = amqp.depth(&topology.dead_letter_queue("pings")).await;
    (waiting, dead)
}

async fn wait_for_effects(db: &TestDb, expected: i64) {
    eventually_async(DEADLINE, &format!("{expected} effects"), || async {
        (effect_count(db).await >= expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_same_message_delivered_twice_has_one_effect() {
    let settings = ConsumerSettings {
        concurrency: 1,
        prefetch: 1,
        ..fast_consumer_settings()
    };
    let setup = setup(Behaviour::Succeed, settings).await;
    let twice = Envelope::new(&Ping { n: 1 }, Some(1)).unwrap();
    let sentinel = Envelope::new(&Ping { n: 2 }, Some(2)).unwrap();
    publish_envelope(&setup.amqp, &twice).await;
    publish_envelope(&setup.amqp, &twice).await;
    publish_envelope(&setup.amqp, &sentinel).await;

    let consumer = start(&setup);
    // One message at a time, in order: once the sentinel's effect exists, the duplicate was
    // handled before it.
    wait_for_effects(&setup.db, 2).await;
    consumer.stop().await;

    assert_eq!(effect_count(&setup.db).await, 2);
    assert_eq!(double_effects(&setup.db).await, 0);
    assert_eq!(
        setup.recorder.calls(),
        2,
        "the duplicate never reached the handler"
    );
    assert_eq!(
        depths(&setup).await,
        (0, 0),
        "none left, none dead-lettered"
    );
}

#[tokio::test]
async fn a_handler_failing_transiently_then_succeeding_has_one_effect() {
    let setup = setup(Behaviour::FailFirst(2), fast_consumer_settings()).await;
    publish_envelope(
        &setup.amqp,
        &Envelope::new(&Ping { n: 7 }, Some(7)).unwrap(),
    )
    .await;

    let consumer = start(&setup);
    wait_for_effects(&setup.db, 1).await;
    consumer.stop().await;

    assert_eq!(
        setup.recorder.calls(),
        3,
        "two failed attempts, then one success"
    );
    assert_eq!(
        effect_count(&setup.db).await,
        1,
        "the failed attempts rolled back"
    );
    assert_eq!(depths(&setup).await.1, 0, "none dead-lettered");
}

#[tokio::test]
async fn a_handler_that_panics_ends_the_session_and_its_message_is_applied_once_after() {
    let setup = setup(Behaviour::PanicFirst(1), fast_consumer_settings()).await;
    publish_envelope(
        &setup.amqp,
        &Envelope::new(&Ping { n: 5 }, Some(5)).unwrap(),
    )
    .await;

    let consumer = start(&setup);
    wait_for_effects(&setup.db, 1).await;
    // The lane survived in a new session: later messages of every saga are still handled.
    for n in 6..10 {
        let envelope = Envelope::new(&Ping { n }, Some(n)).unwrap();
        publish_envelope(&setup.amqp, &envelope).await;
    }
    wait_for_effects(&setup.db, 5).await;
    consumer.stop().await;
    assert_eq!(
        setup.recorder.calls(),
        6,
        "the panicked attempt, then one each"
    );
    assert_eq!(depths(&setup).await.1, 0, "none dead-lettered");
}

#[tokio::test]
async fn a_handler_that_always_fails_is_dead_lettered_after_the_configured_attempts() {
    let setup = setup(Behaviour::AlwaysFail, fast_consumer_settings()).await;
    let envelope = Envelope::new(&Ping { n: 9 }, Some(9)).unwrap();
    publish_envelope(&setup.amqp, &envelope).await;

    let consumer = start(&setup);
    let dead = setup
        .amqp
        .take(&setup.amqp.topology.dead_letter_queue("pings"), 1, DEADLINE)
        .await;
    consumer.stop().await;

    let message = &dead[0];
    let table = message.properties.headers().as_ref();
    assert_eq!(setup.recorder.calls(), 3, "max_attempts = 3");
    assert_eq!(effect_count(&setup.db).await, 0);
    assert_eq!(
        headers::get_str(table, headers::DEAD_LETTER_REASON).as_deref(),
        Some(headers::REASON_RETRIES_EXHAUSTED)
    );
    assert_eq!(headers::get_i64(table, headers::ATTEMPT), Some(3));
    let error = headers::get_str(table, headers::DEAD_LETTER_ERROR).unwrap_or_default();
    assert!(
        error.contains("induced failure 3"),
        "last error in headers: {error}"
    );
    assert_eq!(
        headers::get_str(table, headers::ORIGINAL_QUEUE),
        Some(setup.amqp.topology.queue("pings"))
    );
    assert_eq!(
        testkit::keys::open(&message.data),
        envelope,
        "body kept intact: it still opens to the envelope"
    );
    assert_eq!(
        message
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string()),
        Some(envelope.event_id.to_string())
    );
}

#[tokio::test]
async fn garbage_bytes_are_dead_lettered_at_once_with_a_reason() {
    let setup = setup(Behaviour::Succeed, fast_consumer_settings()).await;
    let garbage = b"\x00\xffthis is not an envelope".to_vec();
    publish_raw(
        &setup.amqp,
        Ping::ROUTING_KEY,
        "garbage-1",
        "TestPing",
        &garbage,
    )
    .await;

    let consumer = start(&setup);
    let dead = setup
        .amqp
        .take(&setup.amqp.topology.dead_letter_queue("pings"), 1, DEADLINE)
        .await;
    consumer.stop().await;

    let table = dead[0].properties.headers().as_ref();
    assert_eq!(
        headers::get_str(table, headers::DEAD_LETTER_REASON).as_deref(),
        Some(headers::REASON_MALFORMED)
    );
    assert_eq!(
        headers::get_i64(table, headers::ATTEMPT),
        Some(0),
        "no retry for garbage"
    );
    assert_eq!(dead[0].data, garbage);
    assert_eq!(setup.recorder.calls(), 0);
}

#[tokio::test]
async fn an_unknown_event_type_and_an_undecodable_payload_are_dead_lettered_at_once() {
    let setup = setup(Behaviour::Succeed, fast_consumer_settings()).await;
    let mut unknown = Envelope::new(&Ping { n: 1 }, None).unwrap();
    unknown.event_type = "NobodyHandlesThis".into();
    let mut undecodable = Envelope::new(&Ping { n: 2 }, None).unwrap();
    undecodable.payload = serde_json::json!({"n": "not a number"});
    publish_envelope(&setup.amqp, &unknown).await;
    publish_envelope(&setup.amqp, &undecodable).await;

    let consumer = start(&setup);
    let dead = setup
        .amqp
        .take(&setup.amqp.topology.dead_letter_queue("pings"), 2, DEADLINE)
        .await;
    consumer.stop().await;

    let mut reasons: Vec<String> = dead
        .iter()
        .filter_map(|m| {
            headers::get_str(m.properties.headers().as_ref(), headers::DEAD_LETTER_REASON)
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            headers::REASON_REJECTED.to_owned(),
            headers::REASON_UNKNOWN_TYPE.to_owned()
        ]
    );
    assert_eq!(setup.recorder.calls(), 0);
    assert_eq!(effect_count(&setup.db).await, 0);
}

#[tokio::test]
async fn shutdown_drains_in_flight_messages_before_returning() {
    let setup = setup(Behaviour::Succeed, fast_consumer_settings()).await;
    for n in 0..50 {
        publish_envelope(&setup.amqp, &Envelope::new(&Ping { n }, Some(n)).unwrap()).await;
    }
    let consumer = start(&setup);
    eventually_async(DEADLINE, "the first effect", || async {
        (effect_count(&setup.db).await > 0).then_some(())
    })
    .await;
    consumer.stop().await;

    // Everything the handler started was committed and acked: what is left on the queue plus
    // what was applied is exactly what was sent, nothing in between is lost or doubled.
    let applied = effect_count(&setup.db).await;
    let left = i64::from(depths(&setup).await.0);
    assert_eq!(
        applied,
        i64::from(setup.recorder.calls()),
        "every started handler finished"
    );
    assert_eq!(applied + left, 50, "applied {applied}, left {left}");
    assert_eq!(double_effects(&setup.db).await, 0);

    // A restarted consumer finishes the rest.
    let consumer = start(&setup);
    wait_for_effects(&setup.db, 50).await;
    consumer.stop().await;
    assert_eq!(effect_count(&setup.db).await, 50);
}

/// The `name` series of `queue` with `labels`, summed over its other labels.
fn series(queue: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: Vec<String> = std::iter::once(("queue", queue))
        .chain(labels.iter().copied())
        .map(|(key, value)| format!("{key}=\"{value}\""))
        .collect();
    shared::metrics::handle("pings")
        .render()
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| wanted.iter().all(|label| line.contains(label.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn outcomes_are_counted_by_event_type_and_what_has_no_handler_as_unknown() {
    shared::metrics::install();
    let settings = ConsumerSettings {
        concurrency: 1,
        prefetch: 1,
        ..fast_consumer_settings()
    };
    let setup = setup(Behaviour::FailFirst(1), settings).await;
    let queue = setup.amqp.topology.queue("pings");
    let messages = |event_type: &str, outcome: &str| {
        let labels = [("event_type", event_type), ("outcome", outcome)];
        series(&queue, "consumer_messages_total", &labels)
    };
    let ping = Envelope::new(&Ping { n: 1 }, Some(1)).unwrap();
    let mut unknown = Envelope::new(&Ping { n: 2 }, None).unwrap();
    unknown.event_type = "NobodyHandlesThis".into();
    // The first copy fails once and is retried; the second applies; the retry is a duplicate.
    let amqp = &setup.amqp;
    publish_envelope(amqp, &ping).await;
    publish_envelope(amqp, &ping).await;
    publish_envelope(amqp, &unknown).await;
    publish_raw(amqp, Ping::ROUTING_KEY, "junk", Ping::TYPE, b"\xff").await;

    let consumer = start(&setup);
    let counted =
        || messages(Ping::TYPE, "duplicate") == 1.0 && messages("unknown", "dead_lettered") == 2.0;
    eventually_async(DEADLINE, "every outcome", || async {
        counted().then_some(())
    })
    .await;
    consumer.stop().await;

    for (event_type, outcome, expected) in [
        (Ping::TYPE, "retried", 1.0),
        (Ping::TYPE, "processed", 1.0),
        (Ping::TYPE, "duplicate", 1.0),
        ("unknown", "dead_lettered", 2.0),
        ("NobodyHandlesThis", "dead_lettered", 0.0),
    ] {
        assert_eq!(
            messages(event_type, outcome),
            expected,
            "{event_type} {outcome}"
        );
    }
    for (event_type, expected) in [(Ping::TYPE, 3.0), ("unknown", 2.0)] {
        let labels = [("event_type", event_type)];
        let handled = series(&queue, "consumer_handling_seconds_count", &labels);
        assert_eq!(handled, expected, "{event_type} timed");
    }
}
