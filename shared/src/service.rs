//! One process supervises its tasks: the HTTP server and the consumers run side by side, and a
//! shutdown stops the server gracefully (in-flight requests finish) and drains the consumers.

use actix_web::dev::Server;
use tokio::task::JoinSet;

use crate::consumer::Consumer;
use crate::shutdown::Shutdown;

/// Runs `server` and `consumers` until `shutdown`; returns once all of them have stopped. A
/// consumer or the server ending on its own (an error) stops the others too.
pub async fn run(
    server: Server,
    consumers: Vec<Consumer>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let handle = server.handle();
    let mut consumer_tasks = JoinSet::new();
    for consumer in consumers {
        consumer_tasks.spawn(consumer.run(shutdown.clone()));
    }
    let server_task = tokio::spawn(server);
    let outcome: anyhow::Result<()> = tokio::select! {
        _ = shutdown.wait() => Ok(()),
        Some(ended) = consumer_tasks.join_next() => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.context("a consumer failed")),
            Err(err) => Err(anyhow::Error::new(err).context("a consumer panicked")),
        },
    };
    // Stop taking requests, let in-flight ones finish.
    handle.stop(true).await;
    if let Ok(Err(err)) = server_task.await {
        tracing::warn!(error = %err, "HTTP server ended with an error");
    }
    // Consumers see the same shutdown signal only if it was triggered; on an error path they
    // are aborted instead (their unacked deliveries go back to the queue).
    if shutdown.is_triggered() {
        while consumer_tasks.join_next().await.is_some() {}
    } else {
        consumer_tasks.shutdown().await;
    }
    outcome
}
