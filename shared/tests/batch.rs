//! Batched consumers (`Handlers::batched`): many deliveries in one transaction, the same
//! outcome as one at a time. A poison message in a batch rolls the batch back; every message is
//! then applied alone, so the poison is dead-lettered and the others apply exactly once.

use std::time::Duration;

use async_trait::async_trait;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use shared::amqp::headers;
use shared::consumer::{Consumer, EventHandler, Handlers};
use shared::envelope::{Envelope, SagaEvent};
use shared::error::HandlerError;
use testkit::effects::{
    Ping, RunningConsumer, count, create_effects_table, double_effects, effect_count,
    fast_consumer_settings,
};
use testkit::{TestAmqp, TestDb, eventually_async, init_tracing};

const DEADLINE: Duration = Duration::from_secs(30);
const MESSAGES: i64 = 60;
const POISON: i64 = 20;

/// Records the effect (with its transaction id), then refuses ping number `POISON` for good.
#[derive(Clone)]
struct PoisonAt(i64);

#[async_trait]
impl EventHandler<Ping> for PoisonAt {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: Ping,
    ) -> Result<(), HandlerError> {
        diesel::sql_query("INSERT INTO effects (event_id, n) VALUES ($1, $2)")
            .bind::<diesel::sql_types::Uuid, _>(envelope.event_id)
            .bind::<diesel::sql_types::BigInt, _>(event.n)
            .execute(conn)
            .await?;
        if event.n == self.0 {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "poison {}",
                event.n
            )));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_poison_message_in_a_batch_is_dead_lettered_alone_and_the_others_apply_once() {
    init_tracing();
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    {
        let mut conn = db.connect().await;
        // Which transaction wrote each effect: proves that batches really shared one.
        diesel::sql_query(
            "ALTER TABLE effects ADD COLUMN txid BIGINT NOT NULL DEFAULT txid_current()",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let amqp = TestAmqp::new().await;
    let settings = fast_consumer_settings();
    let handlers = || Handlers::new().on::<Ping>(PoisonAt(POISON)).batched(16);
    let spec = Consumer::new(
        "pings",
        &amqp.settings(),
        db.pool.clone(),
        settings.clone(),
        handlers(),
    )
    .queue_spec();
    amqp.declare(&spec).await;

    // All queued before the consumer starts, so deliveries arrive together and batch up.
    let envelopes: Vec<Envelope> = (1..=MESSAGES)
        .map(|n| Envelope::new(&Ping { n }, Some(n)).unwrap())
        .collect();
    for envelope in &envelopes {
        let confirm = amqp
            .channel
            .basic_publish(
                amqp.topology.events_exchange().as_str().into(),
                Ping::ROUTING_KEY.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &envelope.to_bytes().unwrap(),
                BasicProperties::default()
                    .with_message_id(envelope.event_id.to_string().into())
                    .with_type(envelope.event_type.as_str().into())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap();
        confirm.await.unwrap();
    }

    let consumer = RunningConsumer::start("pings", &amqp.settings(), &db, settings, handlers());
    let dead = amqp
        .take(&amqp.topology.dead_letter_queue("pings"), 1, DEADLINE)
        .await;
    eventually_async(DEADLINE, "every other ping applied", || async {
        (effect_count(&db).await >= MESSAGES - 1).then_some(())
    })
    .await;
    consumer.stop().await;

    assert_eq!(
        effect_count(&db).await,
        MESSAGES - 1,
        "every ping but the poison, once"
    );
    assert_eq!(double_effects(&db).await, 0);
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) AS count FROM effects WHERE n = {POISON}")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS count FROM inbox WHERE consumer = 'pings'"
        )
        .await,
        MESSAGES - 1,
        "the poison left no inbox claim, so a replay after a fix would apply it"
    );
    let transactions = count(&db, "SELECT count(DISTINCT txid) AS count FROM effects").await;
    assert!(
        transactions < MESSAGES - 1,
        "some transaction applied several messages ({transactions} transactions)"
    );

    let poison = &envelopes[usize::try_from(POISON - 1).unwrap()];
    let table = dead[0].properties.headers().as_ref();
    assert_eq!(
        dead[0]
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string()),
        Some(poison.event_id.to_string())
    );
    assert_eq!(
        headers::get_str(table, headers::DEAD_LETTER_REASON).as_deref(),
        Some(headers::REASON_REJECTED)
    );
    assert_eq!(amqp.depth(&amqp.topology.queue("pings")).await, 0);
}
