//! `saga-bench`: whole order sagas per second, and how long one takes, on the distributed
//! system (four services, the monitor and the relay as separate processes over RabbitMQ)
//! against the same order flow as one transaction in one database (`saga-monolith`), through
//! the same HTTP front. Run it with `bash bench/run-saga.sh`; the knobs are environment
//! variables (see `bench/README.md` and [`params`]).
//!
//! - [`params`]: the knobs.
//! - [`system`]: the system under test as child processes, with its own databases and prefix.
//! - [`fixtures`]: products, charged users and coupons, through the HTTP APIs.
//! - [`load`]: the open-loop generator: POST, then long-poll to the end.
//! - [`figures`]: throughput, percentiles and the bounded-backlog verdict of one run.
//! - [`search`]: the maximum sustained rate and the two latency runs.
//! - [`cpu`]: CPU per process, PostgreSQL, RabbitMQ and the generator.
//! - [`report`]: the results file and the README table.

mod cpu;
mod figures;
mod fixtures;
mod load;
mod params;
mod report;
mod search;
mod sql;
mod system;

use anyhow::Context;
use bench::machine::Machine;

use crate::params::Params;
use crate::report::Report;
use crate::system::System;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let params = Params::from_env()?;
    let admin = format!("{}/postgres", params.pg_server);
    let machine = Machine::probe(
        sql::server_version(&admin)
            .await
            .context("connecting to PostgreSQL (BENCH_PG_URL)")?,
    );
    let pg_settings = sql::server_settings(&admin).await?;
    // Ctrl-C or SIGTERM ends the run, but only after the system is stopped and removed.
    let mut stop = shared::shutdown::Shutdown::from_os_signals();
    let mut systems = Vec::new();
    for kind in params.systems.clone() {
        eprintln!("saga-bench: starting the {} system", kind.label());
        let mut system = System::start(kind, &params).await?;
        let outcome = tokio::select! {
            outcome = search::measure(&mut system, &params) => outcome,
            _ = stop.wait() => Err(anyhow::anyhow!("interrupted")),
        };
        system.stop().await;
        systems.push(outcome.with_context(|| format!("measuring the {} system", kind.label()))?);
    }
    let report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        params,
        machine,
        pg_settings,
        systems,
    };
    std::fs::create_dir_all(&report.params.results_dir)?;
    let path = report
        .params
        .results_dir
        .join(format!("saga-{}.md", report.date));
    std::fs::write(&path, report.markdown())
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", report.table());
    println!("results written to {}", path.display());
    Ok(())
}
