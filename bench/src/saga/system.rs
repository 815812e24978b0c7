//! The system under test, started as separate processes from the release binaries, exactly as
//! deployed: the four saga services, the monitor and the outbox relay (the distributed system),
//! or the single-database reference `saga-monolith`. Each run gets its own databases and AMQP
//! prefix and removes them when it stops, so it can share the servers with anything else.

use std::time::{Duration, Instant};

use anyhow::bail;
use bench::params::{SagaParams, SystemKind as Kind};
use bench::process::{self, Logs, Process, free_port};
use outbox_relay::RelaySettings;
use shared::amqp::{QueueSpec, Topology};
use shared::config::{ConsumerSettings, PoolSettings};

/// The consumers of the distributed system, in start order (the relay comes last).
const SERVICES: [&str; 5] = ["order", "product", "coupon", "balance", "monitor"];

/// How long a process may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Where the load generator sends each kind of request.
#[derive(Debug, Clone, Default)]
pub struct Urls {
    /// Every order-service instance: orders are placed on them round robin.
    pub orders: Vec<String>,
    pub product: String,
    pub coupon: String,
    pub balance: String,
}

pub struct System {
    pub kind: Kind,
    pub urls: Urls,
    processes: Vec<Process>,
    databases: Vec<String>,
    prefix: String,
    params: SagaParams,
    logs: Logs,
}

impl System {
    /// Starts `kind` and waits until every process is ready. On failure everything already
    /// started is stopped and removed again.
    pub async fn start(kind: Kind, params: &SagaParams) -> anyhow::Result<Self> {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let mut system = Self {
            kind,
            urls: Urls::default(),
            processes: Vec::new(),
            databases: Vec::new(),
            prefix: format!("sagabench{suffix}"),
            params: params.clone(),
            logs: Logs::create(&format!("saga-bench-{suffix}"))?,
        };
        let started = match kind {
            Kind::Distributed => system.start_distributed(&suffix).await,
            Kind::Monolith => system.start_monolith(&suffix).await,
        };
        match started {
            Ok(()) => Ok(system),
            Err(err) => {
                system.stop().await;
                Err(err)
            }
        }
    }

