//! Per-saga order out of the relay: however many relays and claimers serve one database, the
//! events of one saga reach the broker in the order they were committed.

use std::collections::HashMap;

use super::*;

/// Sagas, and events per saga, committed interleaved in one transaction.
const SAGAS: i64 = 40;
const PER_SAGA: i64 = 25;

#[tokio::test]
async fn two_relays_of_four_claimers_publish_each_sagas_events_in_commit_order() {
    init_tracing();
    let db = TestDb::new().await;
    let amqp = TestAmqp::new().await;
    let probe = amqp.probe("#").await;
    let committed = testkit::effects::enqueue_saga_pings(&db, 1..SAGAS + 1, PER_SAGA).await;
    // Each event's place in its saga's commit order.
    let rank: HashMap<String, (i64, usize)> = {
        let mut seen: HashMap<i64, usize> = HashMap::new();
        committed
            .iter()
            .map(|envelope| {
                let saga = envelope.saga_id.expect("a saga");
                let next = seen.entry(saga).or_default();
                *next += 1;
                (envelope.event_id.to_string(), (saga, *next))
            })
            .collect()
    };

    // Small batches and many claimers: without the per-saga claim, two claimers would hold
    // events of one saga at once and their confirms race.
    let settings = [("RELAY_BATCH_SIZE", "10"), ("RELAY_CLAIMERS", "4")];
    let mut first = spawn_relay(&db, &amqp, &settings);
    let mut second = spawn_relay(&db, &amqp, &settings);
    let total = usize::try_from(SAGAS * PER_SAGA).expect("count");
    let deliveries = amqp.take(&probe, total, Duration::from_secs(120)).await;
    let mut last: HashMap<i64, usize> = HashMap::new();
    for delivery in &deliveries {
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .expect("message id");
        let (saga, place) = rank[id.as_str()];
        let previous = last.insert(saga, place).unwrap_or(0);
        assert_eq!(
            place,
            previous + 1,
            "saga {saga}: event {place} of its commit order arrived after event {previous}"
        );
    }
    assert!(last.values().all(|place| *place == PER_SAGA as usize));
    wait_until_published(&db).await;
    let _ = first.kill().await;
    let _ = second.kill().await;
}
