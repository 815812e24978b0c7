//! Dead-letter operations against the running system: a poison message replayed after its
//! cause is fixed completes its saga exactly once; filters move exactly what they match;
//! a replay killed between publish and ack loses nothing; purge keeps a copy; the admin API
//! wants its token ([`admin_api`]); a summary groups dead letters that failed alike
//! ([`summary`]); replay and purge take a group, and a replay keeps each saga's order
//! ([`triage`]); a purge archives, and a restore brings back once ([`archive`]).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

#[path = "dlq/admin_api.rs"]
mod admin_api;
#[path = "dlq/archive.rs"]
mod archive;
#[path = "dlq/summary.rs"]
mod summary;
#[path = "dlq/triage.rs"]
mod triage;

use std::collections::HashSet;
use std::process::Output;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use shared::envelope::{Envelope, SagaEvent};
use shared::events::OrderProcessingStarted;
use system::{BALANCE, MONITOR, ORDER, PRODUCT, System};
use testkit::effects::count;
use testkit::eventually_async;
use testkit::service::publish;

const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `sagactl` against the system under test.
async fn sagactl(s: &System, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"));
    command
        .args(args)
        .env("AMQP_URL", &s.amqp.url)
        .env("AMQP_PREFIX", &s.amqp.prefix)
        .env("MONITOR_DATABASE_URL", &s.dbs[MONITOR].url)
        .env("RUST_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.unwrap()
}

async fn sagactl_json(s: &System, args: &[&str]) -> Value {
    let output = sagactl(s, args, &[]).await;
    assert!(
        output.status.success(),
        "sagactl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn dlq_depth(s: &System, consumer: &str) -> u32 {
    s.amqp
        .depth(&s.amqp.topology.dead_letter_queue(consumer))
        .await
}

async fn wait_dlq_depth(s: &System, consumer: &str, depth: u32) {
    eventually_async(
        DEADLINE,
        &format!("{consumer} dead letters = {depth}"),
        || async { (dlq_depth(s, consumer).await == depth).then_some(()) },
    )
    .await;
}

/// The order ids of the dead letters in `consumer`'s queue, in queue order.
async fn dead_orders(s: &System, consumer: &str) -> Vec<i64> {
    let listing = sagactl_json(s, &["dlq", "list", "--queue", consumer, "--json"]).await;
    listing[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["saga_id"].as_i64().unwrap())
        .collect()
}

/// Dead-letters one OrderProcessingStarted per order id in the product service (its payload
/// does not decode), then stops the product service so that replayed copies stay queued.
async fn poison_product(s: &mut System, orders: &[i64]) -> Vec<String> {
    let mut ids = Vec::new();
    for order in orders {
        let mut envelope = Envelope::new(
            &OrderProcessingStarted {
                command: shared::events::OrderCommand {
                    order_id: *order,
                    user_id: 1,
                    items: vec![],
                    user_coupon_id: None,
                },
            },
            Some(*order),
        )
        .unwrap();
        envelope.payload = json!({"not": "an order"});
        publish(&s.amqp, &envelope, OrderProcessingStarted::ROUTING_KEY).await;
        ids.push(envelope.event_id.to_string());
        // One at a time, so that the dead-letter queue's order is the publishing order.
        wait_dlq_depth(s, PRODUCT, u32::try_from(ids.len()).unwrap()).await;
    }
    s.apps.remove(PRODUCT).unwrap().stop().await;
    ids
}

async fn audit_rows(s: &System, operation: &str) -> i64 {
    count(
        &s.dbs[MONITOR],
        &format!("SELECT count(*) AS count FROM dlq_audit WHERE operation = '{operation}'"),
    )
    .await
}

#[tokio::test]
async fn a_poison_message_replayed_after_the_fix_completes_its_saga_once() {
    let s = System::start().await;
    let product = s.create_product("keyboard", "89.90", 10).await;
    s.charge(1, "500.00").await;
    // The cause: the balance database refuses payments (a broken migration, say).
    let mut balance_db = s.dbs[BALANCE].connect().await;
    diesel::sql_query(
        "ALTER TABLE balance_history ADD CONSTRAINT poison CHECK (kind <> 'PAYMENT')",
    )
    .execute(&mut balance_db)
    .await
    .unwrap();

    let id = s.place(1, &[(product, 2)], None).await;
    wait_dlq_depth(&s, BALANCE, 1).await;
    let listing = sagactl_json(&s, &["dlq", "list", "--json"]).await;
    let balance_dlq = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"].as_str().unwrap().ends_with(".balance.dlq"))
        .unwrap();
    let letter = &balance_dlq["messages"][0];
    assert_eq!(
        (letter["reason"].as_str(), letter["saga_id"].as_i64()),
        (Some("retries_exhausted"), Some(id)),
        "{letter}"
    );
    assert_eq!(letter["attempts"], 3);
    assert!(
        letter["error"].as_str().unwrap().contains("poison"),
        "{letter}"
    );
    let event_id = letter["event_id"].as_str().unwrap().to_owned();
    let shown = sagactl(&s, &["dlq", "show", &event_id], &[]).await;
    let sealed = String::from_utf8_lossy(&shown.stdout);
    assert!(sealed.contains("\"event_type\": \"CouponProcessed\""));
    assert!(!sealed.contains("179.80"), "no keys, no payload: {sealed}");
    let shown = sagactl(&s, &["dlq", "show", &event_id], &[("EVENT_KEYS", "dev")]).await;
    let opened = String::from_utf8_lossy(&shown.stdout);
    assert!(
        opened.contains("sealed by:       coupon/coupon-dev") && opened.contains("\"179.80\""),
        "with the keys, the payload: {opened}"
    );
    assert_eq!(
        s.app(ORDER).get(&format!("/orders/{id}")).await.1["status"],
        "PENDING"
    );

    // The fix, then the replay.
    diesel::sql_query("ALTER TABLE balance_history DROP CONSTRAINT poison")
        .execute(&mut balance_db)
        .await
        .unwrap();
    let report = sagactl_json(&s, &["dlq", "replay", "--id", &event_id, "--json"]).await;
    assert_eq!(report["moved"].as_array().unwrap().len(), 1, "{report}");

    let order = s.wait_terminal(id).await;
    assert_eq!(order["status"], "COMPLETED", "{order}");
    assert_eq!(s.balance(1).await, "320.20", "paid exactly once");
    assert_eq!(s.stock(product).await, 8);
    let claims = count(
        &s.dbs[BALANCE],
        &format!("SELECT count(*) AS count FROM inbox WHERE message_id = '{event_id}'"),
    )
    .await;
    assert_eq!(
        claims, 1,
        "the replay was applied, not swallowed as a duplicate"
    );
    assert_eq!(audit_rows(&s, "replay").await, 1);
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn a_filtered_replay_moves_exactly_the_matching_messages_and_a_dry_run_moves_none() {
    let mut s = System::start().await;
    let ids = poison_product(&mut s, &[101, 102, 103]).await;

    let dry = sagactl_json(
        &s,
        &["dlq", "replay", "--order-id", "102", "--dry-run", "--json"],
    )
    .await;
    assert_eq!(
        (
            dry["matched"].as_u64(),
            dry["moved"][0]["event_id"].as_str()
        ),
        (Some(1), Some(ids[1].as_str()))
    );
    assert_eq!(dlq_depth(&s, PRODUCT).await, 3, "a dry run moves nothing");
    assert_eq!(s.amqp.consumer_depth(PRODUCT).await, 0);

    let report = sagactl_json(&s, &["dlq", "replay", "--order-id", "102", "--json"]).await;
    assert_eq!(report["moved"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        dead_orders(&s, PRODUCT).await,
        vec![101, 103],
        "the others stay, in order"
    );
    let replayed = s.amqp.take_from_consumer(PRODUCT, 1, DEADLINE).await;
    let headers = replayed[0].properties.headers().as_ref();
    assert_eq!(
        replayed[0]
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        ids[1]
    );
    assert_eq!(
        shared::amqp::headers::get_i64(headers, shared::amqp::headers::ATTEMPT),
        Some(0),
        "fresh attempt count"
    );
    assert_eq!(
        shared::amqp::headers::get_i64(headers, shared::amqp::headers::REPLAY_COUNT),
        Some(1)
    );
    assert_eq!(
        shared::amqp::headers::get_str(headers, shared::amqp::headers::DEAD_LETTER_REASON),
        None
    );

    let refused = sagactl(&s, &["dlq", "replay"], &[]).await;
    assert!(
        !refused.status.success(),
        "an unfiltered replay needs --all"
    );
    let unpaced = sagactl(
        &s,
        &["dlq", "replay", "--order-id", "101", "--rate", "0"],
        &[],
    )
    .await;
    assert!(!unpaced.status.success(), "a rate must be positive");
    assert_eq!(dead_orders(&s, PRODUCT).await, vec![101, 103]);
    assert_eq!(
        audit_rows(&s, "replay").await,
        2,
        "the dry run is audited too"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_replay_killed_between_publish_and_ack_loses_nothing() {
    let mut s = System::start().await;
    let ids = poison_product(&mut s, &[201, 202, 203]).await;

    let crashed = sagactl(
        &s,
        &["dlq", "replay", "--all"],
        &[("SAGACTL_CRASH_AFTER_REPLAY_PUBLISH", "2")],
    )
    .await;
    assert_eq!(
        crashed.status.code(),
        Some(86),
        "{}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    // The first copy was acked; the second was confirmed but not acked; the third untouched.
    eventually_async(
        DEADLINE,
        "the unacked dead letter back in its queue",
        || async {
            (dlq_depth(&s, PRODUCT).await == 2 && s.amqp.consumer_depth(PRODUCT).await == 2)
                .then_some(())
        },
    )
    .await;
    let report = sagactl_json(&s, &["dlq", "replay", "--all", "--json"]).await;
    assert_eq!(report["moved"].as_array().unwrap().len(), 2);
    assert_eq!(dlq_depth(&s, PRODUCT).await, 0);
    let copies = s.amqp.take_from_consumer(PRODUCT, 4, DEADLINE).await;
    let seen: HashSet<String> = copies
        .iter()
        .map(|m| m.properties.message_id().as_ref().unwrap().to_string())
        .collect();
    assert_eq!(
        seen,
        ids.into_iter().collect::<HashSet<_>>(),
        "every message is somewhere; one twice"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_purge_removes_only_the_matching_messages_and_keeps_them_in_a_file() {
    let mut s = System::start().await;
    let ids = poison_product(&mut s, &[301, 302, 303]).await;
    let dump = std::env::temp_dir().join(format!("purge-{}.jsonl", testkit::unique_suffix()));

    let output = sagactl(
        &s,
        &[
            "dlq",
            "purge",
            "--order-id",
            "302",
            "--yes",
            "--out",
            dump.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(dead_orders(&s, PRODUCT).await, vec![301, 303]);
    let written = std::fs::read_to_string(&dump).unwrap();
    let lines: Vec<Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event_id"].as_str(), Some(ids[1].as_str()));
    assert!(
        lines[0]["body"]
            .as_str()
            .unwrap()
            .contains("\"saga_id\":302")
    );
    assert_eq!(audit_rows(&s, "purge").await, 1);
    let _ = std::fs::remove_file(dump);

    let unconfirmed = sagactl(&s, &["dlq", "purge", "--all"], &[]).await;
    assert!(
        !unconfirmed.status.success(),
        "no --yes and no 'yes' on stdin: nothing purged"
    );
    assert_eq!(dlq_depth(&s, PRODUCT).await, 2);
    s.stop().await;
}
