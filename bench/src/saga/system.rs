//! The system under test, started as separate processes from the release binaries, exactly as
//! deployed: the four saga services, the monitor and the outbox relay (the distributed system),
//! or the single-database reference `saga-monolith`. Each run gets its own databases and AMQP
//! prefix and removes them when it stops, so it can share the servers with anything else.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::amqp::{QueueSpec, Topology};
use shared::config::ConsumerSettings;
use tokio::process::{Child, Command};

use crate::params::Params;

/// The consumers of the distributed system, in start order (the relay comes last).
const SERVICES: [&str; 5] = ["order", "product", "coupon", "balance", "monitor"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Four services, the monitor and the relay, over RabbitMQ.
    Distributed,
    /// One process, one database, one transaction per order.
    Monolith,
}

impl Kind {
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "distributed" => Ok(Self::Distributed),
            "monolith" => Ok(Self::Monolith),
            other => bail!("unknown system {other:?}: expected distributed or monolith"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Distributed => "distributed",
            Self::Monolith => "monolith",
        }
    }
}

/// Where the load generator sends each kind of request.
#[derive(Debug, Clone)]
pub struct Urls {
    pub order: String,
    pub product: String,
    pub coupon: String,
    pub balance: String,
}

/// One child process.
pub struct Process {
    pub name: String,
    pub pid: u32,
    child: Child,
    log: PathBuf,
}

pub struct System {
    pub kind: Kind,
    pub urls: Urls,
    pub processes: Vec<Process>,
    databases: Vec<String>,
    prefix: String,
    pg_server: String,
    amqp_url: String,
    log_dir: PathBuf,
}

impl System {
    /// Starts `kind` and waits until every process is ready. On failure everything already
    /// started is stopped and removed again.
    pub async fn start(kind: Kind, params: &Params) -> anyhow::Result<Self> {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let log_dir = std::env::temp_dir().join(format!("saga-bench-{suffix}"));
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let mut system = Self {
            kind,
            urls: Urls {
                order: String::new(),
                product: String::new(),
                coupon: String::new(),
                balance: String::new(),
            },
            processes: Vec::new(),
            databases: Vec::new(),
            prefix: format!("sagabench{suffix}"),
            pg_server: params.pg_server.clone(),
            amqp_url: params.amqp_url.clone(),
            log_dir,
        };
        let started = match kind {
            Kind::Distributed => system.start_distributed(params, &suffix).await,
            Kind::Monolith => system.start_monolith(params, &suffix).await,
        };
        match started {
            Ok(()) => Ok(system),
            Err(err) => {
                system.stop().await;
                Err(err)
            }
        }
    }

    async fn start_distributed(&mut self, params: &Params, suffix: &str) -> anyhow::Result<()> {
        let mut urls = Vec::new();
        for name in SERVICES {
            let database = format!("sagabench_{suffix}_{name}");
            let port = free_port()?;
            let upper = name.to_uppercase();
            let env = vec![
                (
                    format!("{upper}_DATABASE_URL"),
                    format!("{}/{database}", self.pg_server),
                ),
                (format!("{upper}_PORT"), port.to_string()),
            ];
            self.databases.push(database);
            let url = format!("http://127.0.0.1:{port}");
            self.spawn(params, name, &format!("{name}-service"), env)?;
            urls.push(url);
        }
        for url in &urls {
            self.wait_ready(&format!("{url}/ready"), params.ready_timeout)
                .await?;
        }
        // The relay once the services have created and migrated their databases.
        let relay_port = free_port()?;
        let databases = self.databases[..4]
            .iter()
            .map(|name| format!("{}/{name}", self.pg_server))
            .collect::<Vec<_>>()
            .join(",");
        self.spawn(
            params,
            "relay",
            "outbox-relay",
            vec![
                ("RELAY_DATABASE_URLS".to_owned(), databases),
                ("RELAY_METRICS_PORT".to_owned(), relay_port.to_string()),
            ],
        )?;
        self.wait_ready(
            &format!("http://127.0.0.1:{relay_port}/health"),
            params.ready_timeout,
        )
        .await?;
        self.urls = Urls {
            order: urls[0].clone(),
            product: urls[1].clone(),
            coupon: urls[2].clone(),
            balance: urls[3].clone(),
        };
        Ok(())
    }

    async fn start_monolith(&mut self, params: &Params, suffix: &str) -> anyhow::Result<()> {
        let database = format!("sagabench_{suffix}_monolith");
        let port = free_port()?;
        let env = vec![
            (
                "MONOLITH_DATABASE_URL".to_owned(),
                format!("{}/{database}", self.pg_server),
            ),
            ("MONOLITH_PORT".to_owned(), port.to_string()),
        ];
        self.databases.push(database);
        self.spawn(params, "monolith", "saga-monolith", env)?;
        let url = format!("http://127.0.0.1:{port}");
        self.wait_ready(&format!("{url}/ready"), params.ready_timeout)
            .await?;
        self.urls = Urls {
            order: url.clone(),
            product: url.clone(),
            coupon: url.clone(),
            balance: url,
        };
        Ok(())
    }

