//! Key rotation against a real broker and database: during a data-key rotation no message is
//! refused; once the old key is retired, what it sealed is dead-lettered as unauthenticated and
//! has no effect.

use std::time::Duration;

use shared::amqp::{QueueSpec, headers};
use shared::consumer::Handlers;
use shared::envelope::{Envelope, SagaEvent};
use shared::seal::Keyring;
use testkit::effects::{
    Ping, Recorder, RunningConsumer, create_effects_table, effect_count, fast_consumer_settings,
};
use testkit::keys::{dev_data_keys, fresh_data_key, with_data_keys};
use testkit::service::publish_raw;
use testkit::{TestAmqp, TestDb, eventually_async, init_tracing};

const DEADLINE: Duration = Duration::from_secs(20);

async fn send(amqp: &TestAmqp, sealer: &Keyring, n: i64) {
    let envelope = Envelope::new(&Ping { n }, Some(n)).expect("envelope");
    let body = sealer.seal(&envelope).expect("seal");
    let id = envelope.event_id.to_string();
    publish_raw(amqp, Ping::ROUTING_KEY, &id, Ping::TYPE, &body).await;
}

async fn wait_effects(db: &TestDb, count: i64) {
    eventually_async(DEADLINE, &format!("{count} effects"), || async {
        (effect_count(db).await == count).then_some(())
    })
    .await;
}

fn consumer(amqp: &TestAmqp, db: &TestDb, keys: Keyring) -> RunningConsumer {
    let handlers = Handlers::new().on::<Ping>(Recorder::default());
    RunningConsumer::start_with_keys(
        "pings",
        &amqp.settings(),
        db,
        fast_consumer_settings(),
        handlers,
        keys,
    )
}

#[tokio::test]
async fn a_data_key_rotation_refuses_nothing_until_the_old_key_is_retired() {
    init_tracing();
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    let amqp = TestAmqp::new().await;
    let retry_delays = fast_consumer_settings().retry_delays;
    let routing_keys = vec![Ping::ROUTING_KEY.to_owned()];
    amqp.declare(&QueueSpec::new("pings", routing_keys, retry_delays))
        .await;
    let old = dev_data_keys().to_owned();
    let new = fresh_data_key("next");
    let both = format!("{new}{old}");

    // Before: everyone holds the old key only.
    let before = with_data_keys(&old, Some("order"));
    let running = consumer(&amqp, &db, with_data_keys(&old, None));
    send(&amqp, &before, 1).await;
    wait_effects(&db, 1).await;
    running.stop().await;

    // Step 1 and 2: the new key is known everywhere, then it seals. A message sealed under
    // the old one before the switch is still in flight; it is accepted.
    send(&amqp, &before, 2).await;
    let during = with_data_keys(&both, Some("order"));
    send(&amqp, &during, 3).await;
    let running = consumer(&amqp, &db, with_data_keys(&both, None));
    wait_effects(&db, 3).await;
    running.stop().await;
    let dlq = amqp.topology.dead_letter_queue("pings");
    assert_eq!(
        amqp.depth(&dlq).await,
        0,
        "nothing refused during the rotation"
    );

    // Step 3: the old key is retired; a straggler sealed under it is refused, a new one is not.
    send(&amqp, &before, 4).await;
    send(&amqp, &during, 5).await;
    let running = consumer(&amqp, &db, with_data_keys(&new, None));
    let refused = amqp.take(&dlq, 1, DEADLINE).await;
    wait_effects(&db, 4).await;
    running.stop().await;
    let table = refused[0].properties.headers().as_ref();
    assert_eq!(
        headers::get_str(table, headers::DEAD_LETTER_REASON).as_deref(),
        Some(headers::REASON_UNAUTHENTICATED)
    );
    let error = headers::get_str(table, headers::DEAD_LETTER_ERROR).unwrap_or_default();
    assert!(
        error.starts_with("unknown_key: sealed under unknown data key data-dev"),
        "{error}"
    );
    assert_eq!(
        effect_count(&db).await,
        4,
        "the refused message had no effect"
    );
}
