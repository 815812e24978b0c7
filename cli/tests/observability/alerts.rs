//! The alerting rules in the real Prometheus: it loads prometheus/alerts.yml, evaluates every
//! rule without an error, and every metric a rule selects, with every label the rule matches
//! or groups by, is among what it scraped from the system, the relay and RabbitMQ. This is the
//! other half of tests/tests/deploy_alerts.rs, which finds the metrics in the code: here the
//! external ones (`up`, RabbitMQ's queue depths) and the labels are checked too.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use testkit::promql;

use crate::prometheus::{Prometheus, poll};

pub fn rule_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prometheus/alerts.yml")
}

/// The alerting rules Prometheus loaded, once each has been evaluated.
async fn evaluated_rules(prometheus: &Prometheus) -> Result<Vec<Value>, String> {
    let expected = std::fs::read_to_string(rule_file())
        .unwrap()
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:"))
        .count();
    poll(
        Duration::from_secs(20),
        "every alerting rule evaluated",
        || async {
            let body = prometheus.api("/api/v1/rules?type=alert").await?;
            let groups = body["data"]["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let rules: Vec<Value> = groups
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let evaluated = rules.iter().all(|rule| rule["health"] != "unknown");
            if rules.len() == expected && evaluated {
                Ok(rules)
            } else {
                Err(format!("{expected} rules expected: {body}"))
            }
        },
    )
    .await
}

/// What is wrong with the loaded rules: one line per rule that failed to evaluate, per metric
/// without a series, per label no series of its metric carries.
pub async fn alert_failures(prometheus: &Prometheus) -> Vec<String> {
    let rules = match evaluated_rules(prometheus).await {
        Ok(rules) => rules,
        Err(err) => return vec![format!("{err}\nprometheus log:\n{}", prometheus.log())],
    };
    let mut failures = Vec::new();
    for rule in rules {
        let name = rule["name"].as_str().unwrap_or_default();
        let expr = rule["query"].as_str().unwrap_or_default();
        if rule["health"] != "ok" {
            failures.push(format!("{name}: {}", rule["lastError"]));
        }
        let grouping = promql::grouping_labels(expr);
        for selector in promql::selectors(expr) {
            let metric = &selector.metric;
            let series = match prometheus
                .query(&format!("{{__name__=\"{metric}\"}}"))
                .await
            {
                Ok(body) => body["data"]["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                Err(err) => {
                    failures.push(format!("{name}: {metric}: {err}"));
                    continue;
                }
            };
            if series.is_empty() {
                failures.push(format!("{name}: no series of {metric}"));
                continue;
            }
            let carried: BTreeSet<&str> = series
                .iter()
                .filter_map(|s| s["metric"].as_object())
                .flat_map(|labels| labels.keys().map(String::as_str))
                .collect();
            let used = selector.matchers.iter().map(|(label, _, _)| label.as_str());
            for label in used.chain(grouping.iter().map(String::as_str)) {
                if !carried.contains(label) {
                    failures.push(format!("{name}: no series of {metric} has {label}"));
                }
            }
        }
    }
    failures
}
