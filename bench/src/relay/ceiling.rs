//! The broker's own ceiling for the relay's publish pattern: no database, just confirmed,
//! mandatory, pipelined windows of the relay's batch size, with the relay's message properties.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use lapin::options::ConfirmSelectOptions;
use outbox_relay::publisher::properties;
use outbox_relay::store::PendingRow;
use shared::amqp::connect;
use shared::amqp::publish::{Outcome, Outgoing, publish_all};
use shared::config::AmqpSettings;

/// Publishes every row to `exchange` from `publishers` connections, each taking the next
/// window as a relay claimer takes the next batch; returns once every window is confirmed.
pub async fn publish(
    amqp: &AmqpSettings,
    exchange: &str,
    rows: Arc<Vec<PendingRow>>,
    window: usize,
    publishers: usize,
) -> anyhow::Result<()> {
    let next_window = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..publishers {
        let (amqp, exchange) = (amqp.clone(), exchange.to_owned());
        let (rows, next_window) = (rows.clone(), next_window.clone());
        tasks.spawn(async move {
            // Connecting is inside the timed span, as the relay's is.
            let user = shared::amqp::user_of(&amqp.url)?;
            let connection = connect(&amqp, &format!("relay-bench ceiling #{index}")).await?;
            let channel = connection
                .create_channel()
                .await
                .context("opening channel")?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .context("enabling publisher confirms")?;
            loop {
                let start = next_window.fetch_add(1, Ordering::Relaxed) * window;
                let Some(batch) = rows.get(start..rows.len().min(start + window)) else {
                    break;
                };
                if batch.is_empty() {
                    break;
                }
                // Built per window, as the relay builds them per batch.
                let outgoing = batch
                    .iter()
                    .map(|row| {
                        Ok(Outgoing {
                            exchange: &exchange,
                            routing_key: &row.routing_key,
                            body: &row.body,
                            properties: properties(row)?,
                            user_id: &user,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let outcomes = publish_all(&channel, &outgoing).await;
                if let Some(failed) = outcomes.iter().find(|o| !matches!(o, Outcome::Confirmed)) {
                    bail!("ceiling publish not confirmed: {failed:?}");
                }
            }
            let _ = channel.close(200, "ceiling done".into()).await;
            let _ = connection.close(200, "ceiling done".into()).await;
            anyhow::Ok(())
        });
    }
    while let Some(finished) = tasks.join_next().await {
        finished.context("ceiling publisher panicked")??;
    }
    Ok(())
}
