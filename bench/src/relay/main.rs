//! `relay-bench`: how fast the outbox relay moves committed rows to RabbitMQ, against the
//! broker's own ceiling for the same publish pattern, and how long a committed row takes to
//! reach a consumer under a steady load. Run it with `bash bench/run-relay.sh`; the knobs are
//! environment variables (`bench/README.md`, [`bench::params::RelayParams`]).
//!
//! - [`broker`]: the run's own AMQP prefix, removed at the end.
//! - [`workload`]: the envelopes, the pre-fill and the paced producer.
//! - [`launch`]: the relay as a child process, in either retention mode.
//! - [`ceiling`]: the database-free publisher.
//! - [`consumer`]: counting and latency on the consuming side.
//! - [`runs`]: the three measurements.
//! - [`results`]: the figures as data, and the tables they make.

mod broker;
mod ceiling;
mod consumer;
mod launch;
mod results;
mod runs;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::db::Database;
use bench::machine::Machine;
use bench::params::RelayParams;
use bench::process::Logs;
use bench::report::{self, Header};
use shared::db::{OUTBOX_MIGRATIONS, run_migrations};

use crate::broker::BenchBroker;
use crate::launch::MarkMode;
use crate::results::RelayResults;
use crate::runs::Bench;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench::command_line::parse(
        "relay-bench",
        "The outbox relay against the broker's own publish ceiling",
    );
    let params = RelayParams::from_env()?;
    let server = &params.common.server;
    let machine = Machine::probe(server).await?;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let db = server.create(&format!("bench_relay_{suffix}")).await?;
    let prefix = format!("bench{suffix}");
    let logs = Logs::create(&format!("relay-bench-{suffix}"))?;
    let broker = match BenchBroker::declare(params.common.amqp(&prefix)).await {
        Ok(broker) => broker,
        Err(err) => {
            cleanup(&params, &db, None, &logs).await;
            return Err(err);
        }
    };
    eprintln!("relay-bench: database {}, AMQP prefix {prefix}", db.name);

    let outcome = tokio::select! {
        outcome = run(&params, &db, &broker, &logs, machine) => outcome,
        // Dropping the run kills the relay child; the cleanup below still happens.
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    cleanup(&params, &db, Some(&broker), &logs).await;
    let results = outcome?;

    let path = report::save(&results, &params.common.results_dir)?;
    println!("\n{}", report::summary(&results));
    println!("results written to {} and its .json", path.display());
    Ok(())
}

async fn run(
    params: &RelayParams,
    db: &Database,
    broker: &BenchBroker,
    logs: &Logs,
    machine: Machine,
) -> anyhow::Result<RelayResults> {
    run_migrations(&db.url, OUTBOX_MIGRATIONS).await?;
    let messages = workload::messages(params.rows)?;
    let rows = Arc::new(runs::ceiling_rows(&messages)?);
    drop(messages);
    let body_bytes =
        rows.iter().map(|row| row.body.len()).sum::<usize>() as f64 / rows.len() as f64;

    let bench = Bench::new(params, db, broker, logs).await?;
    // Both ways of retiring a confirmed row, each on a fresh backlog of the same messages.
    let mut prefill = Duration::ZERO;
    let mut relays = Vec::new();
    for mode in [MarkMode::Mark, MarkMode::Delete] {
        // Fresh event ids each time: the outbox's event_id is unique.
        let messages = workload::messages(params.rows)?;
        eprintln!("relay-bench: pre-filling {} rows", params.rows);
        let prefill_started = Instant::now();
        workload::prefill(db, &messages).await?;
        prefill = prefill_started.elapsed();
        eprintln!(
            "relay-bench: throughput run (relay process, {})",
            mode.label()
        );
        relays.push(bench.throughput(params.rows, mode).await?);
    }

    // One publisher is the plain baseline; as many as the relay has claimers is the fair
    // comparison, since each claimer keeps its own window in flight.
    let mut publisher_counts = vec![1, params.claimers];
    publisher_counts.dedup();
    let mut ceilings = Vec::with_capacity(publisher_counts.len());
    for publishers in &publisher_counts {
        eprintln!("relay-bench: broker ceiling run, {publishers} publisher(s)");
        ceilings.push(bench.ceiling(rows.clone(), *publishers).await?);
    }

    eprintln!(
        "relay-bench: latency run, {} rows/s for {} s",
        params.rate,
        params.latency_duration.as_secs()
    );
    let latency = bench.latency(params.rows as u64).await?;
    bench.close().await;

    Ok(RelayResults {
        header: Header::new("relay", machine, params.knobs.clone()),
        body_bytes,
        prefill,
        relays,
        matching_ceiling: ceilings.len() - 1,
        ceilings,
        latency,
    })
}

/// Removes the database, the broker objects and the logs; a failure here is reported, not
/// fatal, so it never hides the run's own outcome.
async fn cleanup(params: &RelayParams, db: &Database, broker: Option<&BenchBroker>, logs: &Logs) {
    if let Some(broker) = broker
        && let Err(err) = broker.delete().await
    {
        eprintln!("warning: could not delete the benchmark's queues and exchanges: {err:#}");
    }
    if let Err(err) = params
        .common
        .server
        .drop(std::slice::from_ref(&db.name))
        .await
    {
        eprintln!("warning: could not drop database {}: {err:#}", db.name);
    }
    logs.remove();
}
