#!/usr/bin/env bash
# Starts the local mode on a free port with a throwaway database, runs the contract's black-box
# conformance tool (../shared/tools/conformance.py) against it, and stops it.
# Usage: scripts/conformance.sh <path to the greenhouse-relay binary>
set -euo pipefail
bin=${1:?binary}
here=$(cd "$(dirname "$0")/.." && pwd)
tool=${CONFORMANCE_TOOL:-$here/../shared/tools/conformance.py}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
org=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
ADMIN_USER_SECRET=$user ADMIN_ORG_SECRET=$org LISTEN_ADDR=127.0.0.1:$port DATABASE_PATH=$work/relay.db \
  "$bin" serve > "$work/server.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; echo "server exited"; exit 1; }
  sleep 0.1
done
if ! python3 "$tool" --base-url "http://127.0.0.1:$port" --auth "User $user, Organization $org"; then
  echo "--- server log (last 40 lines)"; tail -40 "$work/server.log"; exit 1
fi
# The run must not have written any secret to the log.
if grep -E -q "$user|$org|conformance-signing-key|gh_fixture_secret_not_real|whsec_" "$work/server.log"; then
  echo "FAIL a secret appears in the server log"; exit 1
fi
