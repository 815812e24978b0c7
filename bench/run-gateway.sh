#!/usr/bin/env bash
# The one command that measures what the API gateway costs a client: the k6 saga load
# (k6/saga.js, through k6/smoke.sh: the release `sagactl up` on its own databases and prefix)
# run twice at the same rate, once through the gateway and once straight to the services, and
# the two runs' latencies side by side in bench/results/gateway-<date>.md (and .json).
#
# Env: RATE (orders/s, 40), DURATION (60s), OUT (bench/results/gateway-<date>).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rate="${RATE:-40}"
duration="${DURATION:-60s}"
out="${OUT:-bench/results/gateway-$(date +%F)}"
work="$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

for via in gateway direct; do
  echo "== $via: $rate orders/s for $duration" >&2
  DIRECT=$([[ $via == direct ]] && echo 1 || echo 0) PROFILE=release RATE="$rate" \
    DURATION="$duration" SUMMARY_JSON="$work/$via.json" bash k6/smoke.sh
done

python3 - "$work" "$out" "$rate" "$duration" <<'PY'
import json, os, platform, sys

work, out, rate, duration = sys.argv[1:]
runs = {via: json.load(open(f"{work}/{via}.json"))["metrics"] for via in ("gateway", "direct")}
rows = [
    ("every request (k6 http_req_duration)", "http_req_duration"),
    ("an order, sent to terminal status seen (saga_e2e_ms)", "saga_e2e_ms"),
]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
    f"# The gateway's cost, {os.popen('date +%F').read().strip()}",
    "",
    f"`RATE={rate} DURATION={duration} bash bench/run-gateway.sh`: the k6 saga load (k6/saga.js) "
    "against the release `sagactl up`, once through its nginx gateway and once straight to the "
    f"services. Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}.",
    "",
    "| latency | via | p50 ms | p90 ms | p99 ms | max ms | requests |",
    "|---|---|---|---|---|---|---|",
]
summary = {}
for label, metric in rows:
    for via in ("direct", "gateway"):
        values = runs[via].get(metric, {}).get("values", {})
        count = runs[via].get("http_reqs", {}).get("values", {}).get("count", 0)
        summary[f"{metric}.{via}"] = values
        lines.append(
            f"| {label} | {via} | {values.get('med', 0):.1f} | {values.get('p(90)', 0):.1f} | "
            f"{values.get('p(99)', 0):.1f} | {values.get('max', 0):.1f} | "
            f"{int(count) if metric == 'http_req_duration' else ''} |"
        )
for via in ("direct", "gateway"):
    failed = runs[via].get("http_req_failed", {}).get("values", {}).get("rate", 0)
    lines.append(f"\n{via}: {failed * 100:.2f} % of requests failed.")
open(f"{out}.md", "w").write("\n".join(lines) + "\n")
json.dump(summary, open(f"{out}.json", "w"), indent=1)
print("\n".join(lines))
PY
