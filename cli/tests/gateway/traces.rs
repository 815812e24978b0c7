//! The spans of one saga as a tracing backend gets them: the real `sagactl up` (every service
//! and the relay) exports over OTLP/HTTP to a collector this test runs, with a batch delay
//! longer than the test, so nothing leaves before SIGTERM; once the process has exited, the
//! collector must hold the saga as one tree rooted in its `POST /orders` server span, each
//! consumer span a child of the span that created its event, each relay publish span linked
//! to it, and no span whose parent is missing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use testkit::clients::{Api, OrderClient};
use testkit::eventually_async;
use testkit::otlp::{Collector, ExportedSpan, SpanKind};

use super::up::Up;
use crate::system::{MONITOR, ORDER};

/// A completed order's events by routing key, each with the one consumer that takes the saga
/// forward (the monitor takes every event besides).
const FORWARD: [(&str, &str); 5] = [
    ("order.processing-started", "product"),
    ("stock.processed", "coupon"),
    ("coupon.processed", "balance"),
    ("balance.processed", "order"),
    ("order.completed", "monitor"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_is_exported_as_one_tree_from_its_request_and_flushed_when_the_process_stops() {
    let collector = Collector::start(None).await;
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", collector.port),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut up = Up::start(&["--no-gateway", "--seed"], &env).await;
    up.wait_printed("seeded:", Duration::from_secs(30)).await;
    let api = |name| {
        Api::new(
            format!("http://127.0.0.1:{}", up.port(name)),
            reqwest::Client::new(),
        )
    };

    // Seeded: product 1, user 1 with money and user coupon 1.
    let orders = OrderClient::new(api(ORDER));
    let order = orders.place(1, &[(1, 2)], Some(1)).await;
    assert_eq!(orders.wait_terminal(order).await["status"], "COMPLETED");
    let trace_id = monitored_trace(&api(MONITOR), order).await;
    assert!(
        collector.bodies.lock().unwrap().is_empty(),
        "spans left before shutdown: this test would not show that they are flushed"
    );

    let status = up.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{}", up.stderr());
    let spans = collector.spans();
    assert_no_orphans(&spans);
    let saga: Vec<&ExportedSpan> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let roots: Vec<&&ExportedSpan> = saga.iter().filter(|s| s.parent_span_id.is_none()).collect();
    assert_eq!(roots.len(), 1, "one root in the saga's trace: {roots:#?}");
    assert_server_span(roots[0], "POST", "/orders", "/orders", "202");
    assert_consumers_under_their_events(&saga);
    let created = assert_causal_chain(&saga, roots[0]);
    assert_published(&spans, &created);
    let read = format!("/orders/{order}");
    let poll = spans.iter().rfind(|s| s.name == "GET /orders/{id}");
    let poll = poll.expect("a server span of the long poll");
    assert_server_span(poll, "GET", "/orders/{id}", &read, "200");
}

/// The trace id the monitor recorded for every event of `order`, once all are in.
async fn monitored_trace(monitor: &Api, order: i64) -> String {
    let timeline = eventually_async(
        Duration::from_secs(20),
        "the saga's end at the monitor",
        || {
            let path = format!("/sagas/{order}");
            async move {
                let (status, body) = monitor.get(&path).await;
                let events = body["events"].as_array()?.len();
                (status == 200 && events == FORWARD.len()).then_some(body)
            }
        },
    )
    .await;
    let ids: HashSet<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "one trace per saga: {timeline}");
    ids.into_iter().next().unwrap().to_owned()
}

/// Every span that has a parent finds it among the exported spans, in its own trace; no span
/// id is exported twice.
fn assert_no_orphans(spans: &[ExportedSpan]) {
    let ids: HashMap<&str, &ExportedSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    assert_eq!(ids.len(), spans.len(), "span ids are unique");
    for span in spans {
        if let Some(parent) = &span.parent_span_id {
            let found = ids.get(parent.as_str());
            assert!(
                found.is_some_and(|p| p.trace_id == span.trace_id),
                "orphan: the parent of {span:#?} was not exported"
            );
        }
    }
}

/// An HTTP server span by the conventions: named by method and route pattern.
fn assert_server_span(span: &ExportedSpan, method: &str, route: &str, path: &str, status: &str) {
    assert_eq!(span.name, format!("{method} {route}"), "{span:#?}");
    assert_eq!(span.kind, SpanKind::Server, "{span:#?}");
    let expected = [
        ("http.request.method", method),
        ("http.route", route),
        ("url.path", path),
        ("url.scheme", "http"),
        ("http.response.status_code", status),
    ];
    for (key, value) in expected {
        assert_eq!(span.attribute(key), Some(value), "{key} of {span:#?}");
    }
    assert_eq!(span.service, "sagactl");
}

/// Every consumer span of the saga is a child of the `create` span of the event it handled.
fn assert_consumers_under_their_events(saga: &[&ExportedSpan]) {
    let ids: HashMap<&str, &ExportedSpan> = saga.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    for consumer in saga.iter().filter(|s| s.kind == SpanKind::Consumer) {
        let parent = ids[consumer.parent_span_id.as_deref().unwrap()];
        assert_eq!(parent.kind, SpanKind::Producer, "parent of {consumer:#?}");
        let message = "messaging.message.id";
        assert_eq!(parent.attribute(message), consumer.attribute(message));
    }
}

/// The children of `parent` among `spans`.
fn children<'a>(spans: &[&'a ExportedSpan], parent: &ExportedSpan) -> Vec<&'a ExportedSpan> {
    let id = Some(parent.span_id.as_str());
    spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref() == id)
        .copied()
        .collect()
}

