//! A private RabbitMQ node for one test: its own node name, Erlang distribution port, data and
//! log directories, configuration and (empty) plugin list, so the machine's own node on 5672 is
//! never touched. It listens on a free port for TLS only, with a server certificate for
//! 127.0.0.1 made by [`testkit::pki`], and optionally requires client certificates. Killed and
//! removed when dropped, also when the test panics.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::config::{AmqpSettings, AmqpTls};
use testkit::pki::{Ca, IssuedFiles};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const STARTUP: Duration = Duration::from_secs(90);

/// Whether the node asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// Any client may connect (`verify_none`).
    Anonymous,
    /// Only a client showing a certificate the CA signed (`verify_peer`,
    /// `fail_if_no_peer_cert = true`).
    CertificateRequired,
}

pub struct Node {
    root: PathBuf,
    pub port: u16,
    /// The CA of the server certificate and of [`Node::client`].
    pub ca: PathBuf,
    /// A CA that signed nothing the node trusts or holds.
    pub other_ca: PathBuf,
    /// A client certificate the CA signed.
    pub client: IssuedFiles,
    /// A client certificate the other CA signed.
    pub stranger: IssuedFiles,
    server: Child,
}

impl Node {
    /// Writes the certificates and configuration, starts the node and waits, with a deadline,
    /// until it accepts an AMQP connection over TLS.
    pub async fn start(peers: Peers) -> Node {
        assert!(
            Path::new(SERVER).is_file(),
            "RabbitMQ is missing: {SERVER} (apt-get install rabbitmq-server)"
        );
        let name = format!("tls-{}", testkit::unique_suffix());
        let root = std::env::temp_dir().join(format!("saga-amqp-{name}"));
        for dir in ["mnesia", "log"] {
            std::fs::create_dir_all(root.join(dir)).expect("node directories");
        }
        let (ca, other) = (Ca::new("saga test CA"), Ca::new("unrelated CA"));
        let port = free_port();
        let server_files = ca.server(&["127.0.0.1"]).write(&root, "server");
        let ca_path = ca.write(&root.join("ca.crt"));
        write_config(&root, port, &ca_path, &server_files, peers);
        // Consumers declare their partitions behind a consistent-hash exchange.
        let plugins = "[rabbitmq_consistent_hash_exchange].\n";
        std::fs::write(root.join("enabled_plugins"), plugins).expect("plugins file");
        std::fs::write(root.join("rabbitmq-env.conf"), "").expect("env file");
        let as_root = is_root();
        if as_root {
            run_checked(Command::new("chown").arg("-R").arg("rabbitmq:").arg(&root));
        }
        let server = spawn(&root, &format!("{name}@localhost"), as_root);
        let mut node = Node {
            client: ca.client("saga-client").write(&root, "client"),
            stranger: other.client("stranger").write(&root, "stranger"),
            other_ca: other.write(&root.join("other-ca.crt")),
            ca: ca_path,
            root,
            port,
            server,
        };
        node.wait_until_ready().await;
        node
    }

    /// `amqps://guest:guest@{host}:{port}/%2f` with `tls`.
    pub fn settings(&self, host: &str, tls: AmqpTls) -> AmqpSettings {
        AmqpSettings {
            url: format!("amqps://guest:guest@{host}:{}/%2f", self.port),
            prefix: format!("tls{}", testkit::unique_suffix()),
            tls,
        }
    }

    /// The CA, and the client certificate it signed.
    pub fn trusted(&self) -> AmqpTls {
        AmqpTls {
            ca: Some(self.ca.clone()),
            client_cert: Some(self.client.cert.clone()),
            client_key: Some(self.client.key.clone()),
        }
    }

    async fn wait_until_ready(&mut self) {
        let settings = self.settings("127.0.0.1", self.trusted());
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.server.try_wait() {
                panic!("the RabbitMQ node exited ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                match shared::amqp::connect(&settings, "readiness").await {
                    Ok(connection) => {
                        let _ = connection.close(200, "ready".into()).await;
                        return;
                    }
                    Err(err) if Instant::now() >= deadline => {
                        panic!("no TLS connection to the node: {err:#}\n{}", self.log())
                    }
                    Err(_) => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "the RabbitMQ node did not listen within {STARTUP:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the node wrote to its console and log, for a failure report.
    fn log(&self) -> String {
        let mut text = std::fs::read_to_string(self.root.join("console.log")).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.root.join("log")) {
            for entry in entries.flatten() {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        text
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The server runs in a process group of its own: the wrapper scripts and the Erlang VM.
        let group = format!("-{}", self.server.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.server.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(err) = std::fs::remove_dir_all(&self.root) {
            eprintln!("removing {}: {err}", self.root.display());
        }
    }
}

fn write_config(root: &Path, port: u16, ca: &Path, server: &IssuedFiles, peers: Peers) {
    let (verify, fail_if_no_peer_cert) = match peers {
        Peers::Anonymous => ("verify_none", false),
        Peers::CertificateRequired => ("verify_peer", true),
    };
    let config = format!(
        "listeners.tcp = none\n\
         listeners.ssl.default = 127.0.0.1:{port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = {verify}\n\
         ssl_options.fail_if_no_peer_cert = {fail_if_no_peer_cert}\n",
        ca.display(),
        server.cert.display(),
        server.key.display(),
    );
    std::fs::write(root.join("rabbitmq.conf"), config).expect("rabbitmq.conf");
}

/// `rabbitmq-server` in the foreground with everything pointed into `root`: as the `rabbitmq`
/// user when the tests run as root. None of the machine's RabbitMQ files is read but the
/// installation itself (`RABBITMQ_CONF_ENV_FILE` replaces /etc/rabbitmq/rabbitmq-env.conf).
fn spawn(root: &Path, nodename: &str, as_root: bool) -> Child {
    let dir = |name: &str| root.join(name).display().to_string();
    let env = [
        ("HOME", root.display().to_string()),
        (
            "PATH",
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_owned(),
        ),
        ("LANG", "C.UTF-8".to_owned()),
        ("RABBITMQ_NODENAME", nodename.to_owned()),
        ("RABBITMQ_DIST_PORT", free_port().to_string()),
        ("RABBITMQ_MNESIA_BASE", dir("mnesia")),
        ("RABBITMQ_LOG_BASE", dir("log")),
        // 3.10 takes the path without its `.conf` suffix.
        ("RABBITMQ_CONFIG_FILE", dir("rabbitmq")),
        ("RABBITMQ_ENABLED_PLUGINS_FILE", dir("enabled_plugins")),
        ("RABBITMQ_CONF_ENV_FILE", dir("rabbitmq-env.conf")),
        ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
        (
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
        ),
    ];
    let mut command = if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "rabbitmq", "--", "env"]);
        command
    } else {
        Command::new("env")
    };
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .args(env.iter().map(|(key, value)| format!("{key}={value}")))
        .arg(SERVER)
        .process_group(0);
    let console = std::fs::File::create(root.join("console.log")).expect("console log");
    let errors = console.try_clone().expect("console log");
    command
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(errors)
        .spawn()
        .unwrap_or_else(|err| panic!("starting {SERVER}: {err}"))
}

fn is_root() -> bool {
    run_checked(Command::new("id").arg("-u")).stdout == b"0\n"
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn run_checked(command: &mut Command) -> std::process::Output {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
