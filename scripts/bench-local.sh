#!/usr/bin/env bash
# Load benchmark of the local mode, each figure next to a baseline measured in the same run:
# 1. wrk, 32 connections: signed Greenhouse webhooks, each with its own Greenhouse-Event-ID (so
#    every request is a durable insert, fsynced before its 200), vs a bare hyper server answering
#    200 to the same requests.
# 2. end-to-end latency (sent -> received by a loopback receiver) at a fixed 1,000 events/s.
# Usage: scripts/bench-local.sh <release dir with greenhouse-relay and examples/>
set -euo pipefail
rel=${1:?release dir}
here=$(cd "$(dirname "$0")/.." && pwd)
duration=${BENCH_SECONDS:-10}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
relay_port=$(free_port); bare_port=$(free_port)
ADMIN_USER_SECRET=bench-user ADMIN_ORG_SECRET=bench-org LISTEN_ADDR=127.0.0.1:$relay_port \
  DATABASE_PATH=$work/relay.db RUST_LOG=warn "$rel/greenhouse-relay" serve > "$work/relay.log" 2>&1 &
pids+=($!)
"$rel/examples/bare_hyper" "127.0.0.1:$bare_port" &
pids+=($!)
for port in "$relay_port" "$bare_port"; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
done
auth="User bench-user, Organization bench-org"
key=bench-vendor-key
# Deliveries go to the bare server, so the worker runs during the measurement too.
inst=$(curl -s "http://127.0.0.1:$relay_port/instances" -H "Authorization: $auth" -H 'Content-Type: application/json' \
  -d '{"element":{"key":"greenhouse"},"name":"wrk","configuration":{"event.notification.callback.url":"http://127.0.0.1:'$bare_port'/hooks","event.vendor.signature.key":"'$key'"}}')
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$inst")
body=$(tr -d '\n' < "$here/../shared/fixtures/greenhouse/job_created.json")
sig=$(python3 -c 'import hmac,hashlib,sys; print("sha256 "+hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())' "$key" "$body")
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = [==[$body]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Signature"] = "$sig"
local n = 0
local prefix = tostring(math.random(1, 1e9))
request = function()
  n = n + 1
  wrk.headers["Greenhouse-Event-ID"] = prefix .. "-" .. n
  return wrk.format(nil, nil, nil, nil)
end
LUA
run_wrk() { wrk -t2 -c32 -d"${duration}s" --latency -s "$work/post.lua" "$1" > "$2"; }
# Warm-up, then measure both, alternating so machine noise hits both alike.
wrk -t1 -c8 -d2s -s "$work/post.lua" "http://127.0.0.1:$relay_port/events/greenhouse/$id" >/dev/null
run_wrk "http://127.0.0.1:$bare_port/events/greenhouse/$id" "$work/bare.txt"
run_wrk "http://127.0.0.1:$relay_port/events/greenhouse/$id" "$work/relay.txt"
python3 - "$work/relay.txt" "$work/bare.txt" <<'PY'
import re, sys
def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    def lat(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, t, re.M)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    errors = re.search(r"Socket errors: (.*)", t)
    return rps, lat(50), lat(99), int(non2xx.group(1)) if non2xx else 0, errors.group(1) if errors else "none"
r, b = parse(sys.argv[1]), parse(sys.argv[2])
print("\nwrk -t2 -c32, signed job_created webhook, unique Greenhouse-Event-ID per request")
print(f"{'server':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-200':>9}")
print(f"{'greenhouse-relay (durable 200)':<34}{r[0]:>10.0f}{r[1]:>9.2f}{r[2]:>9.2f}{r[3]:>9}")
print(f"{'bare hyper (200, nothing stored)':<34}{b[0]:>10.0f}{b[1]:>9.2f}{b[2]:>9.2f}{b[3]:>9}")
print(f"RATIO relay/bare throughput = {r[0]/b[0]:.2f}, p99 = {r[2]/b[2]:.1f}x   (targets: >= 5000 req/s, p99 < 20 ms)")
PY
echo
"$rel/examples/e2e_load" "http://127.0.0.1:$relay_port" "$auth" "http://127.0.0.1:$bare_port" 1000 "$duration"
