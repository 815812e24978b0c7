//! A real Prometheus for the observability test: a child process on a free port, with its own
//! configuration and storage, scraping the jobs it is given and evaluating the alerting rules.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::process::{Child, Command};

/// A Prometheus child process on a free port with its own config and storage; killed on drop.
pub struct Prometheus {
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
    /// `jobs`: (job name, host:port, metrics path with its query string); `rules`: a rule file.
    pub fn start(jobs: &[(String, String, &str)], rules: &Path) -> Self {
        let binary = which("prometheus")
            .expect("the `prometheus` binary is not on PATH: `apt-get install -y prometheus`");
        let dir = std::env::temp_dir().join(format!("prometheus-{}", testkit::unique_suffix()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let rules = rules.canonicalize().unwrap();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    pub async fn api(&self, path: &str) -> Result<Value, String> {
        let response = reqwest::get(format!("{}{path}", self.url))
            .await
            .map_err(|err| format!("GET {path}: {err}"))?;
        response
            .json::<Value>()
            .await
            .map_err(|err| format!("GET {path}: {err}"))
    }

    /// `GET /api/v1/query`: the response body (status `success` or `error`).
    pub async fn query(&self, expr: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/query?query={}", encode(expr)))
            .await
    }

    /// The values of `label` on the series `selector` matches (what Grafana's
    /// `label_values(selector, label)` lists).
    pub async fn label_values(&self, selector: &str, label: &str) -> Result<Vec<Value>, String> {
        let body = self
            .api(&format!(
                "/api/v1/label/{label}/values?match[]={}",
                encode(selector)
            ))
            .await?;
        body["data"]
            .as_array()
            .cloned()
            .ok_or_else(|| body.to_string())
    }

    /// Waits until every target is up and was last scraped at least `after`.
    pub async fn wait_scraped(&self, jobs: usize, after: DateTime<Utc>) {
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
pub async fn poll<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> Result<T, String>
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
