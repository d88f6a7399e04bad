#!/usr/bin/env bash
# `make invoke`: runs the functions locally with `cargo lambda watch` against moto (no AWS
# account), creates instance 1 with the secrets the samples in events/ use, then invokes a
# function with a sample and prints its response.
# Usage (inside with-moto.sh): scripts/invoke.sh [function] [events file]
set -euo pipefail
fn=${1:-ingest}
file=${2:-events/ingest-apigw-v2.json}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/.venv-tools/bin:$PATH"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill $watch 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
{
  echo "AWS_ENDPOINT_URL=$MOTO_ENDPOINT"; echo "AWS_ACCESS_KEY_ID=test"; echo "AWS_SECRET_ACCESS_KEY=test"; echo "AWS_REGION=us-east-1"
  python scripts/provision_moto.py "$MOTO_ENDPOINT" invoke
  echo "ADMIN_USER_SECRET=sample-user-secret"; echo "ADMIN_ORG_SECRET=sample-org-secret"
  echo "CALLBACK_ALLOW_NETS=127.0.0.0/8"; echo "CALLBACK_ALLOW_HTTP=true"
} > "$work/env"
echo "starting cargo lambda watch on 127.0.0.1:$port (the first call of a function compiles it)"
cargo lambda watch --ignore-changes -A 127.0.0.1 -P "$port" --env-file "$work/env" > "$work/watch.log" 2>&1 &
watch=$!
for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$port/lambda-url/instances/health" && break; sleep 0.5; done
curl -s --max-time 600 "http://127.0.0.1:$port/lambda-url/instances/instances" \
  -H 'Authorization: User sample-user-secret, Organization sample-org-secret' -H 'Content-Type: application/json' \
  -d '{"element":{"key":"greenhouse"},"name":"sample","configuration":{"event.notification.callback.url":"http://127.0.0.1:9/hooks","event.vendor.signature.key":"sample-greenhouse-secret"}}' \
  -o /dev/null
echo "cargo lambda invoke $fn --data-file $file"
cargo lambda invoke "$fn" -A 127.0.0.1 -P "$port" --data-file "$file"
echo
