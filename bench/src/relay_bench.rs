//! `relay-bench`: how fast the outbox relay moves committed rows to RabbitMQ, against the
//! broker's own ceiling for the same publish pattern, and how long a committed row takes to
//! reach a consumer under a steady load. Run it with `bash bench/run-relay.sh`; the knobs are
//! environment variables (see `bench/README.md` and [`params`]).
//!
//! - [`params`]: the knobs.
//! - [`infra`]: the run's own database and AMQP prefix, removed at the end.
//! - [`workload`]: the envelopes, the pre-fill and the paced producer.
//! - [`relay`]: the relay as a child process.
//! - [`ceiling`]: the database-free publisher.
//! - [`consumer`]: counting and latency on the consuming side.
//! - [`cpu`]: CPU time from /proc.
//! - [`runs`]: the three measurements.
//! - [`report`]: the machine, the figures and their renderings.

mod ceiling;
mod consumer;
mod infra;
mod params;
mod relay;
mod report;
mod runs;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::cpu;

use crate::infra::{BenchBroker, BenchDb, server_version};
use crate::params::Params;
use crate::relay::MarkMode;
use crate::report::{Machine, Report};
use crate::runs::Bench;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let params = Params::from_env()?;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let db = BenchDb::create(&params.pg_server, &suffix).await?;
    let prefix = format!("bench{suffix}");
    let broker = match BenchBroker::declare(&params.amqp_url, &prefix).await {
        Ok(broker) => broker,
        Err(err) => {
            cleanup(&db, None).await;
            return Err(err);
        }
    };
    eprintln!("relay-bench: database {}, AMQP prefix {prefix}", db.name);

    let outcome = tokio::select! {
        outcome = run(&params, &db, &broker) => outcome,
        // Dropping the run kills the relay child; the cleanup below still happens.
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    cleanup(&db, Some(&broker)).await;
    let report = outcome?;

    print!("{}", report.summary());
    std::fs::create_dir_all(&params.results_dir)
        .with_context(|| format!("creating {}", params.results_dir.display()))?;
    let path = params.results_dir.join(format!("relay-{}.md", report.date));
    std::fs::write(&path, report.markdown())
        .with_context(|| format!("writing {}", path.display()))?;
    println!("\nresults written to {}\n", path.display());
    println!("For the README:\n\n{}", report.readme_table());
    Ok(())
}

async fn run(params: &Params, db: &BenchDb, broker: &BenchBroker) -> anyhow::Result<Report> {
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let machine = Machine::probe(server_version(&mut db.connect().await?).await?);

    let messages = workload::messages(params.rows)?;
    let rows = Arc::new(runs::ceiling_rows(&messages)?);
    drop(messages);
    let body_bytes =
        rows.iter().map(|row| row.body.len()).sum::<usize>() as f64 / rows.len() as f64;

    let bench = Bench::new(params, db, broker).await?;
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

    Ok(Report {
        date,
        params: params.clone(),
        machine,
        body_bytes,
        prefill,
        relays,
        matching_ceiling: ceilings.len() - 1,
        ceilings,
        latency,
    })
}

/// Removes the database and the broker objects; a failure here is reported, not fatal, so it
/// never hides the run's own outcome.
async fn cleanup(db: &BenchDb, broker: Option<&BenchBroker>) {
    if let Some(broker) = broker
        && let Err(err) = broker.delete().await
    {
        eprintln!("warning: could not delete the benchmark's queues and exchanges: {err:#}");
    }
    if let Err(err) = db.drop_database().await {
        eprintln!("warning: could not drop database {}: {err:#}", db.name);
    }
}
