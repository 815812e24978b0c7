//! Batched consumers (`Handlers::batched`): many deliveries in one transaction, the same
//! outcome as one at a time. A poison message in a batch rolls the batch back; every message is
//! then applied alone, so the poison is dead-lettered and the others apply exactly once. What
//! cannot be handled at all (garbage, an unknown type) is dead-lettered alone without touching
//! the batch, and a batch takes its locks in key order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::amqp::headers;
use shared::config::ConsumerSettings;
use shared::consumer::{Consumer, EventHandler, Handlers, after_commit};
use shared::envelope::{Envelope, SagaEvent};
use shared::error::HandlerError;
use testkit::effects::{
    Ping, RunningConsumer, count, create_effects_table, double_effects, effect_count,
    fast_consumer_settings,
};
use testkit::service::publish_raw;
use testkit::{TestAmqp, TestDb, eventually_async, init_tracing};

const DEADLINE: Duration = Duration::from_secs(30);
const MESSAGES: i64 = 60;
const POISON: i64 = 20;
const FLAKY: i64 = 30;
/// Transient failures of the flaky ping before it succeeds: fewer than the attempts allowed.
const FLAKY_FAILURES: u32 = 2;
const BATCH: usize = 16;

/// Records the effect (with its transaction id) and counts it again after commit; refuses ping
/// `poison` for good, and fails ping `flaky` transiently on its first `FLAKY_FAILURES` calls.
#[derive(Clone, Default)]
struct Scripted {
    poison: Option<i64>,
    flaky: Option<i64>,
    flaky_calls: Arc<AtomicU32>,
    /// After-commit actions run: must match the effects, as rolled-back ones are dropped.
    committed: Arc<AtomicU32>,
}

impl Scripted {
    fn committed(&self) -> i64 {
        i64::from(AtomicU32::load(&self.committed, Ordering::SeqCst))
    }

    fn flaky_calls(&self) -> u32 {
        AtomicU32::load(&self.flaky_calls, Ordering::SeqCst)
    }
}

#[async_trait]
impl EventHandler<Ping> for Scripted {
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
        let committed = self.committed.clone();
        after_commit(move || {
            committed.fetch_add(1, Ordering::SeqCst);
        });
        if self.poison == Some(event.n) {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "poison {}",
                event.n
            )));
        }
        if self.flaky == Some(event.n)
            && self.flaky_calls.fetch_add(1, Ordering::SeqCst) < FLAKY_FAILURES
        {
            return Err(HandlerError::transient(anyhow::anyhow!(
                "flaky {}", event.n
            )));
        }
        Ok(())
    }
}

struct Setup {
    db: TestDb,
    amqp: TestAmqp,
    handlers: Handlers,
}

/// The effects table, with the transaction that wrote each effect (proves that batches really
/// shared one), and the queue of a consumer batching up to `BATCH` deliveries.
async fn setup(handler: Scripted) -> Setup {
    init_tracing();
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    let mut conn = db.connect().await;
    diesel::sql_query("ALTER TABLE effects ADD COLUMN txid BIGINT NOT NULL DEFAULT txid_current()")
        .execute(&mut conn)
        .await
        .expect("txid column");
    let amqp = TestAmqp::new().await;
    let handlers = Handlers::new().on::<Ping>(handler).batched(BATCH);
    let spec = Consumer::new(
        "pings",
        &amqp.settings(),
        db.pool.clone(),
        fast_consumer_settings(),
        handlers.clone(),
        testkit::keys::reader(),
    )
    .queue_spec();
    amqp.declare(&spec).await;
    Setup { db, amqp, handlers }
}

async fn publish_envelope(amqp: &TestAmqp, envelope: &Envelope) {
    let id = envelope.event_id.to_string();
    publish_raw(
        amqp,
        Ping::ROUTING_KEY,
        &id,
        &envelope.event_type,
        &testkit::keys::seal(envelope),
    )
    .await;
}

/// Pings 1..=MESSAGES, ping `n` of saga `saga(n)`.
fn pings(saga: fn(i64) -> i64) -> Vec<Envelope> {
    (1..=MESSAGES)
        .map(|n| Envelope::new(&Ping { n }, Some(saga(n))).expect("envelope"))
        .collect()
}

fn start(setup: &Setup) -> RunningConsumer {
    let settings = fast_consumer_settings();
    let amqp = setup.amqp.settings();
    RunningConsumer::start("pings", &amqp, &setup.db, settings, setup.handlers.clone())
}

async fn wait_for_effects(db: &TestDb, expected: i64) {
    eventually_async(DEADLINE, &format!("{expected} effects"), || async {
        (effect_count(db).await >= expected).then_some(())
    })
    .await;
}

async fn inbox_claims(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT count(*) AS count FROM inbox WHERE consumer = 'pings'",
    )
    .await
}

async fn transactions(db: &TestDb) -> i64 {
    count(db, "SELECT count(DISTINCT txid) AS count FROM effects").await
}

