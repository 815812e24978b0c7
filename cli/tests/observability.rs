//! Observability end to end: the whole system runs a small batch of orders with mixed outcomes
//! while a real Prometheus scrapes every service, the relay and RabbitMQ's plugin; then every
//! expression of every Grafana dashboard must parse and return data, and the saga counters must
//! match the orders placed.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::shutdown::Shutdown;
use system::{SERVICES, System};
use tokio::process::{Child, Command};

const DASHBOARDS: [&str; 3] = ["saga-progress", "outbox-messaging", "services"];
const RABBITMQ_PROMETHEUS: &str = "127.0.0.1:15692";

/// A Prometheus child process on a free port with its own config and storage; killed on drop.
struct Prometheus {
    url: String,
    dir: PathBuf,
    child: Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// `jobs`: (job name, host:port, metrics path with its query string).
    fn start(jobs: &[(String, String, &str)]) -> Self {
        let binary = which("prometheus")
            .expect("the `prometheus` binary is not on PATH: `apt-get install -y prometheus`");
        let dir = std::env::temp_dir().join(format!("prometheus-{}", testkit::unique_suffix()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, address, path) in jobs {
            let (path, family) = path.split_once("?family=").unwrap_or((path, ""));
            config.push_str(&format!(
                "  - job_name: {job}\n    metrics_path: {path}\n    static_configs:\n      - targets: [\"{address}\"]\n"
            ));
            if !family.is_empty() {
                config.push_str(&format!("    params:\n      family: [{family}]\n"));
            }
        }
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    async fn api(&self, path: &str) -> Result<Value, String> {
        let response = reqwest::get(format!("{}{path}", self.url))
            .await
            .map_err(|err| format!("GET {path}: {err}"))?;
        response
            .json::<Value>()
            .await
            .map_err(|err| format!("GET {path}: {err}"))
    }

    /// `GET /api/v1/query`: the response body (status `success` or `error`).
    async fn query(&self, expr: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/query?query={}", encode(expr)))
            .await
    }

    /// Waits until every target is up and was last scraped at least `after`.
    async fn wait_scraped(&self, jobs: usize, after: DateTime<Utc>) {
        poll(
            Duration::from_secs(60),
            "every target up and scraped",
            || async {
                let body = self.api("/api/v1/targets").await?;
                let targets = body["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let ready = targets.iter().filter(|target| {
                    let scraped = target["lastScrape"]
                        .as_str()
                        .and_then(|at| DateTime::parse_from_rfc3339(at).ok());
                    target["health"] == "up" && scraped.is_some_and(|at| at >= after)
                });
                if targets.len() == jobs && ready.count() == jobs {
                    Ok(())
                } else {
                    Err(format!("targets: {targets:#?}"))
                }
            },
        )
        .await
        .unwrap_or_else(|err| panic!("{err}\nprometheus log:\n{}", self.log()));
    }
}

fn which(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|path| Path::new(path).is_file())
    })
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Re-checks `check` until it succeeds or `deadline` passes; then the last error.
async fn poll<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let until = Instant::now() + deadline;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= until => {
                return Err(format!(
                    "timed out after {deadline:?} waiting for {what}: {err}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Places orders with every outcome; returns how many were placed.
async fn run_orders(s: &System) -> usize {
    let keyboard = s.create_product("keyboard", "89.90", 10).await;
    let stand = s.create_product("stand", "39.50", 1).await;
    s.charge(21, "1000.00").await;
    s.charge(22, "10.00").await;
    let coupon = s.coupon_for(21, "FIXED", "5").await;
    let orders = [
        (s.place(21, &[(keyboard, 1)], None).await, "COMPLETED"),
        (
            s.place(21, &[(keyboard, 1)], Some(coupon)).await,
            "COMPLETED",
        ),
        (s.place(21, &[(stand, 2)], None).await, "FAILED"),
        (s.place(21, &[(keyboard, 1)], Some(999_999)).await, "FAILED"),
        (s.place(22, &[(keyboard, 1)], None).await, "FAILED"),
    ];
    for (id, status) in orders {
        assert_eq!(s.wait_terminal(id).await["status"], status, "order {id}");
    }
    let cancelled = s.place(21, &[(keyboard, 2)], None).await;
    assert_eq!(s.wait_terminal(cancelled).await["status"], "COMPLETED");
    s.orders().cancel(cancelled).await;
    assert_eq!(s.wait_terminal(cancelled).await["status"], "CANCELLED");
    s.assert_settled().await;
    orders.len() + 1
}

/// Checks the dashboard's structure; returns (panel title, expr) of every target.
fn dashboard_exprs(name: &str, dashboard: &Value) -> Vec<(String, String)> {
    for field in ["uid", "title"] {
        assert!(dashboard[field].is_string(), "{name}: no {field}");
    }
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
        assert_eq!(panel["datasource"]["uid"], "prometheus", "{at}: datasource");
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
            assert_eq!(
                target["datasource"]["uid"], "prometheus",
                "{at}: target datasource"
            );
            let expr = target["expr"].as_str().filter(|e| !e.is_empty());
            exprs.push((title.clone(), expr.expect("target without expr").to_owned()));
        }
    }
    exprs
}

/// The value of a single-series instant query, polled until it equals `expected`.
async fn assert_value(prometheus: &Prometheus, expr: &str, expected: f64) {
    poll(Duration::from_secs(20), expr, || async {
        let body = prometheus.query(expr).await?;
        let value = body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        (value == Some(expected))
            .then_some(())
            .ok_or(format!("got {body}"))
    })
    .await
    .unwrap();
}

/// What Prometheus scrapes: every service, the relay's metrics on `relay_port`, and RabbitMQ's
/// plugin (queue metrics only).
fn scrape_jobs(s: &System, relay_port: u16) -> Vec<(String, String, &'static str)> {
    let mut jobs: Vec<(String, String, &str)> = SERVICES
        .iter()
        .map(|name| {
            let address = s
                .app(name)
                .base_url
                .trim_start_matches("http://")
                .to_owned();
            (name.to_string(), address, "/metrics")
        })
        .collect();
    jobs.push((
        "relay".into(),
        format!("127.0.0.1:{relay_port}"),
        "/metrics",
    ));
    jobs.push((
        "rabbitmq".into(),
        RABBITMQ_PROMETHEUS.into(),
        "/metrics/detailed?family=queue_coarse_metrics",
    ));
    jobs
}

/// Every expression of every dashboard that did not return data: `dashboard / panel: expr`
/// with the last answer.
async fn dashboard_failures(prometheus: &Prometheus) -> Vec<String> {
    let mut failures = Vec::new();
    for name in DASHBOARDS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../grafana/dashboards/{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let dashboard: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (panel, expr) in dashboard_exprs(name, &dashboard) {
            let checked = poll(Duration::from_secs(20), &expr, || async {
                let body = prometheus.query(&expr).await?;
                match (body["status"].as_str(), body["data"]["result"].as_array()) {
                    (Some("success"), Some(result)) if !result.is_empty() => Ok(()),
                    _ => Err(body.to_string()),
                }
            })
            .await;
            if let Err(err) = checked {
                failures.push(format!("{name} / {panel:?}: {expr}\n    {err}"));
            }
        }
    }
    failures
}

/// One start per order; one end per terminal outcome, where the cancelled order ended twice:
/// completed first, cancelled after.
async fn assert_saga_counters(prometheus: &Prometheus, placed: usize) {
    assert_value(
        prometheus,
        r#"sum(saga_started_total{service="order"})"#,
        placed as f64,
    )
    .await;
    assert_value(
        prometheus,
        r#"sum(saga_finished_total{service="order"})"#,
        (placed + 1) as f64,
    )
    .await;
    for (outcome, count) in [("completed", 3.0), ("failed", 3.0), ("cancelled", 1.0)] {
        let expr = format!(r#"sum(saga_finished_total{{service="order",outcome="{outcome}"}})"#);
        assert_value(prometheus, &expr, count).await;
    }
    for reason in [
        "insufficient_stock",
        "coupon_not_found",
        "insufficient_balance",
    ] {
        let expr = format!(r#"sum(saga_finished_total{{service="order",reason="{reason}"}})"#);
        assert_value(prometheus, &expr, 1.0).await;
    }
}

#[tokio::test]
async fn every_dashboard_expression_returns_data_after_a_mixed_run() {
    let s = System::start().await;
    let (relay_trigger, relay_shutdown) = Shutdown::new();
    let (relay_port, relay_task) =
        outbox_relay::metrics::serve("127.0.0.1", 0, relay_shutdown).unwrap();
    let jobs = scrape_jobs(&s, relay_port);
    let prometheus = Prometheus::start(&jobs);

    let placed = run_orders(&s).await;
    let ended = Utc::now() + chrono::Duration::seconds(3);
    prometheus.wait_scraped(jobs.len(), ended).await;

    let failures = dashboard_failures(&prometheus).await;
    assert!(
        failures.is_empty(),
        "dashboard expressions failed:\n{}",
        failures.join("\n")
    );
    assert_saga_counters(&prometheus, placed).await;

    drop(prometheus);
    relay_trigger.trigger();
    relay_task.await.unwrap();
    s.stop().await;
}
