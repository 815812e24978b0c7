//! Everything that knows about RabbitMQ: connecting, the header vocabulary, the topology and
//! confirmed publishing. The rest of the crate talks in envelopes and queues.

pub mod headers;
pub mod publish;
pub mod topology;
pub mod user;

use std::time::Duration;

use anyhow::Context;
use lapin::{Connection, ConnectionProperties};

use crate::backoff::Backoff;
use crate::shutdown::Shutdown;

pub use topology::{QueueSpec, Topology};
pub use user::user_of;

/// Opens one connection named `name` (shown in the broker's connection list).
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))
        .and_then(|connected| connected.map_err(anyhow::Error::from))
        .with_context(|| format!("connecting to the broker as {name}"))
}

/// A broker that accepts TCP but never answers the handshake must not hang a reconnect loop.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects, retrying with backoff until it succeeds or shutdown is requested (then `None`).
pub async fn connect_with_retry(
    url: &str,
    name: &str,
    shutdown: &mut Shutdown,
) -> Option<Connection> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        if shutdown.is_triggered() {
            return None;
        }
        match connect(url, name).await {
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
