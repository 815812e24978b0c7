//! The API gateway: the real nginx binary, configured by `sagactl gateway config`, in front of
//! real services (or of fake upstreams that refuse or never answer): every public route
//! reaches its service, requests spread over instances, operator endpoints are refused, and
//! every error the gateway makes itself is JSON (413, 429, 502, 504).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;
// `sagactl up` with its gateway, and the spans it exports: in this binary, which links the
// whole system once.
mod gateway {
    mod traces;
    mod up;
}

use std::collections::HashSet;

use serde_json::{Value, json};
use system::gateway::Gateway;
use system::process::free_port;
use system::{BALANCE, COUPON, MONITOR, ORDER, PRODUCT, System};
use testkit::clients::{BalanceClient, CouponClient, OrderClient, ProductClient};
use tokio::net::TcpListener;

/// A status and JSON body from a raw request, with the response headers.
async fn send(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_route_reaches_its_service_over_its_instances_and_operator_routes_do_not() {
    let mut s = System::start().await;
    s.add_instances(1).await;
    let gateway = Gateway::before(&s, &[]).await;
    let api = gateway.api();

    let product = ProductClient::new(api.clone())
        .create_product("door", "10.00", 100)
        .await;
    BalanceClient::new(api.clone()).charge(7, "100.00").await;
    let coupons = CouponClient::new(api.clone());
    let user_coupon = coupons.coupon_for(7, "FIXED", "1.00").await;
    assert_eq!(coupons.user_coupon(user_coupon).await["user_id"], 7);
    let owned = api.get_ok("/users/7/coupons").await;
    assert!(
        owned.to_string().contains(&user_coupon.to_string()),
        "{owned}"
    );
    let orders = OrderClient::new(api.clone());
    let mut placed = Vec::new();
    for _ in 0..4 {
        let id = orders.place(7, &[(product, 1)], None).await;
        assert_eq!(orders.wait_terminal(id).await["status"], "COMPLETED");
        placed.push(id);
    }
    assert_eq!(BalanceClient::new(api.clone()).balance(7).await, "60.00");
    let timeline = api.get_ok(&format!("/sagas/{}", placed[0])).await;
    assert!(
        timeline.to_string().contains("OrderCompleted"),
        "{timeline}"
    );
    // The same product, straight from the product service: the gateway reached it.
    let direct = ProductClient::new(s.app(PRODUCT)).product(product).await;
    assert_eq!(direct["name"], "door");

    for path in ["/admin/dlq", "/metrics", "/health", "/ready", "/nope"] {
        let (status, _, body) = send(gateway.client.get(format!("{}{path}", gateway.url))).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (_, headers, _) = send(gateway.client.get(format!("{}/products", gateway.url))).await;
    let generated = headers["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 32, "{generated}");
    let (_, headers, _) = send(
        gateway
            .client
            .get(format!("{}/products", gateway.url))
            .header("X-Request-Id", "mine-1")
            .header("traceparent", CLIENT_TRACE),
    )
    .await;
    assert_eq!(headers["x-request-id"], "mine-1");

    let log = gateway.log();
    let order_instances: HashSet<&str> = log
        .iter()
        .filter(|entry| {
            entry["uri"]
                .as_str()
                .is_some_and(|uri| uri.starts_with("/orders"))
        })
        .filter_map(|entry| entry["upstream"].as_str())
        .collect();
    assert_eq!(
        order_instances.len(),
        2,
        "both order instances used: {order_instances:?}"
    );
    assert_trace_context_passed_on_not_made_up(&log, "mine-1");
    s.stop().await;
}

/// The request `traced_id` sent [`CLIENT_TRACE`]: the log (which shows what was passed on) has
/// it, and no other request got a trace context made up.
fn assert_trace_context_passed_on_not_made_up(log: &[serde_json::Value], traced_id: &str) {
    let traced = log
        .iter()
        .find(|entry| entry["request_id"] == traced_id)
        .expect("the traced request logged");
    assert_eq!(traced["traceparent"], CLIENT_TRACE);
    assert!(
        log.iter()
            .filter(|entry| entry["request_id"] != traced_id)
            .all(|entry| entry["traceparent"] == ""),
        "no trace context made up"
    );
}

const CLIENT_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Every upstream a fake: a port that refuses, and one that accepts and never answers.
async fn fakes() -> ([(&'static str, String); 5], TcpListener) {
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_at = hung.local_addr().unwrap().to_string();
    let refused = format!("127.0.0.1:{}", free_port());
    let upstreams = [
        (ORDER, refused.clone()),
        (PRODUCT, hung_at),
        (COUPON, refused.clone()),
        (BALANCE, refused.clone()),
        (MONITOR, refused),
    ];
    (upstreams, hung)
}

#[tokio::test]
async fn what_the_gateway_answers_itself_is_json_413_429_502_504() {
    let (upstreams, _hung) = fakes().await;
    let settings = [
        ("GATEWAY_TIMEOUT", "500ms"),
        ("GATEWAY_BODY_LIMIT", "1k"),
        ("GATEWAY_RATE_LIMIT", "1000"),
    ];
    let gateway = Gateway::start(upstreams, &settings).await;
    let url = |path: &str| format!("{}{path}", gateway.url);

    let (status, _, body) = send(gateway.client.get(url("/products"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
    let (status, _, body) = send(gateway.client.get(url("/coupons/1"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_unavailable"))
    );
    let big = json!({ "name": "x".repeat(2048) });
    let (status, _, body) = send(gateway.client.post(url("/coupons")).json(&big)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    let strict = Gateway::start(
        fakes().await.0,
        &[("GATEWAY_RATE_LIMIT", "1"), ("GATEWAY_BURST", "1")],
    )
    .await;
    let mut limited = None;
    for _ in 0..10 {
        let (status, headers, body) =
            send(strict.client.get(format!("{}/orders/1", strict.url))).await;
        if status == 429 {
            limited = Some((headers, body));
            break;
        }
    }
    let (headers, body) = limited.expect("a 429 within 10 requests at 1/s");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_nginx_refuses_before_any_route_is_the_error_object_too() {
    let (upstreams, _hung) = fakes().await;
    let gateway = Gateway::start(upstreams, &[]).await;
    let url = |path: &str| format!("{}{path}", gateway.url);
    let (status, headers, body) = send(gateway.client.post(url("/docs"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{headers:?}"
    );
    let long = format!("/products?q={}", "x".repeat(20_000));
    let (status, headers, body) = send(gateway.client.get(url(&long))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (414, Some("request_too_long")),
        "{headers:?}"
    );
    let huge_header = "y".repeat(20_000);
    let (status, _, body) = send(
        gateway
            .client
            .get(url("/products"))
            .header("X-Big", &huge_header),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "request_too_long", "{body}");
    // Not HTTP at all: the 400 is still the error object.
    let address = gateway.url.trim_start_matches("http://").to_owned();
    let raw = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.write_all(b"GARBAGE\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains(r#"{"error":{"code":"bad_request""#), "{raw}");
}