/// Follows the saga from `root`: each step's `create` span a child of the span that handled the
/// previous event (the request first), its consumers' `process` spans its children. Returns
/// the `create` spans.
fn assert_causal_chain<'a>(
    saga: &[&'a ExportedSpan],
    root: &'a ExportedSpan,
) -> Vec<&'a ExportedSpan> {
    let mut parent = root;
    let mut created = Vec::new();
    for (routing_key, next) in FORWARD {
        let made: Vec<_> = children(saga, parent)
            .into_iter()
            .filter(|s| s.kind == SpanKind::Producer)
            .collect();
        assert_eq!(made.len(), 1, "one event made under {parent:#?}: {made:#?}");
        let create = made[0];
        assert_eq!(create.name, format!("create {routing_key}"), "{create:#?}");
        assert_messaging(create, "create", routing_key);
        let consumers = children(saga, create);
        let mut groups = HashSet::new();
        for consumer in &consumers {
            assert_eq!(consumer.kind, SpanKind::Consumer, "{consumer:#?}");
            assert_messaging(consumer, "process", routing_key);
            let exchange = consumer.attribute("messaging.destination.name").unwrap();
            assert!(exchange.ends_with(".events"), "{consumer:#?}");
            assert_eq!(consumer.name, format!("process {exchange}"));
            let message = consumer.attribute("messaging.message.id");
            assert_eq!(message, create.attribute("messaging.message.id"));
            let group = consumer.attribute("messaging.consumer.group.name").unwrap();
            groups.insert(group.rsplit('.').next().unwrap().to_owned());
        }
        let expected: HashSet<String> = [next, MONITOR].map(str::to_owned).into();
        assert_eq!(groups, expected, "the consumers of {routing_key}");
        parent = consumers
            .into_iter()
            .find(|s| {
                s.attribute("messaging.consumer.group.name")
                    .unwrap()
                    .ends_with(&format!(".{next}"))
            })
            .unwrap();
        created.push(create);
    }
    created
}

/// The messaging attributes of a span of `operation` on a message routed by `routing_key`.
fn assert_messaging(span: &ExportedSpan, operation: &str, routing_key: &str) {
    assert_eq!(span.attribute("messaging.system"), Some("rabbitmq"));
    assert_eq!(span.attribute("messaging.operation.type"), Some(operation));
    assert!(
        span.attribute("messaging.message.id").is_some(),
        "{span:#?}"
    );
    assert!(
        span.attribute("messaging.message.conversation_id")
            .is_some()
    );
    if operation == "create" {
        let key = span.attribute("messaging.rabbitmq.destination.routing_key");
        assert_eq!(key, Some(routing_key), "{span:#?}");
    }
    assert_ne!(span.status, 2, "an error status: {span:#?}");
}

/// Each event of `created` was published by the relay in a `publish` span of its own trace,
/// linked to the span that created it.
fn assert_published(spans: &[ExportedSpan], created: &[&ExportedSpan]) {
    for create in created {
        let link = (create.trace_id.clone(), create.span_id.clone());
        let publish = spans
            .iter()
            .find(|s| s.links.contains(&link))
            .unwrap_or_else(|| panic!("no span links to {create:#?}"));
        assert_eq!(publish.kind, SpanKind::Producer, "{publish:#?}");
        assert_eq!(publish.parent_span_id, None, "{publish:#?}");
        assert_messaging(publish, "send", "");
        assert_eq!(
            publish.attribute("messaging.operation.name"),
            Some("publish")
        );
        let exchange = publish.attribute("messaging.destination.name").unwrap();
        assert_eq!(publish.name, format!("publish {exchange}"));
        let message = publish.attribute("messaging.message.id");
        assert_eq!(message, create.attribute("messaging.message.id"));
        let key = "messaging.rabbitmq.destination.routing_key";
        assert_eq!(
            publish.attribute(key),
            create.attribute(key),
            "{publish:#?}"
        );
    }
}
