//! What the benchmark binaries share: CPU accounting from /proc and the machine's description.
//! The binaries are `relay-bench` (`src/relay_bench.rs`), `saga-bench` (`src/saga/main.rs`) and
//! the saga benchmark's single-database reference `saga-monolith` (`src/monolith/main.rs`).

pub mod cpu;
pub mod machine;
