//! The Grafana dashboards, held to what makes them usable in any Grafana and to the data a real
//! Prometheus scraped: the Prometheus comes from a `datasource` variable, never a fixed uid;
//! every selector is filtered by the `instance` variable (and by `service` where the dashboard
//! has one and the metric has the label); each variable's query lists values; and every panel
//! expression, its variables replaced as Grafana would with "All" chosen, returns data.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use testkit::promql;

use crate::prometheus::{Prometheus, poll};

pub const DASHBOARDS: [&str; 3] = ["saga-progress", "outbox-messaging", "services"];

/// What panels and variables name as their data source.
const DATASOURCE: &str = "${datasource}";

/// What `$__rate_interval` stands for here: Grafana makes it at least four scrape intervals; a
/// minute holds every sample of the run.
const RATE_INTERVAL: &str = "1m";

fn load(name: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../grafana/dashboards/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The dashboard's query variables (all but the data source).
fn query_variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .map(|list| list.iter().filter(|v| v["type"] == "query").collect())
        .unwrap_or_default()
}

/// Checks the data source variable and the filters, and that no `datasource` anywhere in the
/// dashboard names a fixed uid.
fn check_variables(name: &str, dashboard: &Value) {
    let list = dashboard["templating"]["list"].as_array().unwrap();
    let source = list.iter().find(|v| v["name"] == "datasource");
    let source = source.unwrap_or_else(|| panic!("{name}: no `datasource` variable"));
    assert_eq!(source["type"], "datasource", "{name}: datasource variable");
    assert_eq!(source["query"], "prometheus", "{name}: datasource variable");
    let variables = query_variables(dashboard);
    assert!(
        variables.iter().any(|v| v["name"] == "instance"),
        "{name}: no `instance` variable"
    );
    for variable in variables {
        let at = format!(
            "{name} / ${}",
            variable["name"].as_str().unwrap_or_default()
        );
        assert_eq!(variable["multi"], true, "{at}: multi-select");
        assert_eq!(variable["includeAll"], true, "{at}: All");
        assert_eq!(variable["allValue"], ".*", "{at}: All is every value");
    }
    no_fixed_datasource(name, dashboard);
}

fn no_fixed_datasource(at: &str, value: &Value) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                if key == "datasource" {
                    assert_eq!(
                        field["uid"], DATASOURCE,
                        "{at}: a fixed datasource: {field}"
                    );
                }
                no_fixed_datasource(&format!("{at} / {key}"), field);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| no_fixed_datasource(at, item)),
        _ => {}
    }
}

/// Every selector of `expr` is filtered by `$instance`; with a `service` variable, every one
/// of a metric with a `service` label by it or a fixed service, RabbitMQ's by its queue name.
fn check_filters(at: &str, expr: &str, has_service: bool) {
    let selectors = promql::selectors(expr);
    assert!(!selectors.is_empty(), "{at}: no selector in {expr}");
    for selector in selectors {
        let metric = &selector.metric;
        assert_eq!(
            selector.matcher("instance"),
            Some(("=~", "$instance")),
            "{at}: {metric} is not filtered by instance"
        );
        if !has_service || metric == "up" {
            continue;
        }
        if metric.starts_with("rabbitmq_") {
            let narrowed = selector
                .matchers
                .iter()
                .any(|(_, _, value)| value.contains("${service}"));
            assert!(narrowed, "{at}: {metric} is not narrowed by service");
        } else {
            let service = selector.matcher("service");
            assert!(
                matches!(service, Some(("=~", "$service")) | Some(("=", _))),
                "{at}: {metric} is not filtered by service: {service:?}"
            );
        }
    }
}

/// Checks the dashboard's structure; returns (panel title, expr) of every target.
fn dashboard_exprs(name: &str, dashboard: &Value) -> Vec<(String, String)> {
    for field in ["uid", "title"] {
        assert!(dashboard[field].is_string(), "{name}: no {field}");
    }
    check_variables(name, dashboard);
    let has_service = query_variables(dashboard)
        .iter()
        .any(|v| v["name"] == "service");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty(), "{name}: no panels");
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        let at = format!("{name} / {title:?}");
        assert!(!title.is_empty(), "{at}: no title");
        assert!(
            matches!(panel["type"].as_str(), Some("timeseries" | "stat")),
            "{at}: type"
        );
        assert!(
            panel["fieldConfig"]["defaults"]["unit"].is_string(),
            "{at}: unit"
        );
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{at}: description"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{at}: no targets");
        for target in targets {
            let expr = target["expr"].as_str().filter(|e| !e.is_empty());
            let expr = expr.expect("target without expr").to_owned();
            check_filters(&at, &expr, has_service);
            exprs.push((title.clone(), expr));
        }
    }
    exprs
}

/// `text` with the dashboard's variables replaced as Grafana does when "All" is chosen.
fn substitute(text: &str, dashboard: &Value) -> String {
    let mut text = text.replace("$__rate_interval", RATE_INTERVAL);
    for variable in query_variables(dashboard) {
        let name = variable["name"].as_str().unwrap();
        let all = variable["allValue"].as_str().unwrap();
        text = text
            .replace(&format!("${{{name}}}"), all)
            .replace(&format!("${name}"), all);
    }
    assert!(!text.contains('$'), "an unknown variable in {text}");
    text
}

/// Every expression of every dashboard that did not return data, and every variable whose
/// query lists nothing: `dashboard / panel: expr` with the last answer.
pub async fn dashboard_failures(prometheus: &Prometheus) -> Vec<String> {
    let mut failures = Vec::new();
    for name in DASHBOARDS {
        let dashboard = load(name);
        for (panel, expr) in dashboard_exprs(name, &dashboard) {
            let query = substitute(&expr, &dashboard);
            let checked = poll(Duration::from_secs(20), &query, || async {
                let body = prometheus.query(&query).await?;
                match (body["status"].as_str(), body["data"]["result"].as_array()) {
                    (Some("success"), Some(result)) if !result.is_empty() => Ok(()),
                    _ => Err(body.to_string()),
                }
            })
            .await;
            if let Err(err) = checked {
                failures.push(format!("{name} / {panel:?}: {query}\n    {err}"));
            }
        }
        failures.extend(variable_failures(prometheus, name, &dashboard).await);
    }
    failures
}

/// Each query variable's `label_values(selector, label)` lists values.
async fn variable_failures(prometheus: &Prometheus, name: &str, dashboard: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    for variable in query_variables(dashboard) {
        let query = variable["query"].as_str().unwrap_or_default();
        let at = format!(
            "{name} / ${}: {query}",
            variable["name"].as_str().unwrap_or_default()
        );
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{at}: not label_values(selector, label)"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let selector = substitute(selector.trim(), dashboard);
        let listed = poll(Duration::from_secs(20), &at, || async {
            let values = prometheus.label_values(&selector, label.trim()).await?;
            (!values.is_empty()).then_some(()).ok_or("no values".into())
        })
        .await;
        if let Err(err) = listed {
            failures.push(format!("{at}\n    {err}"));
        }
    }
    failures
}
