//! `sagactl up`: every service and the relay in one process, stopped together on Ctrl-C.

use std::future::Future;

use anyhow::Context;
use shared::service::{Application, ServiceSettings};
use shared::shutdown::Shutdown;
use tokio::task::JoinSet;

use crate::seed;

type Builder = fn(
    &ServiceSettings,
) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<Application>> + '_>>;

/// (name, default port, builder) for each service.
const SERVICES: [(&str, u16, Builder); 5] = [
    (order_service::NAME, order_service::DEFAULT_PORT, |s| {
        Box::pin(order_service::build(s))
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

pub async fn run(seed_after_start: bool) -> anyhow::Result<()> {
    let shutdown = Shutdown::from_os_signals();
    let mut tasks = JoinSet::new();
    let mut urls = Vec::new();
    for (name, port, build) in SERVICES {
        let settings = ServiceSettings::from_env(name, port)?;
        let app = build(&settings)
            .await
            .with_context(|| format!("starting the {name} service"))?;
        let url = format!("http://{}:{}", settings.host, app.port());
        println!("{name:<8} {url}");
        urls.push((name, url));
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            app.run(shutdown)
                .await
                .with_context(|| format!("{name} service"))
        });
    }
    // The services created and migrated their databases; now the relay can serve them.
    let relay_settings = outbox_relay::RelaySettings::from_env()?;
    println!(
        "relay    {} database(s), exchange {}.events",
        relay_settings.database_urls.len(),
        relay_settings.amqp.prefix
    );
    tasks.spawn(outbox_relay::run(relay_settings, shutdown.clone()));
    println!("\nall up; Ctrl-C stops everything\n");

    if seed_after_start {
        let url = |name: &str| {
            urls.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, u)| u.clone())
        };
        // No gateway in front of them: every service at its own address.
        let targets = seed::Targets {
            gateway_url: String::new(),
            product_url: url(product_service::NAME),
            coupon_url: url(coupon_service::NAME),
            balance_url: url(balance_service::NAME),
            order_url: url(order_service::NAME),
        };
        if let Err(err) = seed::run(&targets).await {
            tracing::error!(error = format!("{err:#}"), "seeding failed");
        }
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
