//! The monitor's admin API: off without a token, a 401 without the right one, and behind it the
//! same dead-letter operations as `sagactl dlq` (filters, the guard, the audit trail).

use serde_json::{Value, json};
use testkit::service::{TestApp, service_settings};

use super::system::{MONITOR, PRODUCT, System};
use super::{audit_rows, dlq_depth, poison_product};

pub(super) const TOKEN: &str = "s3cret-token";
/// Admin requests per minute the test's admin API allows each client.
const RATE_LIMIT: u32 = 40;

/// A second monitor on the system's monitor database, its admin API on for the product's dead
/// letters.
pub(super) async fn admin_app(s: &System) -> TestApp {
    let admin = monitor_service::admin::AdminSettings {
        token: monitor_service::admin::AdminToken::new(TOKEN.into()).unwrap(),
        rate_limit: monitor_service::admin::RateLimit::per_minute(RATE_LIMIT.try_into().unwrap()),
        amqp: s.amqp.settings(),
        consumers: vec![PRODUCT.into()],
        purge_dir: std::env::temp_dir(),
        keys: None,
    };
    let settings = service_settings(MONITOR, &s.dbs[MONITOR], &s.amqp);
    let app = TestApp::start(
        monitor_service::build_with_admin(&settings, Some(admin))
            .await
            .unwrap(),
    );
    app.wait_ready().await;
    app
}

/// The status and JSON body (null when there is none) of `request`.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json::<Value>().await.unwrap_or(Value::Null),
    )
}

/// GET `path` with `token`, or without an `Authorization` header.
pub(super) async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let request = app.client.get(app.url(path));
    answer(match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    })
    .await
}

/// POST `body` to `/admin/dlq/{route}` with the right token.
pub(super) async fn post(app: &TestApp, route: &str, body: Value) -> (u16, Value) {
    let request = app.client.post(app.url(&format!("/admin/dlq/{route}")));
    answer(request.bearer_auth(TOKEN).json(&body)).await
}

/// The status and the field a refused `body` names.
async fn refusal(app: &TestApp, route: &str, body: Value) -> (u16, Option<String>) {
    let (status, body) = post(app, route, body).await;
    (status, body["error"]["field"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn the_admin_api_wants_its_bearer_token() {
    let mut s = System::start().await;
    poison_product(&mut s, &[401]).await;
    assert_eq!(
        s.app(MONITOR).get("/admin/dlq").await.0,
        404,
        "no token configured: the admin API is off"
    );

    let app = admin_app(&s).await;
    let (status, body) = get(&app, "/admin/dlq", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(get(&app, "/admin/dlq", Some("wrong")).await.0, 401);
    let (status, body) = get(&app, "/admin/dlq", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let letter = &body["queues"][0]["messages"][0];
    assert_eq!(letter["saga_id"], 401);
    assert_eq!(letter["sealed_by"], "order/order-dev", "{letter}");
    assert_eq!(letter["payload"], json!({"not": "an order"}), "decrypted");
    let lowercase = app.client.get(app.url("/admin/dlq"));
    let lowercase = lowercase.header("authorization", format!("bearer {TOKEN}"));
    assert_eq!(
        answer(lowercase).await.0,
        200,
        "the scheme is case-insensitive"
    );
    let filter = "/admin/dlq?queue=product&order_id=999&reason=rejected";
    let (_, filtered) = get(&app, filter, Some(TOKEN)).await;
    assert_eq!(filtered["queues"][0]["depth"], 1, "{filtered}");
    assert_eq!(
        filtered["queues"][0]["messages"],
        json!([]),
        "order 999 matches nothing"
    );

    assert_bad_operations_are_refused(&app).await;
    assert_eq!(
        dlq_depth(&s, PRODUCT).await,
        1,
        "the refused purge removed nothing"
    );
    let (status, dry) = post(&app, "replay", json!({"all": true, "dry_run": true})).await;
    assert_eq!((status, &dry["matched"]), (200, &json!(1)), "{dry}");
    assert_eq!(dlq_depth(&s, PRODUCT).await, 1);
    assert_eq!(
        (
            audit_rows(&s, "replay").await,
            audit_rows(&s, "purge").await
        ),
        (1, 0),
        "the dry run is audited, refusals are not"
    );
    assert_guessing_is_rate_limited(&app).await;
    app.stop().await;
    s.stop().await;
}

/// Past `RATE_LIMIT` requests a minute, the client gets a JSON 429 with Retry-After, even with
/// the right token: a guesser cannot tell a right guess from a wrong one any more.
async fn assert_guessing_is_rate_limited(app: &TestApp) {
    let mut limited = None;
    for guess in 0..=RATE_LIMIT {
        let response = app
            .client
            .get(app.url("/admin/dlq"))
            .bearer_auth(format!("guess-{guess}"))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            401 => continue,
            429 => {
                limited = Some(response);
                break;
            }
            other => panic!("guess {guess}: {other}"),
        }
    }
    let response = limited.expect("a 429 within RATE_LIMIT + 1 requests");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    assert_eq!(get(app, "/admin/dlq", Some(TOKEN)).await.0, 429);
}

/// Each operation that cannot run is a 422 naming the body field to set.
async fn assert_bad_operations_are_refused(app: &TestApp) {
    assert_eq!(
        refusal(app, "replay", json!({})).await,
        (422, Some("all".into())),
        "an empty filter needs all=true"
    );
    assert_eq!(
        refusal(app, "replay", json!({"all": true, "rate": 0})).await,
        (422, Some("rate".into()))
    );
    assert_eq!(
        refusal(app, "purge", json!({"all": true})).await,
        (422, Some("confirm".into())),
        "a purge needs confirm=true"
    );
    assert_eq!(
        refusal(
            app,
            "purge",
            json!({"all": true, "confirm": true, "dry_run": true})
        )
        .await,
        (422, Some("dry_run".into())),
        "a purge is never taken for a dry run"
    );
}
