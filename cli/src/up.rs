//! `sagactl up`: every service and the relay in one process, and the API gateway (nginx) in
//! front of them as a child process when nginx is installed; stopped together on Ctrl-C or
//! SIGTERM.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use shared::service::{Application, ServiceSettings};
use shared::shutdown::Shutdown;
use tokio::task::JoinSet;

use crate::gateway::{self, nginx, nginx::Nginx};
use crate::seed;

type Builder = fn(
    &ServiceSettings,
) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<Application>> + '_>>;

/// (name, default port, builder) for each service.
const SERVICES: [(&str, u16, Builder); 5] = [
    (order_service::NAME, order_service::DEFAULT_PORT, |s| {
        Box::pin(async move {
            order_service::build_with(s, &order_service::OrderArgs::from_env()?).await
        })
    }),
    (product_service::NAME, product_service::DEFAULT_PORT, |s| {
        Box::pin(product_service::build(s))
    }),
    (coupon_service::NAME, coupon_service::DEFAULT_PORT, |s| {
        Box::pin(coupon_service::build(s))
    }),
    (balance_service::NAME, balance_service::DEFAULT_PORT, |s| {
        Box::pin(balance_service::build(s))
    }),
    (monitor_service::NAME, monitor_service::DEFAULT_PORT, |s| {
        Box::pin(monitor_service::build(s))
    }),
];

/// `sagactl up`'s flags.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Seed demo data once everything is up (through the gateway when it runs).
    #[arg(long)]
    pub seed: bool,
    /// Do not start the API gateway (nginx) in front of the services.
    #[arg(long)]
    pub no_gateway: bool,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::from_os_signals();
    let mut tasks = JoinSet::new();
    let mut addresses = Vec::new();
    for (name, port, build) in SERVICES {
        let settings = ServiceSettings::from_env(name, port)?;
        let app = build(&settings)
            .await
            .with_context(|| format!("starting the {name} service"))?;
        let url = format!("http://{}:{}", settings.host, app.port());
        println!("{name:<8} {url}");
        addresses.push((name, reachable(&settings.host, app.port())));
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            app.run(shutdown)
                .await
                .with_context(|| format!("{name} service"))
        });
    }
    // Read before the gateway starts, so that no error can leave it behind.
    let relay_settings = outbox_relay::RelaySettings::from_env()?;
    let gateway = if args.no_gateway {
        None
    } else {
        start_gateway(&addresses, &shutdown, &mut tasks).await?
    };
    // The services created and migrated their databases; now the relay can serve them.
    println!(
        "relay    {} database(s), exchange {}.events",
        relay_settings.database_urls.len(),
        relay_settings.amqp.prefix
    );
    tasks.spawn(outbox_relay::run(relay_settings, shutdown.clone()));
    wait_ready(&addresses).await?;
    println!("\nall up; Ctrl-C stops everything\n");

    if args.seed
        && let Err(err) = seed::run(&seed_targets(gateway, &addresses)).await
    {
        tracing::error!(error = format!("{err:#}"), "seeding failed");
    }

    let mut failure = None;
    while let Some(finished) = tasks.join_next().await {
        match finished {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failure = failure.or(Some(err)),
            Err(err) => {
                failure = failure.or(Some(anyhow::Error::new(err).context("a task panicked")))
            }
        }
    }
    match failure {
        Some(err) => Err(err),
        None => {
            println!("stopped cleanly");
            Ok(())
        }
    }
}

/// The gateway in front of the services at `addresses`, stopped on `shutdown`; its URL, or
/// `None` when nginx is not installed (the services run without it).
async fn start_gateway(
    addresses: &[(&str, String)],
    shutdown: &Shutdown,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Option<String>> {
    let binary = match nginx::find() {
        Ok(binary) => binary,
        Err(missing) => {
            println!(
                "gateway  not started: {missing} (apt-get install nginx-light, or NGINX=/path/to/nginx); use the services' own ports"
            );
            return Ok(None);
        }
    };
    let settings = gateway::Settings::from_env()?;
    let instances = gateway::Instances::from_fn(|service| {
        let address = addresses.iter().find(|(name, _)| *name == service);
        address.map(|(_, a)| a.clone()).into_iter().collect()
    });
    let nginx = Nginx::start(&binary, settings, &instances)
        .await
        .context("starting the gateway (--no-gateway runs without it)")?;
    let url = nginx.url().to_owned();
    println!("{:<8} {url}", "gateway");
    tasks.spawn(nginx.supervise(shutdown.clone()));
    Ok(Some(url))
}

/// How long the services may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Until every service answers `/ready`: its broker session is up, its queues declared and
/// bound. On a new broker, an event published before a consumer's queue exists never reaches
/// that consumer (the monitor would miss a saga's first event), so "all up" waits for it.
async fn wait_ready(addresses: &[(&str, String)]) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + READY_DEADLINE;
    for (name, address) in addresses {
        let url = format!("http://{address}/ready");
        loop {
            let answer = client.get(&url).send().await;
            if answer.is_ok_and(|answer| answer.status().is_success()) {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the {name} service is not ready after {READY_DEADLINE:?} (its /ready); see the log above"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Through the gateway when it runs, else to each service directly.
fn seed_targets(gateway: Option<String>, addresses: &[(&str, String)]) -> seed::Targets {
    let direct = |name: &str| {
        let address = addresses.iter().find(|(n, _)| *n == name);
        address.map(|(_, address)| format!("http://{address}"))
    };
    match gateway {
        Some(url) => seed::Targets::gateway(url),
        None => seed::Targets {
            gateway_url: String::new(),
            product_url: direct(product_service::NAME),
            coupon_url: direct(coupon_service::NAME),
            balance_url: direct(balance_service::NAME),
            order_url: direct(order_service::NAME),
        },
    }
}

/// `host:port` as a client on this machine reaches a service listening there: a wildcard
/// address through the loopback interface, an IPv6 address in brackets.
fn reachable(host: &str, port: u16) -> String {
    match host {
        "0.0.0.0" | "" => format!("127.0.0.1:{port}"),
        "::" => format!("[::1]:{port}"),
        v6 if v6.contains(':') && !v6.starts_with('[') => format!("[{v6}]:{port}"),
        other => format!("{other}:{port}"),
    }
}