#[tokio::test]
async fn a_poison_message_in_a_batch_is_dead_lettered_alone_and_the_others_apply_once() {
    let handler = Scripted {
        poison: Some(POISON),
        ..Scripted::default()
    };
    let setup = setup(handler.clone()).await;
    let (db, amqp) = (&setup.db, &setup.amqp);
    let envelopes = pings(|n| n);
    for envelope in &envelopes {
        publish_envelope(amqp, envelope).await;
    }

    let consumer = start(&setup);
    let dead = amqp
        .take(&amqp.topology.dead_letter_queue("pings"), 1, DEADLINE)
        .await;
    wait_for_effects(db, MESSAGES - 1).await;
    consumer.stop().await;

    assert_eq!(
        effect_count(db).await,
        MESSAGES - 1,
        "every ping but the poison, once"
    );
    assert_eq!(double_effects(db).await, 0);
    let poisoned = format!("SELECT count(*) AS count FROM effects WHERE n = {POISON}");
    assert_eq!(count(db, &poisoned).await, 0);
    assert_eq!(
        inbox_claims(db).await,
        MESSAGES - 1,
        "the poison left no inbox claim, so a replay after a fix would apply it"
    );
    assert_eq!(
        handler.committed(),
        MESSAGES - 1,
        "the after-commit actions of the rolled-back batch were dropped"
    );
    let transactions = transactions(db).await;
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
    assert_eq!(amqp.consumer_depth("pings").await, 0);
}

#[tokio::test]
async fn garbage_and_unknown_types_among_batched_pings_are_dead_lettered_alone_and_a_flaky_ping_retried()
 {
    let handler = Scripted {
        flaky: Some(FLAKY),
        ..Scripted::default()
    };
    let setup = setup(handler.clone()).await;
    let (db, amqp) = (&setup.db, &setup.amqp);
    let mut unknown = Envelope::new(&Ping { n: 0 }, Some(0)).unwrap();
    unknown.event_type = "NobodyHandlesThis".into();
    for envelope in pings(|n| n) {
        publish_envelope(amqp, &envelope).await;
        match envelope.saga_id {
            Some(10) => publish_envelope(amqp, &unknown).await,
            Some(40) => {
                let garbage = b"\x00\xffnot an envelope";
                publish_raw(amqp, Ping::ROUTING_KEY, "garbage-1", Ping::TYPE, garbage).await
            }
            _ => {}
        }
    }

    let consumer = start(&setup);
    let dead = amqp
        .take(&amqp.topology.dead_letter_queue("pings"), 2, DEADLINE)
        .await;
    wait_for_effects(db, MESSAGES).await;
    consumer.stop().await;

    let mut reasons: Vec<(String, Option<i64>)> = dead
        .iter()
        .map(|message| {
            let table = message.properties.headers().as_ref();
            let reason = headers::get_str(table, headers::DEAD_LETTER_REASON);
            (
                reason.unwrap_or_default(),
                headers::get_i64(table, headers::ATTEMPT),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            (headers::REASON_MALFORMED.to_owned(), Some(0)),
            (headers::REASON_UNKNOWN_TYPE.to_owned(), Some(0)),
        ],
        "dead-lettered at once, without an attempt"
    );
    assert_eq!(effect_count(db).await, MESSAGES, "every ping, once");
    assert_eq!(double_effects(db).await, 0);
    assert_eq!(inbox_claims(db).await, MESSAGES);
    assert_eq!(handler.committed(), MESSAGES);
    assert_eq!(
        handler.flaky_calls(),
        FLAKY_FAILURES + 1,
        "the flaky ping failed, was retried, then applied"
    );
    let transactions = transactions(db).await;
    assert!(
        transactions < MESSAGES,
        "the dead letters did not stop the batching ({transactions} transactions)"
    );
    assert_eq!(amqp.consumer_depth("pings").await, 0);
}

#[tokio::test]
async fn a_batch_is_applied_in_saga_order_and_one_sagas_events_in_arrival_order() {
    let setup = setup(Scripted::default()).await;
    let (db, amqp) = (&setup.db, &setup.amqp);
    // Four sagas taking turns: arrival order is never saga order.
    for envelope in pings(|n| n % 4) {
        publish_envelope(amqp, &envelope).await;
    }

    // One lane, so that one batch can hold several sagas (each saga keeps to one lane).
    let settings = ConsumerSettings {
        concurrency: 1,
        ..fast_consumer_settings()
    };
    let amqp_settings = amqp.settings();
    let handlers = setup.handlers.clone();
    let consumer = RunningConsumer::start("pings", &amqp_settings, db, settings, handlers);
    wait_for_effects(db, MESSAGES).await;
    consumer.stop().await;

    // Within one transaction, effects were written (ids drawn) in the order they were applied.
    let out_of_order = count(
        db,
        "SELECT count(*) AS count FROM (
           SELECT n % 4 AS saga, n, lag(n % 4) OVER w AS before_saga, lag(n) OVER w AS before_n
           FROM effects WINDOW w AS (PARTITION BY txid ORDER BY id)) applied
         WHERE saga < before_saga OR (saga = before_saga AND n < before_n)",
    )
    .await;
    assert_eq!(out_of_order, 0, "applied by saga, then by arrival");
    let mixed = count(
        db,
        "SELECT count(*) AS count FROM (
           SELECT txid FROM effects GROUP BY txid HAVING count(DISTINCT n % 4) > 1) mixed",
    )
    .await;
    assert!(mixed > 0, "some batch held several sagas");
    assert_eq!(double_effects(db).await, 0);
}
