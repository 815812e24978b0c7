//! Triage by group and in saga order: `replay --group` and `purge --group` move exactly the
//! dead letters of the group a summary showed (a purge keeps them in the archive, bytes intact);
//! a group that selects nothing is an error, not a silent success; a replay sends each saga's
//! dead letters in the order they were produced, whatever order they were dead-lettered in.

use std::collections::HashMap;

use chrono::{Duration as Span, Utc};
use serde_json::{Value, json};
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{CouponFailed, OrderCommand, OrderProcessingStarted};
use testkit::service::publish;

use super::summary::poison;
use super::system::{MONITOR, PRODUCT, System};
use super::{DEADLINE, dlq_depth, sagactl, sagactl_json, wait_dlq_depth};

/// The event ids of the product's dead letters, in queue order, with their bodies.
async fn dead_letters(s: &System) -> Vec<(String, String)> {
    let listing = sagactl_json(s, &["dlq", "list", "--queue", PRODUCT, "--json"]).await;
    listing[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let id = m["event_id"].as_str().unwrap().to_owned();
            (id, m["body"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn ids(report: &Value) -> Vec<String> {
    report["moved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The id of the summary's group of `event_type` whose class contains `class`.
fn group(summary: &Value, event_type: &str, class: &str) -> String {
    let groups = summary["groups"].as_array().unwrap();
    let found = groups
        .iter()
        .find(|g| g["event_type"] == event_type && g["class"].as_str().unwrap().contains(class));
    found.unwrap_or_else(|| panic!("no {event_type} group with {class}: {summary}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn replay_and_purge_by_group_move_exactly_that_group() {
    let mut s = System::start().await;
    // Three groups, interleaved: two kinds, and one kind failing in two ways.
    let numbered = |n: i64| json!({ "command": n });
    let mut starts = vec![poison::<OrderProcessingStarted>(&s, 801, numbered(1), 1).await];
    let failed = json!({ "command": "order 802" });
    let mut failures = vec![poison::<CouponFailed>(&s, 802, failed, 2).await];
    starts.push(poison::<OrderProcessingStarted>(&s, 803, numbered(2), 3).await);
    let failed = json!({ "command": "order 804" });
    failures.push(poison::<CouponFailed>(&s, 804, failed, 4).await);
    let other = poison::<OrderProcessingStarted>(&s, 805, json!({"not": "an order"}), 5).await;
    // Replayed copies stay queued for the test to read.
    s.apps.remove(PRODUCT).unwrap().stop().await;

    let summary = sagactl_json(&s, &["dlq", "summary", "--queue", PRODUCT, "--json"]).await;
    assert_eq!(summary["groups"].as_array().unwrap().len(), 3, "{summary}");
    let coupon_group = group(&summary, "CouponFailed", "");
    let start_group = group(&summary, "OrderProcessingStarted", "integer");
    let table = sagactl(&s, &["dlq", "summary", "--queue", PRODUCT], &[]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains(&coupon_group));

    let report = sagactl_json(&s, &["dlq", "replay", "--group", &coupon_group, "--json"]).await;
    assert_eq!(ids(&report), failures, "exactly the group, in order");
    let copies = s.amqp.take_from_consumer(PRODUCT, 2, DEADLINE).await;
    assert_eq!(copies.len(), 2);
    let again = sagactl(&s, &["dlq", "replay", "--group", &coupon_group], &[]).await;
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && said.contains("selects nothing to replay"),
        "a group handled already is an error: {said}"
    );
    let malformed = sagactl(&s, &["dlq", "replay", "--group", "rejected"], &[]).await;
    assert!(!malformed.status.success(), "not a group id");

    assert_purge_by_group_archives_exactly_it(&s, &start_group, &starts, other).await;
    s.stop().await;
}

/// `purge --group` (narrowed first, in a dry run) removes exactly the dead letters `starts` of
/// `start_group` into the archive, bytes intact, and leaves `other` in the queue.
async fn assert_purge_by_group_archives_exactly_it(
    s: &System,
    start_group: &str,
    starts: &[String],
    other: String,
) {
    let before: HashMap<String, String> = dead_letters(s).await.into_iter().collect();
    let combined = &["dlq", "replay", "--group", start_group, "--order-id", "803"];
    let dry = sagactl_json(s, &[&combined[..], &["--dry-run", "--json"]].concat()).await;
    assert_eq!(
        ids(&dry),
        vec![starts[1].clone()],
        "a group narrowed further"
    );
    let purge = &["dlq", "purge", "--group", start_group, "--yes", "--json"];
    let report = sagactl_json(s, purge).await;
    assert_eq!(ids(&report), starts);
    let left: Vec<String> = dead_letters(s)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        left,
        vec![other],
        "the dead-letter queue keeps the other groups"
    );

    let mut monitor = s.dbs[MONITOR].connect().await;
    for id in starts {
        let archived = archived_body(&mut monitor, id).await;
        assert_eq!(
            archived,
            before[id].as_bytes(),
            "byte for byte, still sealed"
        );
    }
    let listed = sagactl_json(s, &["dlq", "archive", "list", "--json"]).await;
    let mut listed: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["event_id"].as_str().unwrap(),
                a["group"].as_str().unwrap(),
            )
        })
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<(&str, &str)> =
        starts.iter().map(|id| (id.as_str(), start_group)).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
}

/// The archived body of `event_id`, as stored.
async fn archived_body(conn: &mut diesel_async::AsyncPgConnection, event_id: &str) -> Vec<u8> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Body {
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        body: Vec<u8>,
    }
    let rows: Vec<Body> = diesel::sql_query("SELECT body FROM dlq_archive WHERE event_id = $1")
        .bind::<diesel::sql_types::Text, _>(event_id)
        .load(conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one archive row for {event_id}");
    rows.into_iter().next().unwrap().body
}

/// Dead-letters an undecodable OrderProcessingStarted of `order`, produced `ago` before now,
/// as the `nth` message of the product's dead-letter queue.
async fn poison_produced(s: &System, order: i64, ago: Span, nth: u32) -> String {
    let started = OrderProcessingStarted {
        command: OrderCommand {
            order_id: order,
            user_id: 1,
            items: vec![],
            user_coupon_id: None,
        },
    };
    let mut envelope = Envelope::new(&started, Some(order)).unwrap();
    envelope.occurred_at = Utc::now() - ago;
    envelope.payload = json!({"not": "an order"});
    publish(&s.amqp, &envelope, OrderProcessingStarted::ROUTING_KEY).await;
    wait_dlq_depth(s, PRODUCT, nth).await;
    envelope.event_id.to_string()
}

#[tokio::test]
async fn a_replay_sends_each_sagas_dead_letters_in_the_order_they_were_produced() {
    let mut s = System::start().await;
    let minutes = Span::minutes;
    // Dead-lettered later step first: 901's third, first, second; 902's second, first.
    let third = poison_produced(&s, 901, minutes(1), 1).await;
    let other_second = poison_produced(&s, 902, minutes(2), 2).await;
    let first = poison_produced(&s, 901, minutes(3), 3).await;
    let other_first = poison_produced(&s, 902, minutes(4), 4).await;
    let second = poison_produced(&s, 901, minutes(2), 5).await;
    s.apps.remove(PRODUCT).unwrap().stop().await;

    let paced = sagactl_json(&s, &["dlq", "replay", "--all", "--rate", "50", "--json"]).await;
    assert_eq!(
        ids(&paced),
        [&first, &other_first, &second, &other_second, &third].map(String::clone),
        "each saga in the order produced, in the places its dead letters held"
    );
    assert_eq!(dlq_depth(&s, PRODUCT).await, 0);
    // One saga's copies share a partition, which is read in order.
    let copies = s.amqp.take_from_consumer(PRODUCT, 5, DEADLINE).await;
    let mut per_saga: HashMap<i64, Vec<String>> = HashMap::new();
    for copy in &copies {
        let letter = shared::dlq::message::parse("", &copy.properties, &copy.data);
        let saga = letter.saga_id.unwrap();
        per_saga.entry(saga).or_default().push(letter.event_id);
    }
    assert_eq!(per_saga[&901], [first, second, third]);
    assert_eq!(per_saga[&902], [other_first, other_second]);
    s.stop().await;
}
