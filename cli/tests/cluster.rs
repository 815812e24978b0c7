//! The saga on a three-node RabbitMQ cluster that loses a node: the whole system runs with
//! `AMQP_URL` naming the three nodes of a cluster of the test's own ([`RabbitCluster`]), orders
//! arrive at a steady pace, and a node is killed with SIGKILL and later restarted, first the
//! node leading most of the system's queues, then one leading the fewest. Every order must end
//! as its scenario says, nothing may be dead-lettered, `sagactl verify` must pass, and every
//! outbox row that was still unpublished when the node died must have been published and
//! applied (the relay republishes a batch whose confirms it lost).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use system::{BALANCE, COUPON, MONITOR, ORDER, PRODUCT, System};
use testkit::clients::OrderClient;
use testkit::cluster::{NODES, QueueInfo, RabbitCluster};
use testkit::effects::count;
use testkit::eventually_async;

/// Orders placed per second: a steady load the 2-core machine carries while it also runs three
/// extra broker nodes, without the test becoming a benchmark.
const ORDERS_PER_SECOND: u64 = 8;
/// Orders that must end while a node is down before it is restarted, and after the restart.
const PROGRESS: i64 = 16;
const DEADLINE: Duration = Duration::from_secs(60);
const WIDGET_STOCK: i64 = 100_000;
const RICH_USERS: i64 = 20;
const POOR_USER: i64 = 999;

/// What an order is meant to do, by its index in the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Completes,
    OutOfStock,
    UnknownCoupon,
    TooPoor,
}

impl Scenario {
    fn of(index: u64) -> Self {
        match index % 4 {
            0 => Self::Completes,
            1 => Self::OutOfStock,
            2 => Self::UnknownCoupon,
            _ => Self::TooPoor,
        }
    }

    /// The status and failure code the order must end with.
    fn outcome(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Completes => ("COMPLETED", None),
            Self::OutOfStock => ("FAILED", Some("insufficient_stock")),
            Self::UnknownCoupon => ("FAILED", Some("coupon_not_found")),
            Self::TooPoor => ("FAILED", Some("insufficient_balance")),
        }
    }
}

#[derive(Clone, Copy)]
struct Shop {
    widget: i64,
    /// Out of stock from the start.
    rare: i64,
}

/// Orders placed at a steady pace in the background until stopped.
struct Load {
    placed: Arc<Mutex<Vec<(i64, Scenario)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(orders: OrderClient, shop: Shop) -> Self {
        let placed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (placed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(1000 / ORDERS_PER_SECOND));
            for index in 0.. {
                pace.tick().await;
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let scenario = Scenario::of(index);
                let user = (index as i64 % RICH_USERS) + 1;
                let id = match scenario {
                    Scenario::Completes => orders.place(user, &[(shop.widget, 1)], None).await,
                    Scenario::OutOfStock => {
                        let lines = [(shop.widget, 1), (shop.rare, 1)];
                        orders.place(user, &lines, None).await
                    }
                    Scenario::UnknownCoupon => {
                        orders.place(user, &[(shop.widget, 1)], Some(999_999)).await
                    }
                    Scenario::TooPoor => orders.place(POOR_USER, &[(shop.widget, 1)], None).await,
                };
                log.lock().unwrap().push((id, scenario));
            }
        });
        Self { placed, stop, task }
    }

    /// Stops placing orders; returns every order placed.
    async fn stop(self) -> Vec<(i64, Scenario)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the load panicked");
        self.placed.lock().unwrap().clone()
    }
}

async fn stock_the_shop(s: &System) -> Shop {
    let shop = Shop {
        widget: s.create_product("widget", "10.00", WIDGET_STOCK).await,
        rare: s.create_product("rare", "10.00", 0).await,
    };
    for user in 1..=RICH_USERS {
        s.charge(user, "100000.00").await;
    }
    s.charge(POOR_USER, "0.01").await;
    shop
}

/// Orders that reached a terminal status.
async fn ended(s: &System) -> i64 {
    let sql =
        "SELECT count(*) AS count FROM orders WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')";
    count(&s.dbs[ORDER], sql).await
}

/// Waits until `more` orders ended beyond the `ended` count at the call.
async fn wait_progress(s: &System, more: i64, what: &str) {
    let target = ended(s).await + more;
    eventually_async(
        DEADLINE,
        &format!("{more} orders to end {what}"),
        || async { (ended(s).await >= target).then_some(()) },
    )
    .await;
}

#[derive(QueryableByName)]
struct EventId {
    #[diesel(sql_type = Text)]
    id: String,
}

/// The ids of the events still unpublished in the four outboxes, claimed ones included.
async fn unpublished_events(s: &System) -> Vec<String> {
    // Imported here: its `load` would shadow `AtomicBool::load` in the whole file.
    use diesel_async::RunQueryDsl;
    let mut ids = Vec::new();
    for name in [ORDER, PRODUCT, COUPON, BALANCE] {
        let mut conn = s.dbs[name].connect().await;
        let sql = "SELECT event_id::text AS id FROM outbox WHERE published_at IS NULL";
        let rows: Vec<EventId> = diesel::sql_query(sql).load(&mut conn).await.unwrap();
        ids.extend(rows.into_iter().map(|row| row.id));
    }
    ids
}