    async fn start_distributed(&mut self, suffix: &str) -> anyhow::Result<()> {
        let mut ports = Vec::new();
        let urls = self.spawn_services(suffix, &mut ports)?;
        // Every instance of every service is started before any is waited for, so that the
        // broker spreads the single-active-consumer partitions over instances started together.
        for url in urls.iter().flatten() {
            self.wait_ready(&format!("{url}/ready")).await?;
        }
        // The relay once the services have created and migrated their databases.
        let relay_port = distinct_port(&mut ports)?;
        let databases = self.databases[..4]
            .iter()
            .map(|name| self.params.common.server.database(name).url)
            .collect::<Vec<_>>()
            .join(",");
        let env = vec![
            ("RELAY_DATABASE_URLS".to_owned(), databases),
            ("RELAY_METRICS_PORT".to_owned(), relay_port.to_string()),
        ];
        self.spawn("relay", "outbox-relay", env)?;
        self.wait_ready(&format!("http://127.0.0.1:{relay_port}/health"))
            .await?;
        let [orders, product, coupon, balance, _monitor] = <[Vec<String>; 5]>::try_from(urls)
            .map_err(|_| anyhow::anyhow!("one list of URLs per service"))?;
        // Setup requests go to a service's first instance; orders to every order instance.
        let first = |urls: Vec<String>| {
            urls.into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("a service without an instance"))
        };
        self.urls = Urls {
            product: first(product)?,
            coupon: first(coupon)?,
            balance: first(balance)?,
            orders,
        };
        Ok(())
    }

    /// Starts `SAGA_BENCH_INSTANCES` processes of each service, every instance of a service
    /// with the same environment (its database, the AMQP prefix) but its own port; returns
    /// their base URLs, per service in [`SERVICES`] order.
    fn spawn_services(
        &mut self,
        suffix: &str,
        ports: &mut Vec<u16>,
    ) -> anyhow::Result<Vec<Vec<String>>> {
        let instances = self.params.instances;
        let mut urls = Vec::new();
        for name in SERVICES {
            let upper = name.to_uppercase();
            let database = self.database(&format!("sagabench_{suffix}_{name}"));
            let mut service = Vec::new();
            for instance in 1..=instances {
                let port = distinct_port(ports)?;
                let env = vec![
                    (format!("{upper}_DATABASE_URL"), database.clone()),
                    (format!("{upper}_PORT"), port.to_string()),
                ];
                // One instance keeps the plain name, as in the results before the knob.
                let process = match instances {
                    1 => name.to_owned(),
                    _ => format!("{name}-{instance}"),
                };
                self.spawn(&process, &format!("{name}-service"), env)?;
                service.push(format!("http://127.0.0.1:{port}"));
            }
            urls.push(service);
        }
        Ok(urls)
    }

    async fn start_monolith(&mut self, suffix: &str) -> anyhow::Result<()> {
        let port = free_port()?;
        let database = self.database(&format!("sagabench_{suffix}_monolith"));
        let env = vec![
            ("MONOLITH_DATABASE_URL".to_owned(), database),
            ("MONOLITH_PORT".to_owned(), port.to_string()),
        ];
        self.spawn("monolith", "saga-monolith", env)?;
        let url = format!("http://127.0.0.1:{port}");
        self.wait_ready(&format!("{url}/ready")).await?;
        self.urls = Urls {
            orders: vec![url.clone()],
            product: url.clone(),
            coupon: url.clone(),
            balance: url,
        };
        Ok(())
    }

    /// Names a database the system creates itself (and `stop` drops); returns its URL.
    fn database(&mut self, name: &str) -> String {
        self.databases.push(name.to_owned());
        self.params.common.server.database(name).url
    }

    /// Starts `binary` as `name` with `env` plus the broker settings.
    fn spawn(
        &mut self,
        name: &str,
        binary: &str,
        mut env: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        env.extend([
            ("AMQP_URL".to_owned(), self.params.common.amqp_url.clone()),
            ("AMQP_PREFIX".to_owned(), self.prefix.clone()),
            ("RUST_LOG".to_owned(), self.params.rust_log.clone()),
            // Sealing is measured as deployed; the public development keys unless given others.
            (
                "EVENT_KEYS".to_owned(),
                shared::config::env_or("EVENT_KEYS", shared::seal::settings::DEV),
            ),
        ]);
        let process = Process::spawn(
            name,
            &self.params.bin_dir.join(binary),
            &env,
            &self.logs,
            "build it with `cargo build --release --workspace` (bench/run-saga.sh does) or set \
             BENCH_BIN_DIR",
        )?;
        self.processes.push(process);
        Ok(())
    }

    async fn wait_ready(&mut self, url: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let timeout = self.params.ready_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(response) = client.get(url).timeout(Duration::from_secs(2)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                bail!("{url} not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails if a process has died (its log's end says why).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.processes.iter_mut().try_for_each(Process::check_alive)
    }

    /// The (name, pid) of every process, for CPU accounting.
    pub fn pids(&self) -> Vec<(String, u32)> {
        process::pids(&self.processes)
    }

    /// Stops every process (SIGTERM, the relay first so that it finishes its batch, then
    /// SIGKILL for one that does not stop) and removes the databases, queues and exchanges.
    pub async fn stop(&mut self) {
        while let Some(process) = self.processes.pop() {
            if let Err(err) = process.stop(STOP_GRACE).await {
                eprintln!("saga-bench: {err:#}");
            }
        }
        if let Err(err) = self.params.common.server.drop(&self.databases).await {
            eprintln!("saga-bench: {err:#}");
        }
        self.databases.clear();
        if self.kind == Kind::Distributed
            && let Err(err) = self.remove_broker_objects().await
        {
            eprintln!("saga-bench: {err:#}");
        }
        self.logs.remove();
    }

    async fn remove_broker_objects(&self) -> anyhow::Result<()> {
        let connection =
            shared::amqp::connect(&self.params.common.amqp(&self.prefix), "saga-bench cleanup")
                .await?;
        let channel = connection.create_channel().await?;
        let topology = Topology::new(self.prefix.clone());
        let consumer = ConsumerSettings::from_env()?;
        for name in SERVICES {
            let spec = QueueSpec::new(name.to_owned(), Vec::new(), consumer.retry_delays.clone())
                .with_partitions(consumer.partitions);
            topology.delete_queue(&channel, &spec).await?;
        }
        topology.delete_exchanges(&channel).await?;
        let _ = connection.close(200, "cleaned up".into()).await;
        Ok(())
    }

    /// `VACUUM ANALYZE` of every database of the system. The search's overload steps leave
    /// dead rows behind (the relay deletes every published outbox row); a server with
    /// autovacuum off, as the development machine's, would keep them under the latency runs,
    /// which then measure that server's housekeeping rather than the system.
    pub async fn vacuum(&self) -> anyhow::Result<()> {
        use diesel_async::SimpleAsyncConnection;
        for name in &self.databases {
            let mut conn = self.params.common.server.database(name).connect().await?;
            conn.batch_execute("VACUUM ANALYZE").await?;
        }
        Ok(())
    }

    /// Waits, at most `limit`, until no message waits in the consumers' queues: the monitor
    /// can trail the sagas by thousands of events after an overloaded window, and the next
    /// window would pay for them.
    pub async fn wait_until_drained(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let (waiting, _) = self.queued().await?;
            if waiting == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{waiting} messages still queued {limit:?} after the window"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Outbox rows not yet published, over the service databases (0 for the monolith).
    pub async fn unpublished(&self) -> anyhow::Result<i64> {
        if self.kind == Kind::Monolith {
            return Ok(0);
        }
        let mut total = 0;
        for name in &self.databases[..4] {
            let mut conn = self.params.common.server.database(name).connect().await?;
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
            shared::dlq::Operator::connect(&self.params.common.amqp(&self.prefix), names.clone())
                .await?;
        let topology = Topology::new(self.prefix.clone());
        let (mut waiting, mut dead) = (0, 0);
        for name in &names {
            let spec = QueueSpec::new(name.as_str(), Vec::new(), Vec::new())
                .with_partitions(ConsumerSettings::from_env()?.partitions);
            for partition in topology.partition_queues(&spec) {
                waiting += u64::from(operator.depth(&partition).await?);
            }
            dead += u64::from(operator.depth(&topology.dead_letter_queue(name)).await?);
        }
        operator.close().await;
        Ok((waiting, dead))
    }
}

/// Refuses to start more instances than the server's `max_connections` can hold at full load,
/// by the README's connection budget: each service instance's pool, the order instances' LISTEN
/// sessions, and per relayed database the relay's claimers, the connection its cleanup and
/// gauge share, and its LISTEN session. Checked before any system starts.
pub async fn check_connection_budget(params: &SagaParams) -> anyhow::Result<()> {
    let pool = shared::config::from_env::<PoolSettings>()?.pool_size as u64;
    let claimers = shared::config::from_env::<RelaySettings>()?.claimers as u64;
    let instances = params.instances as u64;
    let budget = connection_budget(instances, pool, claimers);
    let max = params.common.server.max_connections().await?;
    if budget > max {
        bail!(
            "SAGA_BENCH_INSTANCES={instances} with DB_POOL_SIZE={pool} and \
             RELAY_CLAIMERS={claimers} may open {budget} PostgreSQL connections, more than the \
             server's max_connections={max}: lower DB_POOL_SIZE or SAGA_BENCH_INSTANCES \
             (README, \"Connection budget\")"
        );
    }
    Ok(())
}

/// A port the kernel reports free and not already handed to another process of this system
/// (recorded in `taken`): the processes bind theirs only once started.
fn distinct_port(taken: &mut Vec<u16>) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = free_port()?;
        if !taken.contains(&port) {
            taken.push(port);
            return Ok(port);
        }
    }
    bail!("no free port that is not already taken")
}

/// The README's connection budget for `instances` of each service with pools of `pool`, and one
/// relay with `claimers` on the four databases that write events.
fn connection_budget(instances: u64, pool: u64, claimers: u64) -> u64 {
    instances * (SERVICES.len() as u64 * pool + 1) + 4 * (claimers + 2)
}

#[cfg(test)]
mod tests {
    use super::connection_budget;

    #[test]
    fn the_connection_budget_is_the_readme_formula_with_one_relay() {
        // README, "Connection budget": 47 for one instance of everything with the defaults.
        assert_eq!(connection_budget(1, 6, 2), 47);
        assert_eq!(connection_budget(3, 6, 2), 3 * 31 + 16);
        assert_eq!(connection_budget(3, 4, 2), 79);
    }
}
