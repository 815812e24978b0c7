//! Scale out: three instances of every service and two relays (two claimers each) on one
//! system, under a load whose sagas produce their events back to back: every order completes
//! and is cancelled at once, so its `OrderCompleted` and `BalanceRestorationRequested` are
//! committed moments apart and the relays' claimers race for them.
//!
//! What must hold: every invariant (`sagactl verify`, nothing pending, no dead letter); a
//! consumer whose instances take over from each other mid-run applies each saga's events in
//! the order they were committed and never two of one saga at once; where a retry let a later
//! event overtake (forced), the saga still ends right.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "scale_out/audit.rs"]
mod audit;
#[path = "scale_out/order.rs"]
mod order;
mod system;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use system::{ORDER, System};
use testkit::TestDb;
use testkit::clients::OrderClient;

/// Sagas in the run; each completes, then is cancelled.
const SAGAS: usize = 1_200;
/// Sagas in flight at once.
const IN_FLIGHT: usize = 48;
const USERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_and_two_relays_keep_every_invariant_and_each_sagas_order() {
    // Fifteen service instances, two relays and the audit consumers share one PostgreSQL of
    // `max_connections = 100` (the test runs alone: .config/nextest.toml): small pools, and as
    // many lanes as a pool can serve, so no handler waits for a connection.
    let mut s = System::start_adjusted(|settings| {
        settings.database.pool_size = 3;
        settings.consumer.concurrency = 2;
    })
    .await;
    s.stop_relay().await;
    for _ in 0..2 {
        // Published rows are kept: their ids are the commit order the test compares with.
        s.start_relay_with(|relay| relay.retention = Duration::from_secs(3_600));
    }
    s.add_instances(2).await;
    order::force_a_retry_at_the_monitor(&s).await;
    let audit_db = TestDb::new().await;
    audit::prepare(&audit_db, &s.amqp).await;
    let audit = audit::Audit::default();
    let mut auditors: Vec<_> = (0..3)
        .map(|_| audit::start(&audit, &audit_db, &s.amqp))
        .collect();

    let product = s.create_product("plenty", "10.00", 1_000_000).await;
    for user in 1..=USERS {
        s.charge(i64::try_from(user).unwrap(), "1000000.00").await;
    }
    let orders: Vec<OrderClient> = s
        .instances(ORDER)
        .into_iter()
        .map(OrderClient::new)
        .collect();
    let mut ids = Vec::with_capacity(SAGAS);
    let mut sagas = futures_util::stream::iter(0..SAGAS)
        .map(|n| complete_then_cancel(&orders, n, product))
        .buffer_unordered(IN_FLIGHT);
    while let Some(id) = sagas.next().await {
        ids.push(id);
        // Instances of the audit consumer leave mid-run; the next one in line takes over.
        if ids.len() == SAGAS / 3 || ids.len() == 2 * SAGAS / 3 {
            auditors.remove(0).stop().await;
        }
    }
    drop(sagas);
    for id in &ids {
        let order = orders[0].wait_terminal(*id).await;
        assert_eq!(order["status"], "CANCELLED", "order {id}: {order}");
    }

    s.assert_settled().await;
    s.assert_verify_clean().await;
    let dead = s
        .amqp
        .depth(&s.amqp.topology.dead_letter_queue(audit::NAME))
        .await;
    assert_eq!(dead, 0, "audit dead letters");
    order::assert_monitor_ended_every_saga(&s, &ids, "cancelled").await;
    assert_each_sagas_order(&s, &audit_db, &audit).await;
    for auditor in auditors {
        auditor.stop().await;
    }
    s.stop().await;
}

/// Every event the audit consumer applied came in its saga's commit order (per producer), but
/// for the sagas whose retry was forced; at least one of those was overtaken; no event was
/// missed or applied twice; no two of one saga ran at once.
async fn assert_each_sagas_order(s: &System, audit_db: &TestDb, audit: &audit::Audit) {
    let reordered_at_monitor = order::reordered_at_monitor(s).await;

    let commits = order::committed(s).await;
    // The audit consumer runs behind the saga (one active instance, slow handlers, retries):
    // wait until it has seen as many events as were committed.
    let distinct = "SELECT count(DISTINCT event_id) AS count FROM audit";
    let expected = i64::try_from(commits.len()).unwrap();
    testkit::eventually_async(
        Duration::from_secs(120),
        "the audit to catch up",
        || async { (testkit::effects::count(audit_db, distinct).await >= expected).then_some(()) },
    )
    .await;
    let log = audit::log(audit_db).await;
    let report = order::compare(&commits, &log, audit::forced);
    assert_eq!(report.missing, 0, "events the audit never applied");
    assert_eq!(report.duplicates, 0, "events applied twice");
    assert!(
        report.out_of_order.is_empty(),
        "sagas applied out of commit order without a retry: {:?}",
        report.out_of_order
    );
    assert!(
        report.overtaken > 0,
        "no forced retry was overtaken: the test proved nothing about retries"
    );
    assert_eq!(
        audit.overlaps.load(Ordering::SeqCst),
        0,
        "two events of one saga handled at the same time"
    );
    eprintln!(
        "{SAGAS} sagas, {} events; retried and overtaken: {} at the audit, {} at the monitor",
        commits.len(),
        report.overtaken,
        reordered_at_monitor
    );
}

/// Places an order through one instance, long-polls it through another and, once it
/// completed, cancels it through a third: its last two events are committed back to back.
async fn complete_then_cancel(orders: &[OrderClient], n: usize, product: i64) -> i64 {
    let user = i64::try_from(n % USERS + 1).unwrap();
    let at = |k: usize| &orders[(n + k) % orders.len()];
    let id = at(0).place(user, &[(product, 1)], None).await;
    let order = at(1).wait_terminal(id).await;
    assert_eq!(order["status"], "COMPLETED", "order {id}: {order}");
    at(2).cancel(id).await;
    id
}
