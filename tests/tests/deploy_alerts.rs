//! The alerting, with the real tools and against the code: prometheus/alerts.yml passes
//! `promtool check rules` and its unit tests (`promtool test rules`), in which every alert both
//! fires and stays silent; every alert has a severity, a summary, a description and a runbook
//! section in docs/alerts.md, and uses only metrics that exist (a metric renamed in the code
//! fails here). prometheus/prometheus.yml loads the rules and sends to the compose file's
//! Alertmanager, whose configuration `amtool` accepts and which routes pages and tickets apart.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "deploy_support/mod.rs"]
#[allow(dead_code)] // shared with deploy.rs, which uses all of it
mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use deploy_support::*;
use serde_yaml::Value;
use testkit::promql;

const RULES: &str = "prometheus/alerts.yml";
const RULE_TESTS: &str = "prometheus/alerts.test.yml";
const RUNBOOK: &str = "docs/alerts.md";
const ALERTMANAGER_CONFIG: &str = "deploy/alertmanager/alertmanager.yml";

/// The alerts issue 14 asks for: dead letters, outbox age, stuck sagas, saga timeouts, relay
/// errors, consumer retries, a target down, saga failure ratio.
const ALERTS: [&str; 8] = [
    "DeadLettersPresent",
    "OutboxOldestAgeHigh",
    "SagasStuck",
    "SagaTimeoutsRising",
    "RelayErrors",
    "ConsumerRetryStorm",
    "TargetDown",
    "SagaFailureRatioRising",
];

/// Metrics this code base does not export, and where they come from. cli/tests/observability.rs
/// finds them (and every other metric of the rules) in a real Prometheus scraping RabbitMQ.
const EXTERNAL: [(&str, &str); 2] = [
    ("up", "Prometheus, one per scrape target"),
    (
        "rabbitmq_detailed_queue_messages",
        "RabbitMQ's rabbitmq_prometheus plugin, /metrics/detailed?family=queue_coarse_metrics",
    ),
];

/// Runs `program` (a Debian package's binary: `scripts/test.sh` installs it) in the repository;
/// its stdout, or a panic with everything it said.
fn run(program: &str, args: &[&str], package: &str) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run {program} ({err}): apt-get install {package} (scripts/test.sh does)")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{said}",
        args.join(" "),
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every alerting rule of alerts.yml by name.
fn alerts() -> BTreeMap<String, Value> {
    let rules = yaml(RULES);
    let mut alerts = BTreeMap::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            if let Some(name) = rule["alert"].as_str() {
                let twice = alerts.insert(name.to_owned(), rule.clone());
                assert!(twice.is_none(), "{name} is defined twice");
            }
        }
    }
    alerts
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn promtool_accepts_the_rules_and_the_configuration_and_the_unit_tests_pass() {
    let checked = run("promtool", &["check", "rules", RULES], "prometheus");
    assert!(
        checked.contains(&format!("{} rules found", ALERTS.len())),
        "{checked}"
    );
    run("promtool", &["test", "rules", RULE_TESTS], "prometheus");
    // Also reads the rule files prometheus.yml names, from where the container will.
    run(
        "promtool",
        &["check", "config", "prometheus/prometheus.yml"],
        "prometheus",
    );
}

#[test]
fn every_alert_asked_for_is_defined_with_severity_summary_description_and_runbook() {
    let alerts = alerts();
    let names: BTreeSet<&str> = alerts.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(ALERTS));
    let runbook = read(RUNBOOK);
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(anchor)
        .collect();
    for (name, rule) in &alerts {
        let pending = rule["for"].as_str().unwrap_or("0s");
        assert!(
            !pending
                .trim_start_matches('0')
                .trim_end_matches(['s', 'm', 'h'])
                .is_empty(),
            "{name} has no `for`: one bad scrape would fire it"
        );
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("page" | "ticket")),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name} has no {annotation}");
        }
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let expected = format!("{RUNBOOK}#{}", name.to_lowercase());
        assert_eq!(url, expected, "{name}: runbook_url");
        assert!(
            anchors.contains(&name.to_lowercase()),
            "{RUNBOOK} has no section `## {name}`: {anchors:?}"
        );
    }
}

