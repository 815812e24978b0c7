//! The toolkit both benchmarks share, one piece per mechanism:
//!
//! - [`command_line`]: `--help` and `--version` of the three binaries;
//! - [`params`]: the knobs, read from environment variables and recorded with the results;
//! - [`db`]: the PostgreSQL server the benchmarks create their databases on;
//! - [`process`]: a system-under-test binary run as a child process, with its log;
//! - [`cpu`]: CPU time of those processes, PostgreSQL, RabbitMQ and the benchmark, from /proc;
//! - [`machine`]: the machine the figures were measured on;
//! - [`stats`]: percentiles and rates;
//! - [`report`]: results as data (JSON) and their one rendering (markdown).
//!
//! The binaries are `relay-bench` (`src/relay/`), `saga-bench` (`src/saga/`) and the saga
//! benchmark's single-database reference `saga-monolith` (`src/monolith/`).

pub mod command_line;
pub mod cpu;
pub mod db;
pub mod machine;
pub mod params;
pub mod process;
pub mod report;
pub mod stats;
