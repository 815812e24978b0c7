//! The gateway as a child process of `sagactl up`: nginx started on a configuration rendered
//! for the services `up` runs, watched while they run, and stopped with them.

use std::collections::VecDeque;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use shared::shutdown::Shutdown;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Instances, Settings, render};

/// How long nginx may take to listen, and to stop after SIGTERM.
const START_DEADLINE: Duration = Duration::from_secs(10);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Lines of nginx's error log kept for the report when it fails.
const TAIL_LINES: usize = 20;

/// The nginx binary: `NGINX`, else Debian's `/usr/sbin/nginx` (not on a non-root user's
/// PATH), else `nginx` on the PATH. `Err` says what was looked for.
pub fn find() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("NGINX").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("NGINX={} is not a file", path.display()))
        };
    }
    let sbin = Path::new("/usr/sbin/nginx");
    if sbin.is_file() {
        return Ok(sbin.to_owned());
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nginx"))
                .find(|path| path.is_file())
        })
        .ok_or_else(|| "nginx is not installed".to_owned())
}

/// A running nginx master process; stopped (SIGTERM) when dropped.
pub struct Nginx {
    child: Child,
    pid: u32,
    url: String,
    runtime_dir: PathBuf,
    /// Whether `runtime_dir` is ours to remove (not the operator's `GATEWAY_RUNTIME_DIR`).
    remove_runtime_dir: bool,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Ends when nginx's error log closes: every line of it is in `tail` then.
    error_log: Option<JoinHandle<()>>,
}

impl Nginx {
    /// Renders the configuration for `instances`, starts `binary` on it and waits until it
    /// listens; on failure nothing is left running.
    pub async fn start(
        binary: &Path,
        mut settings: Settings,
        instances: &Instances,
    ) -> anyhow::Result<Self> {
        let remove_runtime_dir = settings.runtime_dir.is_none();
        let runtime_dir = settings.runtime_dir.clone().unwrap_or_else(|| {
            let unique = format!("saga-gateway-{}-{}", std::process::id(), nanos());
            std::env::temp_dir().join(unique)
        });
        settings.runtime_dir = Some(runtime_dir.clone());
        let text = render(&settings, instances)?;
        if remove_runtime_dir {
            // Ours alone: a directory someone made first under that name is refused, not used.
            // Readable by all: nginx's workers run as another user when `up` runs as root.
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&runtime_dir)
                .with_context(|| format!("creating {}", runtime_dir.display()))?;
        }
        let mut child = match spawn(binary, &runtime_dir, &text) {
            Ok(child) => child,
            Err(err) => {
                if remove_runtime_dir {
                    let _ = std::fs::remove_dir_all(&runtime_dir);
                }
                return Err(err);
            }
        };
        let pid = child.id().context("nginx's pid")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward_access_log(stdout));
        }
        let error_log = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(forward_error_log(stderr, tail.clone())));
        let mut nginx = Self {
            child,
            pid,
            url: format!("http://{}", connect_address(&settings.listen)),
            runtime_dir,
            remove_runtime_dir,
            tail,
            error_log,
        };
        if let Err(err) = nginx.wait_listening(&settings.listen).await {
            nginx.stop().await;
            return Err(err);
        }
        Ok(nginx)
    }

    /// Where clients reach it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Until `shutdown`, then stops nginx. nginx exiting first is an error, logged at once
    /// (the services keep running, reachable on their own ports) and returned.
    pub async fn supervise(mut self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        tokio::select! {
            status = self.child.wait() => {
                let report = self.report(status.ok()).await;
                tracing::error!(
                    "the gateway stopped: {report}; the services still run on their own ports"
                );
                self.stop().await;
                bail!("the gateway stopped: {report}")
            }
            () = shutdown.wait() => {
                self.stop().await;
                Ok(())
            }
        }
    }

    /// Polls until nginx wrote its pid file (it has bound its port and read its configuration)
    /// and the port answers; fails if nginx exits first or `START_DEADLINE` passes.
    async fn wait_listening(&mut self, listen: &str) -> anyhow::Result<()> {
        let address = connect_address(listen);
        let pid_file = self.runtime_dir.join("nginx.pid");
        let until = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().context("nginx's status")? {
                bail!("nginx {}", self.report(Some(status)).await);
            }
            let written = std::fs::read_to_string(&pid_file)
                .is_ok_and(|pid| pid.trim() == self.pid.to_string());
            if written && tokio::net::TcpStream::connect(&address).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= until {
                bail!(
                    "nginx did not listen on {address} within {START_DEADLINE:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (nginx's fast shutdown), then waits; SIGKILL past `STOP_DEADLINE`. Removes the
    /// runtime directory if it made it.
    async fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(self.pid);
            match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(
                        pid = self.pid,
                        "nginx did not stop after SIGTERM; killing it"
                    );
                    // The whole group: a SIGKILL to the master alone would orphan its
                    // workers, still listening.
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", self.pid)])
                        .status()
                        .await;
                    let _ = self.child.wait().await;
                }
            }
        }
        self.remove_runtime_dir();
    }

    fn remove_runtime_dir(&mut self) {
        if std::mem::take(&mut self.remove_runtime_dir) {
            let _ = std::fs::remove_dir_all(&self.runtime_dir);
        }
    }

    /// How it exited, and the end of its error log once read to the end (its workers may hold
    /// it open a little longer, hence the bound).
    async fn report(&mut self, status: Option<ExitStatus>) -> String {
        if let Some(error_log) = self.error_log.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), error_log).await;
        }
        let status = status.map_or("an unknown status".to_owned(), |s| s.to_string());
        format!("exited with {status}; its log:\n{}", self.log_tail())
    }

    fn log_tail(&self) -> String {
        let tail = self.tail.lock().map(|t| t.clone()).unwrap_or_default();
        Vec::from(tail).join("\n")
    }
}

