//! The benchmarks' command line: `--help` and `--version` answer without running anything.
//! Their knobs are environment variables only (each one command passes the environment through);
//! `bench/README.md` lists them with their defaults and every results file records the values a
//! run used.

/// Answers `--help`/`--version` (exiting) and refuses any argument; returns to run otherwise.
pub fn parse(name: &'static str, about: &'static str) {
    clap::Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .after_help(
            "Configured by environment variables only: bench/README.md lists each with its \
             default, durations as 500ms, 20s, 5m; every run records the values it used.",
        )
        .get_matches();
}
