#!/usr/bin/env bash
# A three-node RabbitMQ cluster on one machine, beside the machine's own broker (which it never
# touches): for trying failover and for the cluster test (cli/tests/cluster.rs).
#
#   bash scripts/rabbitmq-cluster.sh start  [--base-port 5681] [--dir DIR] [--name saga-c]
#   bash scripts/rabbitmq-cluster.sh status [same options]
#   bash scripts/rabbitmq-cluster.sh stop   [same options]
#
# Node i (1..3) is `{name}{i}@localhost`, listens for AMQP on 127.0.0.1:{base-port + i - 1}
# and for Erlang distribution on {base-port + i + 2}; its data, logs, configuration and pid file
# are in DIR/node{i} (DIR defaults to ${TMPDIR:-/tmp}/saga-rabbitmq-cluster). The nodes share a
# random Erlang cookie of their own (DIR/.erlang.cookie) and load no plugin but
# rabbitmq_consistent_hash_exchange, so the machine's node keeps its management (15672) and
# Prometheus (15692) ports. Connect with
#   AMQP_URL=amqp://guest:guest@127.0.0.1:5681,127.0.0.1:5682,127.0.0.1:5683/%2f
#
# start: idempotent. Starts whichever node is not running (node 1 first on a fresh cluster; the
#        others join it at boot through classic_config peer discovery; a restarted node rejoins
#        with its data) and waits until all three run in one cluster.
# stop:  kills the three nodes (SIGKILL: their data is thrown away anyway) and removes DIR.
# status: one line per node, and whether all three are running and clustered (exit 1 if not).
#
# Runs the nodes as the `rabbitmq` user when started as root, else as the current user.
set -euo pipefail

BASE_PORT=5681
DIR="${TMPDIR:-/tmp}/saga-rabbitmq-cluster"
NAME=saga-c
TIMEOUT=120
RABBIT_BIN=/usr/lib/rabbitmq/bin

usage() { sed -n '2,22p' "$0" >&2; exit 2; }
fail() { printf 'rabbitmq-cluster: %s\n' "$*" >&2; exit 1; }

COMMAND="${1:-}"
[[ -n "$COMMAND" ]] || usage
shift
while [[ $# -gt 0 ]]; do
    case "$1" in
        --base-port) BASE_PORT="$2"; shift 2 ;;
        --dir) DIR="$2"; shift 2 ;;
        --name) NAME="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        *) usage ;;
    esac
done
[[ "$BASE_PORT" =~ ^[0-9]+$ ]] || fail "--base-port takes a number"
[[ -x "$RABBIT_BIN/rabbitmq-server" ]] || fail "RabbitMQ is not installed ($RABBIT_BIN)"

node_name() { echo "${NAME}$1@localhost"; }
amqp_port() { echo $((BASE_PORT + $1 - 1)); }
dist_port() { echo $((BASE_PORT + $1 + 2)); }
node_dir() { echo "$DIR/node$1"; }

# Runs "$@" as the user the nodes run as, with the cluster's cookie (HOME) and none of the
# machine's RabbitMQ environment file (it may name the machine's node).
as_broker() {
    local env=(env -i "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" "LANG=C.UTF-8"
        "HOME=$DIR" "RABBITMQ_CONF_ENV_FILE=$DIR/rabbitmq-env.conf" "ERL_EPMD_ADDRESS=127.0.0.1")
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u rabbitmq -- "${env[@]}" "$@"
    else
        "${env[@]}" "$@"
    fi
}

ctl() { local node=$1; shift; as_broker "$RABBIT_BIN/rabbitmqctl" -q -n "$(node_name "$node")" "$@"; }

pid_of() { cat "$(node_dir "$1")/pid" 2>/dev/null || true; }

# Whether node $1's Erlang VM is alive: its pid file names a process that is not a zombie (a
# VM killed a moment ago stays one until its wrapper shell reaps it).
alive() {
    local pid state
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] || return 1
    state="$(ps -o stat= -p "$pid" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z* ]]
}

