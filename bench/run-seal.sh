#!/usr/bin/env bash
# The one command that reproduces the sealing benchmark: builds the release benchmark and runs
# it. The knob is an environment variable (see bench/README.md), e.g.
#   SEAL_BENCH_EVENTS=100000 bash bench/run-seal.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --release -p bench --bin seal-bench
exec "$root/target/release/seal-bench" "$@"