impl Drop for Nginx {
    /// Only reached with nginx running when `up` ends abnormally: SIGTERM, because a killed
    /// master leaves its workers serving the port.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(self.pid);
        }
        self.remove_runtime_dir();
    }
}

/// SIGTERM to `pid` (the `kill` utility: no unsafe code for a signal of our own).
fn terminate(pid: u32) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !sent.as_ref().is_ok_and(|status| status.success()) {
        tracing::warn!(pid, "could not send SIGTERM to nginx: {sent:?}");
    }
}

/// Writes the configuration and the contract into `runtime_dir` and starts nginx on them.
fn spawn(binary: &Path, runtime_dir: &Path, config_text: &str) -> anyhow::Result<Child> {
    super::write_contract(runtime_dir)?;
    let config = runtime_dir.join("nginx.conf");
    std::fs::write(&config, config_text)
        .with_context(|| format!("writing {}", config.display()))?;
    Command::new(binary)
        .arg("-e")
        .arg("stderr")
        .arg("-p")
        .arg(runtime_dir)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches `up` alone, which stops nginx
        // itself, so nginx never exits before `up` knows it is stopping.
        .process_group(0)
        .spawn()
        .with_context(|| format!("running {}", binary.display()))
}

/// The address to connect to for a `listen` value: `8080`, `host:8080`, `0.0.0.0:8080`,
/// `[::]:8080` (a wildcard is reached on the loopback interface).
fn connect_address(listen: &str) -> String {
    match listen.rsplit_once(':') {
        None => format!("127.0.0.1:{listen}"),
        Some(("0.0.0.0" | "*", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        Some(_) => listen.to_owned(),
    }
}

/// The access log (JSON lines nginx writes to its stdout) goes to our stderr, with the other
/// logs: `up`'s stdout is for what it prints.
async fn forward_access_log(stdout: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{line}");
    }
}

/// nginx's error log through our logging, its last lines kept for a failure report.
async fn forward_error_log(stderr: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let severe = ["[emerg]", "[alert]", "[crit]", "[error]"]
            .iter()
            .any(|level| line.contains(level));
        if severe {
            tracing::error!(target: "gateway", "{line}");
        } else {
            tracing::warn!(target: "gateway", "{line}");
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::connect_address;

    #[test]
    fn a_wildcard_listen_address_is_reached_on_the_loopback_interface() {
        assert_eq!(connect_address("8080"), "127.0.0.1:8080");
        assert_eq!(connect_address("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(connect_address("*:8080"), "127.0.0.1:8080");
        assert_eq!(connect_address("[::]:8080"), "[::1]:8080");
        assert_eq!(connect_address("127.0.0.2:9000"), "127.0.0.2:9000");
    }
}
