//! `sagactl up` as an operator runs it: the real binary, on free ports, its own databases and
//! vhost, with its API gateway (the real nginx) in front of the services: `--seed` and an order
//! go through the gateway, SIGTERM stops nginx with everything else, and nginx dying on its own
//! is reported while the services keep serving.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::system::process::{children, exists, free_port, nginx_binary, signal};
use crate::system::{BALANCE, COUPON, ORDER, PRODUCT, SERVICES};
use testkit::clients::{Api, BalanceClient, OrderClient};
use testkit::{TestAmqp, TestDb, eventually, eventually_async, init_tracing};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

/// Databases created, migrated, queues declared: a debug build on a busy machine is slow.
const START_DEADLINE: Duration = Duration::from_secs(120);
const STOP_DEADLINE: Duration = Duration::from_secs(60);

/// A running `sagactl up`; SIGTERM (then SIGKILL) if the test ends first.
pub(super) struct Up {
    child: Child,
    pid: u32,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The services' ports, by name.
    ports: Vec<(&'static str, u16)>,
    gateway: String,
    /// Scratch files of the test (a runtime directory, an access log).
    dir: PathBuf,
    // Dropped after the process: the databases it created, its vhost.
    _dbs: Vec<TestDb>,
    _amqp: TestAmqp,
}

impl Up {
    /// `sagactl up args` with `env`, up to its "all up" line.
    pub(super) async fn start(args: &[&str], env: &[(&str, String)]) -> Self {
        init_tracing();
        let amqp = TestAmqp::new().await;
        let dir = std::env::temp_dir().join(format!("up-{}", testkit::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let gateway_port = free_port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"));
        command
            .arg("up")
            .args(args)
            .env("AMQP_URL", &amqp.url)
            .env("AMQP_PREFIX", &amqp.prefix)
            .env("EVENT_KEYS", "dev")
            .env("RELAY_METRICS_PORT", "0")
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{gateway_port}"))
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if !args.contains(&"--no-gateway") {
            command.env("NGINX", nginx_binary());
        }
        let (mut dbs, mut ports, mut relayed) = (Vec::new(), Vec::new(), Vec::new());
        for name in SERVICES {
            let db = TestDb::uncreated();
            let port = free_port();
            let upper = name.to_uppercase();
            command.env(format!("{upper}_DATABASE_URL"), &db.url);
            command.env(format!("{upper}_PORT"), port.to_string());
            if [ORDER, PRODUCT, COUPON, BALANCE].contains(&name) {
                relayed.push(db.url.clone());
            }
            ports.push((name, port));
            dbs.push(db);
        }
        command.env("RELAY_DATABASE_URLS", relayed.join(","));
        let mut child = command.spawn().expect("sagactl up");
        let pid = child.id().unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let up = Self {
            child,
            pid,
            stdout,
            stderr,
            ports,
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            dir,
            _dbs: dbs,
            _amqp: amqp,
        };
        up.wait_printed("all up", START_DEADLINE).await;
        up
    }

    pub(super) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub(super) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Until stdout shows `text`; fails at once if `up` exits.
    pub(super) async fn wait_printed(&self, text: &str, deadline: Duration) {
        eventually(deadline, &format!("`{text}` from sagactl up"), || {
            assert!(
                exists(self.pid),
                "sagactl up exited; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            self.stdout().contains(text).then_some(())
        })
        .await;
    }

    fn api(&self) -> Api {
        Api::new(self.gateway.clone(), reqwest::Client::new())
    }

    pub(super) fn port(&self, name: &str) -> u16 {
        self.ports.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// The nginx master `up` runs.
    fn nginx(&self) -> u32 {
        let found = children(self.pid, "nginx");
        assert_eq!(found.len(), 1, "nginx children of sagactl up: {found:?}");
        found[0]
    }

    /// SIGTERM, then its exit status once it exited (within `STOP_DEADLINE`).
    pub(super) async fn terminate(&mut self) -> std::process::ExitStatus {
        assert!(signal(self.pid, "TERM"), "SIGTERM to sagactl up");
        let status = tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await;
        let status = status.expect("sagactl up to stop after SIGTERM").unwrap();
        // Its pipes close with it: every line it wrote is collected.
        eventually(Duration::from_secs(5), "sagactl up's output", || {
            (Arc::strong_count(&self.stdout) == 1 && Arc::strong_count(&self.stderr) == 1)
                .then_some(())
        })
        .await;
        status
    }
}

impl Drop for Up {
    /// SIGTERM first: a killed `up` would leave its nginx running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid, "TERM");
            let until = std::time::Instant::now() + STOP_DEADLINE;
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything `pipe` yields, appended to a string the test reads; the reader drops its handle
/// at the end of the pipe.
fn collect(pipe: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

async fn answers(address: &str) -> bool {
    tokio::net::TcpStream::connect(address).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_seeds_and_takes_orders_through_its_gateway_and_sigterm_stops_nginx_too() {
    let runtime_dir = std::env::temp_dir().join(format!("up-gw-{}", testkit::unique_suffix()));
    let access_log = runtime_dir.join("access.log");
    let env = [
        ("GATEWAY_RUNTIME_DIR", runtime_dir.display().to_string()),
        ("GATEWAY_ACCESS_LOG", access_log.display().to_string()),
    ];
    let mut up = Up::start(&["--seed"], &env).await;
    assert!(
        up.stdout().contains(&format!("gateway  {}\n", up.gateway)),
        "{}",
        up.stdout()
    );
    // The seed went through the gateway, and its hints name it.
    up.wait_printed("seeded:", Duration::from_secs(30)).await;
    up.wait_printed(
        &format!("'{}/orders/1?wait_ms=5000'", up.gateway),
        Duration::from_secs(5),
    )
    .await;
    let nginx = up.nginx();
    let pid_file = std::fs::read_to_string(runtime_dir.join("nginx.pid")).unwrap();
    assert_eq!(pid_file.trim(), nginx.to_string());

    // Seeded: product 1 at 89.90, user 1 with 1000.00 and user coupon 1 (10 %).
    let orders = OrderClient::new(up.api());
    let order = orders.place(1, &[(1, 2)], Some(1)).await;
    let ended = orders.wait_terminal(order).await;
    assert_eq!(ended["status"], "COMPLETED", "{ended}");
    assert_eq!(BalanceClient::new(up.api()).balance(1).await, "838.18");
    let log = std::fs::read_to_string(&access_log).unwrap();
    assert!(
        log.lines().any(
            |line| line.contains("\"method\":\"POST\"") && line.contains("\"uri\":\"/orders\"")
        ),
        "{log}"
    );

    let status = up.terminate().await;
    assert!(status.success(), "{status}; stderr:\n{}", up.stderr());
    assert!(up.stdout().contains("stopped cleanly"), "{}", up.stdout());
    assert!(!exists(nginx), "nginx (pid {nginx}) outlived sagactl up");
    let gateway_address = up.gateway.trim_start_matches("http://").to_owned();
    assert!(
        !answers(&gateway_address).await,
        "the gateway port still answers"
    );
    let _ = std::fs::remove_dir_all(&runtime_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_dying_under_up_is_reported_and_the_services_keep_serving() {
    let mut up = Up::start(&[], &[]).await;
    let nginx = up.nginx();
    // Its runtime directory is a temporary one of its own, named on its command line (which
    // nginx rewrites into its process title, words separated by spaces).
    let cmdline = std::fs::read_to_string(format!("/proc/{nginx}/cmdline")).unwrap();
    let args: Vec<&str> = cmdline
        .split(|c: char| c == '\0' || c.is_whitespace())
        .collect();
    let prefix = args.iter().position(|a| *a == "-p").map(|i| args[i + 1]);
    let runtime_dir = PathBuf::from(prefix.expect("nginx -p"));
    assert!(runtime_dir.join("nginx.pid").exists(), "{runtime_dir:?}");
    // The access log (nginx's stdout) comes out on up's stderr.
    let (status, _) = up.api().get("/products").await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), "the access log on stderr", || {
        up.stderr().contains("\"uri\":\"/products\"").then_some(())
    })
    .await;

    // Stopped by someone else than `up` (a SIGKILL would leave its workers on the port).
    assert!(signal(nginx, "TERM"), "SIGTERM to nginx");
    eventually(
        Duration::from_secs(10),
        "the gateway reported stopped",
        || up.stderr().contains("the gateway stopped").then_some(()),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "its runtime directory removed",
        || (!runtime_dir.exists()).then_some(()),
    )
    .await;
    let product = format!("http://127.0.0.1:{}", up.port(PRODUCT));
    let direct = Api::new(product, reqwest::Client::new());
    eventually_async(Duration::from_secs(10), "the product service", || async {
        (direct.get("/products").await.0 == 200).then_some(())
    })
    .await;

    let status = up.terminate().await;
    assert!(!status.success(), "up hid the gateway's failure");
    assert!(
        up.stderr().contains("the gateway stopped"),
        "{}",
        up.stderr()
    );
}