#[test]
fn every_alert_fires_in_a_unit_test_and_stays_silent_in_another() {
    let tests = yaml(RULE_TESTS);
    assert_eq!(strings(&tests["rule_files"]), ["alerts.yml"]);
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for group in tests["tests"].as_sequence().unwrap() {
        for case in group["alert_rule_test"].as_sequence().unwrap() {
            let name = text(&case["alertname"]);
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected == 0 {
                silent.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    let alerts: BTreeSet<String> = alerts().into_keys().collect();
    assert_eq!(fires, alerts, "alerts with a case that fires them");
    assert_eq!(silent, alerts, "alerts with a case that keeps them silent");
}

/// The string literals of every Rust file under `dir`.
fn rust_literals(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() && entry.file_name() != "target" {
            rust_literals(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            found.extend(source.split('"').skip(1).step_by(2).map(str::to_owned));
        }
    }
}

#[test]
fn every_metric_an_alert_uses_is_exported_by_the_code_or_named_as_external() {
    // The exporting code, not its tests: a metric only a test mentions does not exist.
    let mut literals = BTreeSet::new();
    for dir in ["shared/src", "outbox-relay/src"] {
        rust_literals(&root().join(dir), &mut literals);
    }
    for service in std::fs::read_dir(root().join("services"))
        .unwrap()
        .flatten()
    {
        rust_literals(&service.path().join("src"), &mut literals);
    }
    let external: BTreeMap<&str, &str> = EXTERNAL.into_iter().collect();
    let mut used = BTreeSet::new();
    for (name, rule) in alerts() {
        let expr = text(&rule["expr"]);
        let selectors = promql::selectors(&expr);
        assert!(!selectors.is_empty(), "{name}: no selector in {expr}");
        for selector in selectors {
            let metric = selector.metric.clone();
            assert!(!metric.is_empty(), "{name}: a selector without a name");
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| metric.strip_suffix(suffix))
                .unwrap_or(&metric);
            assert!(
                literals.contains(&metric)
                    || literals.contains(base)
                    || external.contains_key(metric.as_str()),
                "{name} uses {metric}, which no code exports (renamed?)"
            );
            used.insert(metric);
        }
    }
    for (metric, from) in EXTERNAL {
        assert!(
            used.contains(metric),
            "{metric} ({from}) is used by no alert"
        );
    }
    // The queue depths exist only on the detailed endpoint with this family.
    let config = yaml("prometheus/prometheus.yml");
    let jobs = config["scrape_configs"].as_sequence().unwrap();
    let scraped = jobs.iter().any(|job| {
        job["metrics_path"].as_str() == Some("/metrics/detailed")
            && strings(&job["params"]["family"]).contains(&"queue_coarse_metrics".to_owned())
    });
    assert!(scraped, "no job scrapes RabbitMQ's queue_coarse_metrics");
}

#[test]
fn prometheus_loads_the_mounted_rules_and_sends_alerts_to_the_compose_alertmanager() {
    let services = services();
    let config = yaml("prometheus/prometheus.yml");
    let rule_files = strings(&config["rule_files"]);
    assert_eq!(rule_files, ["alerts.yml"], "prometheus.yml rule_files");
    // Relative paths in prometheus.yml are relative to it, in the container too.
    let prometheus = mounts(&services["prometheus"]);
    let config_target = prometheus
        .iter()
        .find(|(source, _)| source == "./prometheus/prometheus.yml")
        .map(|(_, target)| target.clone())
        .expect("prometheus.yml is not mounted");
    let config_dir = Path::new(&config_target).parent().unwrap();
    for file in &rule_files {
        let mount = (
            format!("./prometheus/{file}"),
            config_dir.join(file).display().to_string(),
        );
        assert!(
            prometheus.contains(&mount),
            "{mount:?} not in {prometheus:?}"
        );
        assert!(
            root().join(&mount.0[2..]).is_file(),
            "{} is missing",
            mount.0
        );
    }
    let managers = config["alerting"]["alertmanagers"].as_sequence().unwrap();
    let targets: Vec<String> = managers
        .iter()
        .flat_map(|m| m["static_configs"].as_sequence().unwrap().clone())
        .flat_map(|s| strings(&s["targets"]))
        .collect();
    assert_eq!(targets, ["alertmanager:9093"]);
    let alertmanager = &services["alertmanager"];
    assert!(
        text(&alertmanager["image"]).starts_with("prom/alertmanager:v"),
        "a pinned prom/alertmanager image"
    );
    assert!(strings(&alertmanager["ports"]).contains(&"9093:9093".to_owned()));
    let flags = strings(&alertmanager["command"]);
    let config_file = flags
        .iter()
        .find_map(|flag| flag.strip_prefix("--config.file="))
        .expect("alertmanager's command names no --config.file");
    let mount = (format!("./{ALERTMANAGER_CONFIG}"), config_file.to_owned());
    assert!(
        mounts(alertmanager).contains(&mount),
        "{mount:?} is not mounted"
    );
}

#[test]
fn alertmanager_accepts_its_configuration_and_routes_each_severity_to_its_receiver() {
    run(
        "amtool",
        &["check-config", ALERTMANAGER_CONFIG],
        "prometheus-alertmanager",
    );
    let config = yaml(ALERTMANAGER_CONFIG);
    let receivers: BTreeSet<String> = config["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| text(&r["name"]))
        .collect();
    let severities: BTreeSet<String> = alerts()
        .values()
        .map(|rule| text(&rule["labels"]["severity"]))
        .collect();
    for severity in &severities {
        let file = format!("--config.file={ALERTMANAGER_CONFIG}");
        let label = format!("severity={severity}");
        let routed = run(
            "amtool",
            &["config", "routes", "test", &file, &label],
            "prometheus-alertmanager",
        );
        assert_eq!(routed.trim(), severity, "where {label} goes");
        assert!(receivers.contains(severity), "{receivers:?}");
    }
}