    /// Starts `binary` with the benchmark's environment plus `env`; every other variable (pool
    /// sizes, consumer and relay settings) reaches it unchanged.
    fn spawn(
        &mut self,
        params: &Params,
        name: &str,
        binary: &str,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let path = params.bin_dir.join(binary);
        if !path.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release --workspace` \
                 (bench/run-saga.sh does) or set BENCH_BIN_DIR",
                path.display()
            );
        }
        let log = self.log_dir.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&path)
            .envs(env)
            .env("AMQP_URL", &self.amqp_url)
            .env("AMQP_PREFIX", &self.prefix)
            .env(
                "RUST_LOG",
                std::env::var("SAGA_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let pid = child.id().context("the child has no pid")?;
        self.processes.push(Process {
            name: name.to_owned(),
            pid,
            child,
            log,
        });
        Ok(())
    }

    async fn wait_ready(&mut self, url: &str, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(response) = client.get(url).timeout(Duration::from_secs(2)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            for process in &mut self.processes {
                if let Some(status) = process.child.try_wait()? {
                    bail!(
                        "{} exited with {status} while starting:\n{}",
                        process.name,
                        tail(&process.log)
                    );
                }
            }
            if Instant::now() >= deadline {
                bail!("{url} not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails if a process has died (its log's end says why).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "{} exited with {status} during the run:\n{}",
                    process.name,
                    tail(&process.log)
                );
            }
        }
        Ok(())
    }

    /// The (name, pid) of every process, for CPU accounting.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .iter()
            .map(|process| (process.name.clone(), process.pid))
            .collect()
    }

    /// Stops every process (SIGTERM, the relay first so that it finishes its batch, then
    /// SIGKILL for one that does not stop) and removes the databases, queues and exchanges.
    pub async fn stop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &process.pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(20), process.child.wait())
                .await
                .is_err()
            {
                eprintln!("saga-bench: {} ignored SIGTERM; killing it", process.name);
                let _ = process.child.kill().await;
            }
        }
        if let Err(err) = self.remove_databases().await {
            eprintln!("saga-bench: {err:#}");
        }
        if self.kind == Kind::Distributed
            && let Err(err) = self.remove_broker_objects().await
        {
            eprintln!("saga-bench: {err:#}");
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }

    async fn remove_databases(&mut self) -> anyhow::Result<()> {
        let admin = format!("{}/postgres", self.pg_server);
        let mut conn = AsyncPgConnection::establish(&admin)
            .await
            .with_context(|| format!("connecting to {}", shared::db::redact(&admin)))?;
        for name in self.databases.drain(..) {
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .with_context(|| format!("dropping database {name}"))?;
        }
        Ok(())
    }

    async fn remove_broker_objects(&self) -> anyhow::Result<()> {
        let connection = shared::amqp::connect(&self.amqp_url, "saga-bench cleanup").await?;
        let channel = connection.create_channel().await?;
        let topology = Topology::new(self.prefix.clone());
        let delays = ConsumerSettings::from_env()?.retry_delays;
        for name in SERVICES {
            let spec = QueueSpec::new(name.to_owned(), Vec::new(), delays.clone());
            topology.delete_queue(&channel, &spec).await?;
        }
        topology.delete_exchanges(&channel).await?;
        let _ = connection.close(200, "cleaned up".into()).await;
        Ok(())
    }

    /// Outbox rows not yet published, over the service databases (0 for the monolith).
    pub async fn unpublished(&self) -> anyhow::Result<i64> {
        if self.kind == Kind::Monolith {
            return Ok(0);
        }
        let mut total = 0;
        for name in &self.databases[..4] {
            let url = format!("{}/{name}", self.pg_server);
            let mut conn = AsyncPgConnection::establish(&url).await?;
            total += shared::outbox::unpublished(&mut conn, Duration::ZERO).await?;
        }
        Ok(total)
    }

    /// Messages waiting in the consumers' queues and their dead-letter queues (0, 0 for the
    /// monolith): a consumer that falls behind shows here before any order is late.
    pub async fn queued(&self) -> anyhow::Result<(u64, u64)> {
        if self.kind == Kind::Monolith {
            return Ok((0, 0));
        }
        let names: Vec<String> = SERVICES.iter().map(|name| (*name).to_owned()).collect();
        let operator =
            shared::dlq::Operator::connect(&self.amqp_url, &self.prefix, names.clone()).await?;
        let topology = Topology::new(self.prefix.clone());
        let (mut waiting, mut dead) = (0, 0);
        for name in &names {
            waiting += u64::from(operator.depth(&topology.queue(name)).await?);
            dead += u64::from(operator.depth(&topology.dead_letter_queue(name)).await?);
        }
        operator.close().await;
        Ok((waiting, dead))
    }
}

/// A port the kernel reports free (bound to port 0 and released again).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The last lines of a process log.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
