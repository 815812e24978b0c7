//! Everything that knows about RabbitMQ: connecting (over TLS for `amqps://`, see [`tls`]),
//! the header vocabulary, the topology and confirmed publishing. The rest of the crate talks in
//! envelopes and queues.

pub mod headers;
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
pub async fn connect(amqp: &AmqpSettings, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let url = amqp.url.as_str();
    let connecting = async {
        let connection = match tls::config(url, &amqp.tls)? {
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
        .with_context(|| format!("connecting to the broker as {name}"))
}

/// A broker that accepts TCP but never answers the handshake must not hang a reconnect loop.
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
