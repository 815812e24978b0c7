//! The API gateway under test: the real nginx binary on a configuration `sagactl gateway config`
//! wrote, in front of a [`System`]'s instances or of any upstreams.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use testkit::clients::Api;
use testkit::eventually_async;

use super::process::{free_port, nginx_binary};
use super::{BALANCE, COUPON, MONITOR, ORDER, PRODUCT, System};

/// nginx started on a configuration `sagactl gateway config` wrote; killed when dropped.
pub struct Gateway {
    nginx: tokio::process::Child,
    pub url: String,
    pub dir: PathBuf,
    pub client: reqwest::Client,
}

impl Gateway {
    /// The gateway with `upstreams` per service (`host:port` lists) and `extra` variables.
    pub async fn start(upstreams: [(&str, String); 5], extra: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("gateway-{}", testkit::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = dir.join("nginx.conf");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"));
        command
            .args(["gateway", "config", "--out", config.to_str().unwrap()])
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEWAY_RUNTIME_DIR", &dir)
            .env("GATEWAY_ACCESS_LOG", dir.join("access.log"))
            .env("GATEWAY_ERROR_LOG", dir.join("error.log"));
        for (service, servers) in upstreams {
            command.env(format!("GATEWAY_{}", service.to_uppercase()), servers);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        let output = command.output().await.unwrap();
        assert!(output.status.success(), "{output:?}");
        // Its logs go to files: inheriting the test's output would keep it open past the test.
        let nginx = tokio::process::Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx (scripts/test.sh installs it)");
        let address = format!("127.0.0.1:{port}");
        // Its pid file first: nginx writes it once it has bound the port, so whatever answers
        // there is this nginx, not another process that had the port.
        let pid_file = dir.join("nginx.pid");
        eventually_async(Duration::from_secs(10), "nginx to listen", || async {
            if !pid_file.exists() {
                return None;
            }
            tokio::net::TcpStream::connect(&address)
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Self {
            nginx,
            url: format!("http://{address}"),
            dir,
            client: reqwest::Client::new(),
        }
    }

    /// In front of every instance of `s`.
    pub async fn before(s: &System, extra: &[(&str, &str)]) -> Self {
        let servers = |name: &str| {
            let list: Vec<String> = s
                .instances(name)
                .iter()
                .map(|app| app.base_url.trim_start_matches("http://").to_owned())
                .collect();
            list.join(",")
        };
        let upstreams = [ORDER, PRODUCT, COUPON, BALANCE, MONITOR].map(|n| (n, servers(n)));
        Self::start(upstreams, extra).await
    }

    pub fn api(&self) -> Api {
        Api::new(self.url.clone(), self.client.clone())
    }

    /// The access log's entries so far.
    pub fn log(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Gateway {
    /// SIGTERM to the master, which stops its workers (a SIGKILL would orphan them, still
    /// listening), then waits for it.
    fn drop(&mut self) {
        if let Some(pid) = self.nginx.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if matches!(self.nginx.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
