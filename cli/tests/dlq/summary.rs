//! `sagactl dlq summary` and `GET /admin/dlq/summary`: dead letters that failed the same way
//! form one group whatever their numbers and quoted values, with its count and first and last
//! seen; the filter applies; nothing moves.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{CouponFailed, OrderCommand, OrderProcessingStarted};
use testkit::service::publish;

use super::admin_api::{TOKEN, admin_app, get};
use super::system::{PRODUCT, System};
use super::{dlq_depth, sagactl, sagactl_json, wait_dlq_depth};

/// Publishes an `E` of `order` with `payload`, which does not decode, and waits until the
/// product service dead-lettered it as the `nth` message of its dead-letter queue: one at a
/// time, so that each dead letter is later than the one before.
pub(super) async fn poison<E: SagaEvent>(
    s: &System,
    order: i64,
    payload: Value,
    nth: u32,
) -> String {
    let started = OrderProcessingStarted {
        command: OrderCommand {
            order_id: order,
            user_id: 1,
            items: vec![],
            user_coupon_id: None,
        },
    };
    let mut envelope = Envelope::new(&started, Some(order)).unwrap();
    envelope.event_type = E::TYPE.to_owned();
    envelope.schema_version = E::SCHEMA_VERSION;
    envelope.payload = payload;
    publish(&s.amqp, &envelope, E::ROUTING_KEY).await;
    wait_dlq_depth(s, PRODUCT, nth).await;
    envelope.event_id.to_string()
}

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// Checks that `group` holds exactly the dead letters `ids` (in dead-lettering order), seen
/// first and last when the first and the last of them were dead-lettered (`times`).
fn assert_group(group: &Value, event_type: &str, ids: &[String], times: &HashMap<&str, Value>) {
    assert_eq!(group["event_type"], event_type, "{group}");
    assert_eq!(group["count"], ids.len(), "{group}");
    assert!(
        group["queue"].as_str().unwrap().ends_with(".product.dlq"),
        "{group}"
    );
    let class = group["class"].as_str().unwrap();
    assert!(
        class.starts_with("rejected: payload does not decode")
            && !class.contains(|c: char| c.is_ascii_digit()),
        "the reason and the error without its volatile values: {group}"
    );
    assert_eq!(at(&group["first_seen"]), at(&times[ids[0].as_str()]));
    assert_eq!(
        at(&group["last_seen"]),
        at(&times[ids.last().unwrap().as_str()])
    );
    assert_eq!(
        group["examples"],
        json!(ids),
        "the first ones, in queue order"
    );
}

#[tokio::test]
async fn a_summary_groups_dead_letters_that_failed_alike_whatever_their_numbers() {
    let s = System::start().await;
    // Two kinds, interleaved: an OrderProcessingStarted whose command is a number (another
    // each time) and a CouponFailed whose command is a string naming its order.
    let started = |n: i64| json!({ "command": n });
    let failed = |order: i64| json!({ "command": format!("order {order} of user {}", order * 7) });
    let mut starts = vec![poison::<OrderProcessingStarted>(&s, 701, started(17), 1).await];
    let mut failures = vec![poison::<CouponFailed>(&s, 702, failed(702), 2).await];
    starts.push(poison::<OrderProcessingStarted>(&s, 703, started(42), 3).await);
    failures.push(poison::<CouponFailed>(&s, 704, failed(704), 4).await);
    starts.push(poison::<OrderProcessingStarted>(&s, 705, started(123_456), 5).await);

    let listing = sagactl_json(&s, &["dlq", "list", "--queue", PRODUCT, "--json"]).await;
    let times: HashMap<&str, Value> = listing[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["event_id"].as_str().unwrap(),
                m["dead_lettered_at"].clone(),
            )
        })
        .collect();
    let summary = sagactl_json(&s, &["dlq", "summary", "--queue", PRODUCT, "--json"]).await;
    assert_eq!(
        (&summary["depth"], &summary["matched"]),
        (&json!(5), &json!(5)),
        "{summary}"
    );
    let groups = summary["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{summary}");
    assert_group(&groups[0], "OrderProcessingStarted", &starts, &times);
    assert_group(&groups[1], "CouponFailed", &failures, &times);

    let filtered = sagactl_json(
        &s,
        &[
            "dlq",
            "summary",
            "--queue",
            PRODUCT,
            "--event-type",
            "CouponFailed",
            "--json",
        ],
    )
    .await;
    assert_eq!(filtered["matched"], 2, "{filtered}");
    assert_eq!(
        filtered["groups"],
        json!([groups[1]]),
        "a summary of the filtered set"
    );
    let table = sagactl(&s, &["dlq", "summary", "--queue", PRODUCT], &[]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("5 dead letter(s) matching in 2 group(s)") && table.contains("CouponFailed"),
        "{table}"
    );

    let app = admin_app(&s).await;
    assert_eq!(get(&app, "/admin/dlq/summary", None).await.0, 401);
    let (status, served) = get(&app, "/admin/dlq/summary", Some(TOKEN)).await;
    assert_eq!(
        (status, &served),
        (200, &summary),
        "the same summary, not a dead letter"
    );
    let query = "/admin/dlq/summary?event_type=CouponFailed";
    let (status, served) = get(&app, query, Some(TOKEN)).await;
    assert_eq!((status, &served), (200, &filtered));
    assert_eq!(dlq_depth(&s, PRODUCT).await, 5, "a summary moves nothing");
    app.stop().await;
    s.stop().await;
}