/// How many of `ids` the monitor, which consumes every event, has applied.
async fn applied_by_monitor(s: &System, ids: &[String]) -> i64 {
    if ids.is_empty() {
        return 0;
    }
    let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>();
    let sql = format!(
        "SELECT count(*) AS count FROM saga_events WHERE event_id::text IN ({})",
        list.join(",")
    );
    count(&s.dbs[MONITOR], &sql).await
}

/// The relay's broker and database failures so far (from its metrics, in this process).
fn relay_errors() -> f64 {
    let text = shared::metrics::handle("relay").render();
    text.lines()
        .filter(|line| line.starts_with("relay_errors_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The system's queues, as a node other than `down` reports them.
async fn system_queues(cluster: &RabbitCluster, s: &System, down: Option<usize>) -> Vec<QueueInfo> {
    let node = NODES.into_iter().find(|node| Some(*node) != down).unwrap();
    cluster.queues(node, &format!("{}.", s.amqp.prefix)).await
}

/// Kills `node`, waits until orders keep ending without it, restarts it, waits until orders
/// keep ending with it back. Returns the events unpublished right after the kill: a batch the
/// relay had claimed on a connection to the dead node is among them (its claim has not
/// committed), and so is what the broker refuses while the queues elect new leaders.
async fn outage(cluster: &RabbitCluster, s: &System, node: usize, role: &str) -> Vec<String> {
    let started = std::time::Instant::now();
    cluster.kill(node);
    let unpublished = unpublished_events(s).await;
    wait_progress(
        s,
        PROGRESS,
        &format!("with the {role} (node {node}) killed"),
    )
    .await;
    let recovered = started.elapsed();
    cluster.restart_stopped().await;
    wait_progress(s, PROGRESS, &format!("after the {role} came back")).await;
    eprintln!(
        "{role} node {node}: {} events unpublished at the kill; {PROGRESS} orders ended \
         {recovered:?} after it; back after {:?}",
        unpublished.len(),
        started.elapsed()
    );
    unpublished
}

/// Every order ended as its scenario says, and the widget stock holds exactly the completed.
async fn assert_every_order_ended_right(s: &System, shop: Shop, placed: &[(i64, Scenario)]) {
    let total = placed.len() as i64;
    eventually_async(DEADLINE, &format!("all {total} orders to end"), || async {
        (ended(s).await == total).then_some(())
    })
    .await;
    let orders = s.orders();
    for (id, scenario) in placed {
        let order = orders.order(*id).await;
        let (status, code) = scenario.outcome();
        assert_eq!(
            (order["status"].as_str(), order["failure_code"].as_str()),
            (Some(status), code),
            "order {id} ({scenario:?}): {order}"
        );
    }
    let completed = placed
        .iter()
        .filter(|(_, scenario)| *scenario == Scenario::Completes)
        .count() as i64;
    let stock = s.stock(shop.widget).await;
    assert_eq!(
        stock,
        WIDGET_STOCK - completed,
        "stock = initial - completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_then_a_follower_under_load_loses_no_order() {
    // Declared first, dropped last: the nodes are killed after the system stopped.
    let cluster = RabbitCluster::start().await;
    let mut s = System::start_at(&cluster.url()).await;
    let shop = stock_the_shop(&s).await;
    let load = Load::start(s.orders(), shop);
    wait_progress(&s, PROGRESS, "before any node is killed").await;

    let queues = system_queues(&cluster, &s, None).await;
    assert!(queues.len() >= 10, "the system's queues: {queues:?}");
    let everywhere: Vec<String> = NODES.iter().map(|n| cluster.node_name(*n)).collect();
    for queue in &queues {
        let mut members = queue.members.clone();
        members.sort();
        assert_eq!(
            (queue.kind.as_str(), &members),
            ("quorum", &everywhere),
            "{queue:?}"
        );
    }
    let led = cluster.leaders(&queues);
    let leader = *led.iter().max_by_key(|(_, n)| **n).unwrap().0;
    let errors = relay_errors();
    let mut unpublished = outage(&cluster, &s, leader, "leader").await;

    // Of the other two, the one leading fewer of the queues: a follower of most of them.
    let led = cluster.leaders(&system_queues(&cluster, &s, None).await);
    let follower = *led
        .iter()
        .filter(|(node, _)| **node != leader)
        .min_by_key(|(_, n)| **n)
        .unwrap()
        .0;
    unpublished.extend(outage(&cluster, &s, follower, "follower").await);

    let placed = load.stop().await;
    assert_every_order_ended_right(&s, shop, &placed).await;
    // The monitor applies events on its own schedule, behind the services: wait for it.
    let expected = unpublished.len() as i64;
    eventually_async(
        Duration::from_secs(60),
        "every event unpublished when a node died published and applied by the monitor",
        || async { (applied_by_monitor(&s, &unpublished).await == expected).then_some(()) },
    )
    .await;
    assert!(
        relay_errors() > errors,
        "the relay lost a broker connection"
    );
    s.amqp.reconnect().await;
    s.assert_settled().await;
    s.assert_verify_clean().await;
    eprintln!(
        "{} orders; queues led per node before the follower's kill: {led:?}",
        placed.len()
    );
    s.stop().await;
}