prepare() {
    mkdir -p "$DIR"
    [[ -f "$DIR/.erlang.cookie" ]] || (umask 077 && head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$DIR/.erlang.cookie")
    chmod 400 "$DIR/.erlang.cookie"
    : >"$DIR/rabbitmq-env.conf"
    echo '[rabbitmq_consistent_hash_exchange].' >"$DIR/enabled_plugins"
    local i peers=""
    for i in 1 2 3; do peers+="cluster_formation.classic_config.nodes.$i = $(node_name "$i")"$'\n'; done
    for i in 1 2 3; do
        mkdir -p "$(node_dir "$i")/mnesia" "$(node_dir "$i")/log"
        # The stock /etc/rabbitmq/rabbitmq.conf pins 5672: each node needs a file of its own.
        cat >"$(node_dir "$i")/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$(amqp_port "$i")
cluster_formation.peer_discovery_backend = classic_config
$peers
EOF
    done
    [[ "$(id -u)" == 0 ]] && chown -R rabbitmq: "$DIR"
    return 0
}

start_node() {
    local i=$1 dir
    dir="$(node_dir "$i")"
    rm -f "$dir/pid"
    # setsid: the node outlives this script and is killed by `stop` alone.
    as_broker "RABBITMQ_NODENAME=$(node_name "$i")" "RABBITMQ_DIST_PORT=$(dist_port "$i")" \
        "RABBITMQ_MNESIA_BASE=$dir/mnesia" "RABBITMQ_LOG_BASE=$dir/log" \
        "RABBITMQ_CONFIG_FILE=$dir/rabbitmq" "RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins" \
        "RABBITMQ_PID_FILE=$dir/pid" \
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}" \
        setsid "$RABBIT_BIN/rabbitmq-server" >>"$dir/console.log" 2>&1 </dev/null &
}

# Waits until node $1 has booted (its pid file appears, then the app is up), within TIMEOUT.
await_node() {
    local i=$1 deadline=$((SECONDS + TIMEOUT))
    until [[ -s "$(node_dir "$i")/pid" ]]; do
        ((SECONDS < deadline)) || fail "node $i wrote no pid file within ${TIMEOUT}s: $(tail -n 20 "$(node_dir "$i")/console.log")"
        sleep 0.2
    done
    ctl "$i" wait --timeout "$TIMEOUT" "$(node_dir "$i")/pid" >/dev/null ||
        fail "node $i did not start: $(tail -n 20 "$(node_dir "$i")/console.log")"
}

running_nodes() { ctl "$1" cluster_status --formatter json 2>/dev/null | jq -r '.running_nodes[]' | sort; }

await_cluster() {
    local deadline=$((SECONDS + TIMEOUT)) count=0 i
    while ((SECONDS < deadline)); do
        for i in 1 2 3; do
            alive "$i" || continue
            count="$(running_nodes "$i" | grep -c "^${NAME}[123]@localhost$" || true)"
            ((count == 3)) && return 0
            break
        done
        sleep 0.5
    done
    fail "the three nodes did not form one cluster within ${TIMEOUT}s (a node sees $count)"
}

start() {
    prepare
    local i fresh=1 started=()
    [[ -d "$(node_dir 1)/mnesia/$(node_name 1)" ]] && fresh=0
    for i in 1 2 3; do
        alive "$i" && continue
        start_node "$i"
        started+=("$i")
        # A fresh node 1 boots alone first: nodes 2 and 3 then find it and join at boot (three
        # blank nodes started together could each decide to be the first).
        if ((fresh && i == 1)); then await_node 1; fi
    done
    for i in "${started[@]}"; do await_node "$i"; done
    await_cluster
    status
}

status() {
    local i all=0
    for i in 1 2 3; do
        if alive "$i"; then
            echo "$(node_name "$i") amqp 127.0.0.1:$(amqp_port "$i") running pid $(pid_of "$i")"
        else
            echo "$(node_name "$i") amqp 127.0.0.1:$(amqp_port "$i") down"
            all=1
        fi
    done
    for i in 1 2 3; do
        alive "$i" || continue
        echo "cluster (seen by $(node_name "$i")): $(running_nodes "$i" | tr '\n' ' ')"
        break
    done
    return "$all"
}

stop() {
    local i pid
    for i in 1 2 3; do
        pid="$(pid_of "$i")"
        [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
    done
    # The wrapper shells exit with their VM; the epmd registrations go with the VMs.
    for i in 1 2 3; do
        while alive "$i"; do sleep 0.1; done
    done
    rm -rf "$DIR"
    echo "stopped and removed $DIR"
}

case "$COMMAND" in
    start) start ;;
    status) status ;;
    stop) stop ;;
    *) usage ;;
esac
