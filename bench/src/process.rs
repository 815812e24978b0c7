//! A binary under test run as its own child process (the release build, exactly as deployed),
//! so that its CPU can be read from /proc apart from the benchmark's. Its output goes to a log
//! file whose end is shown when the process dies; it is killed if the benchmark drops it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A directory for the logs of one run's processes, removed with [`Logs::remove`].
#[derive(Debug)]
pub struct Logs {
    dir: PathBuf,
}

impl Logs {
    /// Creates `<tmp>/<name>`.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One running child.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    pub pid: u32,
    /// Just before the spawn.
    pub started: Instant,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `binary` as `name` with the benchmark's environment plus `env` (so every other
    /// variable, pool sizes, consumer and relay settings, reaches it unchanged), logging to
    /// `logs`. `hint` says how to get the binary if it is missing.
    pub fn spawn(
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        logs: &Logs,
        hint: &str,
    ) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!("{} not found: {hint}", binary.display());
        }
        let log = logs.dir.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(binary)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            // A failed run must not leave a process behind.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once"))?;
        Ok(Self {
            name: name.to_owned(),
            pid,
            started,
            child,
            log,
        })
    }

    /// Fails if the process has died; the error ends with the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => Err(self.died(status)),
            None => Ok(()),
        }
    }

    /// Resolves only if the process exits, as an error: raced against every wait so that a
    /// crash fails the run at once instead of at the deadline.
    pub async fn exited(&mut self) -> anyhow::Error {
        match self.child.wait().await {
            Ok(status) => self.died(status),
            Err(err) => anyhow::Error::new(err).context(format!("waiting on {}", self.name)),
        }
    }

    fn died(&self, status: std::process::ExitStatus) -> anyhow::Error {
        anyhow::anyhow!("{} exited with {status}:\n{}", self.name, tail(&self.log))
    }

    /// SIGTERM, then the process's own graceful shutdown; SIGKILL if that takes past `grace`.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await
            .context("running kill -TERM")?;
        if signalled.success()
            && let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await
        {
            status.with_context(|| format!("waiting for {} to stop", self.name))?;
            return Ok(());
        }
        eprintln!("{} did not stop within {grace:?}; killing it", self.name);
        self.child
            .kill()
            .await
            .with_context(|| format!("killing {}", self.name))?;
        Ok(())
    }
}

/// The (name, pid) of `processes`, for CPU accounting.
pub fn pids(processes: &[Process]) -> Vec<(String, u32)> {
    processes.iter().map(|p| (p.name.clone(), p.pid)).collect()
}

/// The directory of the running benchmark binary: where `cargo build --release` puts every
/// binary of the workspace.
pub fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this binary")?;
    Ok(exe
        .parent()
        .context("this binary has no directory")?
        .to_path_buf())
}

/// `name` in [`binary_dir`].
pub fn beside_this_binary(name: &str) -> anyhow::Result<PathBuf> {
    Ok(binary_dir()?.join(name))
}

/// A port the kernel reports free (bound to port 0 and released again).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The end of a log: from its last error line (a backtrace can be long), at most 30 lines.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .rposition(|line| line.starts_with("Error:") || line.contains("panicked at"))
        .unwrap_or_else(|| lines.len().saturating_sub(30));
    lines[start..lines.len().min(start + 30)].join("\n")
}
