//! Everything that knows about RabbitMQ: connecting (over TLS for `amqps://`, see [`tls`]; to
//! the first live node of a cluster, see [`nodes`]), the header vocabulary, the topology and confirmed publishing. The rest of the crate talks in
//! envelopes and queues.

pub mod headers;
pub mod nodes;
pub mod publish;
pub mod tls;
pub mod topology;
pub mod user;

use std::time::Duration;

use anyhow::Context;
use lapin::{Connection, ConnectionProperties};

use crate::backoff::Backoff;
use crate::config::AmqpSettings;
use crate::shutdown::Shutdown;

pub use topology::{CONSISTENT_HASH, DEFAULT_PARTITIONS, QueueSpec, Topology};
pub use user::user_of;

/// Opens one connection to the broker `amqp` names, named `name` (shown in the broker's
/// connection list): plain for `amqp://`, TLS with `amqp.tls` for `amqps://`. The only way any
/// component connects.
///
/// With several nodes in `AMQP_URL` ([`nodes`]) it tries them in turn, starting at the next one
/// in [`nodes::Rotation`], each within [`CONNECT_TIMEOUT`], and returns the first connection
/// that opens: a reconnect after a node died reaches a live one.
pub async fn connect(amqp: &AmqpSettings, name: &str) -> anyhow::Result<Connection> {
    let context = || format!("connecting to the broker as {name}");
    let nodes = nodes::nodes(&amqp.url).with_context(context)?;
    // Every node has the same scheme, so one TLS configuration serves them all (the host name
    // checked is each node's own).
    let tls = tls::config(&nodes[0].url, &amqp.tls).with_context(context)?;
    if let [node] = nodes.as_slice() {
        return connect_node(&node.url, tls, name)
            .await
            .with_context(context);
    }
    let start = nodes::Rotation::next(nodes.len());
    let mut failures = Vec::new();
    for node in nodes.iter().cycle().skip(start).take(nodes.len()) {
        match connect_node(&node.url, tls.clone(), name).await {
            Ok(connection) => return Ok(connection),
            Err(err) => {
                tracing::warn!(node = %node.host, error = format!("{err:#}"), "broker node unreachable, trying the next");
                failures.push(format!("{}: {err:#}", node.host));
            }
        }
    }
    Err(anyhow::anyhow!(
        "no node answered ({})",
        failures.join("; ")
    ))
    .with_context(context)
}

/// One connection to the single node at `url`, within [`CONNECT_TIMEOUT`].
async fn connect_node(
    url: &str,
    tls: Option<lapin::tcp::OwnedTLSConfig>,
    name: &str,
) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let connecting = async {
        let connection = match tls {
            None => Connection::connect(url, properties).await?,
            Some(tls) => {
                let runtime = lapin::runtime::default_runtime()?;
                Connection::connect_with_config(url, properties, tls, runtime).await?
            }
        };
        anyhow::Ok(connection)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))
        .and_then(|connected| connected)
}

/// A broker that accepts TCP but never answers the handshake must not hang a reconnect loop;
/// with several nodes the limit holds per node, so a silent node costs one limit, then the
/// next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects, retrying with backoff until it succeeds or shutdown is requested (then `None`).
pub async fn connect_with_retry(
    amqp: &AmqpSettings,
    name: &str,
    shutdown: &mut Shutdown,
) -> Option<Connection> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        if shutdown.is_triggered() {
            return None;
        }
        match connect(amqp, name).await {
            Ok(connection) => return Some(connection),
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = format!("{err:#}"),
                    ?delay,
                    "broker unreachable, retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => return None,
                }
            }
        }
    }
}
