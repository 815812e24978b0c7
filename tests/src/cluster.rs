//! A three-node RabbitMQ cluster of a test's own, started with the same script an operator uses
//! (`scripts/rabbitmq-cluster.sh`), so the test exercises it too: own node names, ports and
//! directory per cluster, so parallel tests and leftovers never collide and the machine's node on
//! 5672 is never touched. A node can be killed with SIGKILL and started again; the whole cluster
//! is killed and removed when dropped, also when the test panics.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Nodes in a cluster, numbered 1 to 3 as the script numbers them.
pub const NODES: [usize; 3] = [1, 2, 3];

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/rabbitmq-cluster.sh"
);
const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

pub struct RabbitCluster {
    dir: PathBuf,
    name: String,
    base_port: u16,
}

/// A queue as `rabbitmqctl list_queues` shows it.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub name: String,
    /// `quorum`, `classic`, `stream`.
    pub kind: String,
    /// The nodes holding a replica (quorum queues).
    pub members: Vec<String>,
    /// The node leading it (quorum queues).
    pub leader: String,
    pub messages: u64,
}

impl QueueInfo {
    /// From one row of `list_queues --formatter json`, where a classic queue's members and leader
    /// are empty strings rather than a list and a name.
    fn from_row(row: &Value) -> Self {
        let text = |key: &str| row[key].as_str().unwrap_or_default().to_owned();
        let members = row["members"].as_array().map_or_else(Vec::new, |list| {
            list.iter()
                .filter_map(|node| node.as_str().map(str::to_owned))
                .collect()
        });
        Self {
            name: text("name"),
            kind: text("type"),
            members,
            leader: text("leader"),
            messages: row["messages"].as_u64().unwrap_or_default(),
        }
    }
}

impl RabbitCluster {
    /// Starts three fresh nodes, joined in one cluster, and returns once all three run in it.
    pub async fn start() -> Self {
        let suffix = crate::unique_suffix();
        let cluster = Self {
            dir: std::env::temp_dir().join(format!("saga-cluster-{suffix}")),
            name: format!("c{}-", &suffix[..8]),
            base_port: free_port_block(6),
        };
        cluster.script("start").await;
        cluster
    }

    /// `node`'s (1..3) AMQP port.
    pub fn port(&self, node: usize) -> u16 {
        self.base_port + node as u16 - 1
    }

    /// `node`'s Erlang node name, as the broker reports it in `members` and `leader`.
    pub fn node_name(&self, node: usize) -> String {
        format!("{}{node}@localhost", self.name)
    }

    /// The node called `name`.
    pub fn node_of(&self, name: &str) -> Option<usize> {
        NODES.into_iter().find(|node| self.node_name(*node) == name)
    }

    /// `AMQP_URL` naming the three nodes, as the local administrator.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = NODES
            .iter()
            .map(|node| format!("127.0.0.1:{}", self.port(*node)))
            .collect();
        format!("amqp://guest:guest@{}/%2f", hosts.join(","))
    }

    /// Kills `node`'s Erlang VM with SIGKILL (no goodbye to its peers or clients) and waits
    /// until its port is closed.
    pub fn kill(&self, node: usize) {
        let pid = std::fs::read_to_string(self.dir.join(format!("node{node}/pid")))
            .expect("the node's pid file");
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port(node))).is_ok() {
            assert!(Instant::now() < deadline, "node {node} still listens");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts whichever node is down (with its data: it rejoins) and waits until all three run
    /// clustered again.
    pub async fn restart_stopped(&self) {
        self.script("start").await;
    }

    /// The queues of the default vhost whose names start with `prefix`, as `node` reports them.
    pub async fn queues(&self, node: usize, prefix: &str) -> Vec<QueueInfo> {
        let args = [
            "list_queues",
            "--formatter",
            "json",
            "name",
            "type",
            "members",
        ];
        let output = self
            .ctl(node, &[&args[..], &["leader", "messages"]].concat())
            .await;
        let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "list_queues: {err}: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        rows.iter()
            .map(QueueInfo::from_row)
            .filter(|queue| queue.name.starts_with(prefix))
            .collect()
    }

    /// How many of `queues` each node leads.
    pub fn leaders(&self, queues: &[QueueInfo]) -> HashMap<usize, usize> {
        let mut led: HashMap<usize, usize> = NODES.iter().map(|node| (*node, 0)).collect();
        for queue in queues {
            if let Some(node) = self.node_of(&queue.leader) {
                *led.entry(node).or_default() += 1;
            }
        }
        led
    }

    /// `rabbitmqctl -n {node} {args}` with the cluster's cookie, which must succeed.
    async fn ctl(&self, node: usize, args: &[&str]) -> Output {
        let mut command = as_broker(&self.dir);
        command
            .arg(RABBITMQCTL)
            .args(["-q", "-n", &self.node_name(node)])
            .args(args);
        run(command).await
    }

    /// The script with `command` and this cluster's options, which must succeed.
    async fn script(&self, command: &str) -> Output {
        let mut script = Command::new("bash");
        script.arg(SCRIPT).arg(command).args(self.options());
        run(script).await
    }

    fn options(&self) -> Vec<String> {
        vec![
            "--dir".into(),
            self.dir.display().to_string(),
            "--base-port".into(),
            self.base_port.to_string(),
            "--name".into(),
            self.name.clone(),
        ]
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        let stopped = Command::new("bash")
            .arg(SCRIPT)
            .arg("stop")
            .args(self.options())
            .output();
        if !stopped.as_ref().is_ok_and(|out| out.status.success()) {
            eprintln!(
                "stopping the cluster in {}: {stopped:?}",
                self.dir.display()
            );
        }
    }
}

/// A command run as the user the nodes run as (`rabbitmq` when the tests run as root), with the
/// cluster's Erlang cookie (its `HOME`) and none of the machine's RabbitMQ environment file.
fn as_broker(dir: &Path) -> Command {
    let root = is_root();
    let mut command = Command::new(if root { "runuser" } else { "env" });
    if root {
        command.args(["-u", "rabbitmq", "--", "env"]);
    }
    command.args([
        "-i".to_owned(),
        "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_owned(),
        "LANG=C.UTF-8".to_owned(),
        format!("HOME={}", dir.display()),
        format!("RABBITMQ_CONF_ENV_FILE={}/rabbitmq-env.conf", dir.display()),
    ]);
    command
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout == b"0\n")
}

/// Runs `command` off the async runtime (the system under test keeps running meanwhile) and
/// fails the test with its output unless it succeeds.
async fn run(mut command: Command) -> Output {
    let shown = format!("{command:?}");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .unwrap_or_else(|err| panic!("running {shown}: {err}"));
    assert!(
        output.status.success(),
        "{shown} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The first of `count` consecutive free ports on 127.0.0.1, from a random start so that tests
/// running at once are unlikely to pick the same block (a port can still be taken between this
/// check and the node binding it; the start then fails loudly).
fn free_port_block(count: u16) -> u16 {
    for _ in 0..200 {
        let base = rand::random_range(20_000..40_000u16);
        let listeners: Vec<_> = (base..base + count)
            .map_while(|port| TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if listeners.len() == usize::from(count) {
            return base;
        }
    }
    panic!("no block of {count} free ports");
}
