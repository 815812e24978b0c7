//! The connection budget (README, "Connection budget"): one whole system (four services, the
//! monitor and one relay) under saturating load holds no more PostgreSQL connections than the
//! formula says, and that is within half of a stock `max_connections = 100`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use futures_util::StreamExt;
use shared::config::PoolSettings;
use system::{ORDER, SERVICES, System};

/// Orders placed, and how many at once: far more than any pool, so every pool the load reaches
/// is exhausted and the relay's claimers all work.
const ORDERS: i64 = 400;
const AT_ONCE: usize = 100;

#[derive(diesel::QueryableByName)]
struct PerDatabase {
    #[diesel(sql_type = Text)]
    datname: String,
    #[diesel(sql_type = BigInt)]
    connections: i64,
}

/// Samples `pg_stat_activity` (from the `postgres` database, outside the system) until stopped;
/// returns the highest total over `databases` and the highest count seen on each.
async fn sample(databases: Vec<String>, stop: Arc<AtomicBool>) -> (i64, HashMap<String, i64>) {
    let mut conn = shared::db::connect(&format!("{}/postgres", testkit::server_url()))
        .await
        .unwrap();
    let (mut peak, mut per_database) = (0, HashMap::new());
    while !stop.load(Ordering::Relaxed) {
        let rows: Vec<PerDatabase> = diesel_async::RunQueryDsl::load(
            diesel::sql_query(
                "SELECT datname, count(*) AS connections FROM pg_stat_activity \
                 WHERE datname = ANY($1) GROUP BY datname",
            )
            .bind::<diesel::sql_types::Array<Text>, _>(&databases),
            &mut conn,
        )
        .await
        .unwrap();
        peak = peak.max(rows.iter().map(|row| row.connections).sum());
        for row in rows {
            let seen = per_database.entry(row.datname).or_insert(0);
            *seen = (*seen).max(row.connections);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (peak, per_database)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_whole_system_under_saturating_load_stays_within_fifty_connections() {
    let started = Instant::now();
    let s = System::start().await;
    let product = s.create_product("budget", "1.00", 1_000_000).await;
    for user in 1..=AT_ONCE as i64 {
        s.charge(user, "100000.00").await;
    }
    let names: HashMap<&str, String> = SERVICES
        .iter()
        .map(|name| (*name, s.dbs[name].name.clone()))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(names.values().cloned().collect(), stop.clone()));

    let orders = s.orders();
    let outcomes: Vec<String> = futures_util::stream::iter(0..ORDERS)
        .map(|n| {
            let orders = orders.clone();
            async move {
                let id = orders
                    .place(n % AT_ONCE as i64 + 1, &[(product, 1)], None)
                    .await;
                orders.wait_terminal(id).await["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    let (peak, per_database) = sampler.await.unwrap();

    let completed = outcomes
        .iter()
        .filter(|status| *status == "COMPLETED")
        .count();
    assert_eq!(
        completed, ORDERS as usize,
        "every order completed: {outcomes:?}"
    );
    let pool = PoolSettings::default().pool_size as i64;
    let claimers = outbox_relay::RelaySettings::new(Vec::new(), s.amqp.settings()).claimers as i64;
    // The README's formula for one instance of each service and one relay on four databases:
    // the five pools, the order service's LISTEN session, and per relayed database its
    // claimers, the connection its cleanup and gauge share, and its LISTEN session.
    let budget = 5 * pool + 1 + 4 * (claimers + 2);
    eprintln!(
        "peak {peak} connections (budget {budget}) in {:?}; per database: {:?}",
        started.elapsed(),
        names
            .iter()
            .map(|(service, db)| (*service, per_database.get(db).copied().unwrap_or(0)))
            .collect::<HashMap<_, _>>()
    );
    assert!(budget <= 50, "the defaults' budget {budget} is over 50");
    assert!(
        peak <= budget,
        "peak {peak} connections, over the budget of {budget}"
    );
    // The load did saturate: the order service's pool was used to the full.
    let order_peak = per_database.get(&names[ORDER]).copied().unwrap_or(0);
    assert!(
        order_peak >= pool,
        "the order database saw only {order_peak} connections"
    );
    s.stop().await;
}
