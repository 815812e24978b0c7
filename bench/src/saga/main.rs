//! `saga-bench`: whole order sagas per second, and how long one takes, on the distributed
//! system (four services, the monitor and the relay as separate processes over RabbitMQ)
//! against the same order flow as one transaction in one database (`saga-monolith`), through
//! the same HTTP front. Run it with `bash bench/run-saga.sh`; the knobs are environment
//! variables (`bench/README.md`, [`bench::params::SagaParams`]).
//!
//! - [`system`]: the system under test as child processes, with its own databases and prefix.
//! - [`fixtures`]: products, charged users and coupons, through the HTTP APIs.
//! - [`load`]: the open-loop generator: POST, then long-poll to the end.
//! - [`figures`]: throughput, percentiles and the bounded-backlog verdict of one run.
//! - [`search`]: the maximum sustained rate and the two latency runs.
//! - [`results`]: the figures as data, and the tables they make.

mod figures;
mod fixtures;
mod load;
mod results;
mod search;
mod system;

use anyhow::Context;
use bench::machine::Machine;
use bench::params::{SagaParams, SystemKind};
use bench::report::{self, Header};

use crate::results::SagaResults;
use crate::system::System;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench::command_line::parse(
        "saga-bench",
        "Whole order sagas: the distributed system against its single-database reference",
    );
    let params = SagaParams::from_env()?;
    let machine = Machine::probe(&params.common.server)
        .await
        .context("asking PostgreSQL (BENCH_PG_URL)")?;
    if params.systems.contains(&SystemKind::Distributed) {
        system::check_connection_budget(&params).await?;
    }
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
    let results = SagaResults {
        header: Header::new("saga", machine, params.knobs.clone()),
        low_rate: params.low_rate,
        high_share: params.high_share,
        systems,
    };
    let path = report::save(&results, &params.common.results_dir)?;
    println!("{}", report::summary(&results));
    println!("results written to {} and its .json", path.display());
    Ok(())
}
