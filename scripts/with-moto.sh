#!/usr/bin/env bash
# Runs a command with moto server (DynamoDB + SQS emulator) on a free loopback port, exported as
# MOTO_ENDPOINT, and stops the emulator afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
moto=${MOTO_SERVER:-$here/.venv-tools/bin/moto_server}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
"$moto" -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/moto-api/" -o /dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "moto server did not start"; exit 1; }
  sleep 0.2
done
export MOTO_ENDPOINT=http://127.0.0.1:$port
"$@"
