//! A PostgreSQL server of a test's own, for the failures the machine's server must never suffer:
//! a crash (every server process killed with SIGKILL: no checkpoint, no WAL flush, recovery on
//! the next start). Created with the machine's PostgreSQL binaries in a directory of its own, on a
//! free port, as the `postgres` OS user (initdb refuses root); stopped and removed when dropped,
//! also when the test panics.
//!
//! A commit that does not wait for its WAL flush (`synchronous_commit = off`) is flushed by the
//! WAL writer moments later. [`hold_wal_writer`](PrivatePostgres::hold_wal_writer) stops that
//! process, and the background writer is off, so such commits are still only in memory when a
//! test then crashes the server: what the crash takes back is certain, not a matter of timing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// A new cluster, started.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("private-pg-{}", crate::unique_suffix()));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        as_postgres_owner(&dir);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let server = Self { dir, bin, port };
        server.run(
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-D",
                &server.data(),
            ],
        );
        server.up();
        server
    }

    /// The server's URL, without a database (as [`crate::TestDb::on_server`] takes it).
    pub fn server(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Stops the WAL writer (SIGSTOP): from now on only a commit that waits for its own flush
    /// reaches the disk. A crash ends it.
    pub fn hold_wal_writer(&self) {
        let postmaster = self.postmaster();
        let writer = children(postmaster)
            .into_iter()
            .find(|pid| command_line(*pid).contains("walwriter"))
            .expect("the server's WAL writer process");
        signal(writer, "STOP");
    }

    /// Kills every server process with SIGKILL, as a power cut would short of the disk: no
    /// checkpoint, no WAL flush. [`up`](Self::up) then starts it with crash recovery.
    pub fn crash(&self) {
        let all = kill_server(self.postmaster());
        // Gone, shared memory detached, before a start may look at what they left.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while all.iter().any(|pid| alive(*pid)) {
            assert!(
                std::time::Instant::now() < deadline,
                "killed server processes linger"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // As after a power cut, no process is left to own the pid file. The postmaster may
        // linger as a zombie (this machine's init need not reap it), which the next start
        // would take for a live server.
        let _ = std::fs::remove_file(self.dir.join("data/postmaster.pid"));
        let socket_lock = format!(".s.PGSQL.{}.lock", self.port);
        let _ = std::fs::remove_file(self.dir.join(socket_lock));
    }

    /// Starts the server again (after [`crash`](Self::crash): with crash recovery).
    pub fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c bgwriter_lru_maxpages=0 -c max_connections=30 \
             -c shared_buffers=16MB -c autovacuum=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
            ],
        );
    }

    fn postmaster(&self) -> u32 {
        let pid_file = self.dir.join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|err| panic!("{}: {err}", pid_file.display()));
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .expect("a pid on the first line of postmaster.pid")
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("run {program}: {err}"));
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Killed, not stopped: a server whose WAL writer is held would never finish a clean
        // stop. Never a panic here (a second one would abort the test run).
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok());
        if let Some(postmaster) = pid {
            kill_server(postmaster);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest PostgreSQL's binaries on this machine (Debian keeps them per major version).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|err| panic!("{}: {err} (is PostgreSQL installed?)", root.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let version = path.file_name()?.to_str()?.parse().ok()?;
            path.join("bin/initdb").exists().then_some((version, path))
        })
        .collect();
    versions.sort();
    let (_, newest) = versions
        .pop()
        .expect("a PostgreSQL with initdb under /usr/lib/postgresql");
    newest.join("bin")
}

/// Hands `dir` to the `postgres` user, whom the server runs as.
fn as_postgres_owner(dir: &Path) {
    let status = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(dir)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown postgres {}", dir.display());
}

/// SIGKILLs `postmaster` and its children; returns every pid it aimed at. The postmaster
/// first: killed later, it would see its children die and start new ones. A child may be gone
/// already (it exits once it sees the postmaster die), so failures are ignored.
fn kill_server(postmaster: u32) -> Vec<u32> {
    let mut all = vec![postmaster];
    all.extend(children(postmaster));
    for pid in &all {
        if alive(*pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    all
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may hold spaces, so read after its `)`.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Whether `pid` still runs (a zombie, killed and waiting to be reaped, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}
