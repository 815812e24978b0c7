#!/usr/bin/env bash
# The one command that reproduces the saga benchmark: builds the release services, relay,
# monolith reference and benchmark, then runs the benchmark, which starts each system itself as
# separate processes. Every knob is an environment variable passed through unchanged (see
# bench/README.md), e.g.
#   SAGA_BENCH_STEP=20s SAGA_BENCH_SYSTEMS=distributed bash bench/run-saga.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The figures of record were measured without TLS on loopback, where it would only add its own
# CPU cost to the hops being measured; PGSSLMODE=prefer (or stricter) measures with it.
export PGSSLMODE="${PGSSLMODE:-disable}"

# Every consumer's queue is partitioned behind a consistent-hash exchange (README,
# "Prerequisites"): on a local broker without the plugin, the services would never get ready.
if command -v rabbitmq-plugins >/dev/null \
    && ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_consistent_hash_exchange; then
    rabbitmq-plugins enable rabbitmq_consistent_hash_exchange >/dev/null
fi

cargo build --release -p bench -p outbox-relay -p order-service -p product-service \
  -p coupon-service -p balance-service -p monitor-service
exec "$root/target/release/saga-bench" "$@"
