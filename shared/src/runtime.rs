//! The async runtime every binary runs on.
//!
//! One worker thread unless `TOKIO_WORKER_THREADS` (tokio's own variable) says otherwise. A
//! service's work is waiting on PostgreSQL and RabbitMQ; a second worker only moved its tasks
//! between threads, and on a 2-core machine shared with the database and the broker those
//! moves (futex wake-ups, context switches) were a fifth of the services' CPU and added to every
//! hop's latency (bench/results/saga-levers-2026-12-06.md, lever 4). Scale a service with
//! instances; give a process that has cores of its own more threads.

use std::future::Future;

use anyhow::Context;

/// The variable tokio's own `#[tokio::main]` reads for the same purpose.
pub const WORKER_THREADS: &str = "TOKIO_WORKER_THREADS";

/// Runs `main` to completion on a runtime with [`worker_threads`] workers.
pub fn run<F: Future<Output = anyhow::Result<()>>>(main: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads(
            std::env::var(WORKER_THREADS).ok().as_deref(),
        )?)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(main)
}

/// The worker threads `value` (of [`WORKER_THREADS`]) asks for: 1 when unset or empty.
pub fn worker_threads(value: Option<&str>) -> anyhow::Result<usize> {
    match value.map(str::trim) {
        None | Some("") => Ok(1),
        Some(text) => match text.parse::<usize>() {
            Ok(threads) if threads > 0 => Ok(threads),
            _ => anyhow::bail!(
                "{WORKER_THREADS}={text:?}: expected a whole number of threads, at least 1"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn one_thread_unless_told_and_nonsense_is_refused() {
        assert_eq!(worker_threads(None).unwrap(), 1);
        assert_eq!(worker_threads(Some("")).unwrap(), 1);
        assert_eq!(worker_threads(Some("4")).unwrap(), 4);
        for bad in ["0", "-1", "two", "1.5"] {
            let err = worker_threads(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("TOKIO_WORKER_THREADS"), "{err}");
        }
    }
}
