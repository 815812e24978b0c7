//! The OpenAPI contract against the running services: each serves the document its code
//! makes, answers every documented operation with a documented status, and refuses every other
//! method on a documented path with a 405 naming the documented ones. A route missing from a
//! document, or a documented path a service does not answer, fails here.

use std::num::NonZeroU32;

use crate::system::{MONITOR, SERVICES, System};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::service::TestApp;

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

const ADMIN_TOKEN: &str = "contract-test-admin-token-0123456789";

fn document_of(name: &str) -> Value {
    serde_json::to_value(match name {
        crate::system::ORDER => order_service::openapi(),
        crate::system::PRODUCT => product_service::openapi(),
        crate::system::COUPON => coupon_service::openapi(),
        crate::system::BALANCE => balance_service::openapi(),
        _ => monitor_service::openapi(),
    })
    .unwrap()
}

/// `path` with each `{parameter}` set to 1.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The document `app` serves.
async fn served_document(app: &TestApp) -> Value {
    let response = app.client.get(format!("{}/openapi.json", app.base_url));
    response.send().await.unwrap().json().await.unwrap()
}

/// Probes every method on every path of `document` at `app`.
async fn probe(app: &TestApp, document: &Value, token: Option<&str>) {
    for (path, item) in document["paths"].as_object().unwrap() {
        let url = format!("{}{}", app.base_url, concrete(path));
        let documented: Vec<&str> = METHODS
            .iter()
            .map(Method::as_str)
            .filter(|method| item.get(method.to_lowercase()).is_some())
            .collect();
        assert!(!documented.is_empty(), "{path} documents no operation");
        for method in METHODS {
            let mut request = app.client.request(method.clone(), &url).json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let allow = response
                .headers()
                .get("allow")
                .map(|value| value.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let what = format!("{method} {path} answered {status} {body}");
            if documented.contains(&method.as_str()) {
                let router_refused = status == 405
                    || (status == 404
                        && body["error"]["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("no route for")));
                assert!(!router_refused, "documented but not routed: {what}");
                let responses = &item[method.as_str().to_lowercase()]["responses"];
                assert!(
                    responses.get(status.as_str()).is_some(),
                    "an undocumented status: {what}"
                );
            } else {
                assert_eq!(status, 405, "undocumented but answered: {what}");
                let mut allowed: Vec<&str> = allow.as_deref().unwrap_or("").split(", ").collect();
                allowed.sort_unstable();
                let mut expected = documented.clone();
                expected.sort_unstable();
                assert_eq!(allowed, expected, "the Allow header: {what}");
                assert_eq!(body["error"]["code"], "method_not_allowed", "{what}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_answers_exactly_its_documented_operations() {
    let system = System::start().await;
    for name in SERVICES {
        let app = system.app(name);
        let served = served_document(app).await;
        let document = document_of(name);
        assert_eq!(served, document, "{name} serves another document");
        assert_eq!(served["openapi"], "3.1.0");
        probe(app, &served, None).await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_documents_its_admin_api_when_it_is_on() {
    let system = System::start().await;
    let settings = testkit::service::service_settings(MONITOR, &system.dbs[MONITOR], &system.amqp);
    let args = monitor_service::admin::AdminArgs {
        token: Some(ADMIN_TOKEN.to_owned()),
        consumers: "order".to_owned(),
        purge_dir: Some(std::env::temp_dir()),
        rate_limit: NonZeroU32::new(10_000).unwrap(),
        amqp_url: None,
    };
    let admin = monitor_service::admin::AdminSettings::from_args(args, &settings.amqp);
    let app = TestApp::start(
        monitor_service::build_with_admin(&settings, admin)
            .await
            .unwrap(),
    );
    let served = served_document(&app).await;
    let admin_paths: Vec<&String> = served["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|path| path.starts_with("/admin"))
        .collect();
    assert_eq!(admin_paths.len(), 7, "{admin_paths:?}");
    assert_eq!(
        served["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    probe(&app, &served, Some(ADMIN_TOKEN)).await;
    app.stop().await;
    system.stop().await;
}
