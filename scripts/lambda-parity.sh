#!/usr/bin/env bash
# Parity of the AWS runtime with the local mode, by the same black-box tool: the three functions
# under `cargo lambda watch` against DynamoDB + SQS in moto, the SQS event source stand-in, and
# ../shared/tools/conformance.py with the management function as base URL and webhookUrl pointing
# at the ingest function. Needs .venv-tools (make installs it) and MOTO_ENDPOINT (with-moto.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
venv=$here/.venv-tools
export PATH="$venv/bin:$PATH"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
user=parity-user-$RANDOM; org=parity-org-$RANDOM
{
  echo "AWS_ENDPOINT_URL=$MOTO_ENDPOINT"
  echo "AWS_ACCESS_KEY_ID=test"; echo "AWS_SECRET_ACCESS_KEY=test"; echo "AWS_REGION=us-east-1"
  "$venv/bin/python" scripts/provision_moto.py "$MOTO_ENDPOINT" "parity-$RANDOM"
  echo "ADMIN_USER_SECRET=$user"; echo "ADMIN_ORG_SECRET=$org"
  echo "PUBLIC_BASE_URL=http://127.0.0.1:$port/lambda-url/ingest"
  echo "CALLBACK_ALLOW_NETS=127.0.0.0/8"; echo "CALLBACK_ALLOW_HTTP=true"
  echo "RUST_LOG=info"
} > "$work/env"
queue_url=$(grep '^QUEUE_URL=' "$work/env" | cut -d= -f2-)
cargo lambda watch --ignore-changes -A 127.0.0.1 -P "$port" --env-file "$work/env" > "$work/watch.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  curl -s -o /dev/null "http://127.0.0.1:$port/lambda-url/instances/health" && break
  sleep 0.5
done
# The first call of each function compiles it: warm all three before measuring anything.
curl -s -o /dev/null --max-time 600 "http://127.0.0.1:$port/lambda-url/instances/health"
curl -s -o /dev/null --max-time 600 "http://127.0.0.1:$port/lambda-url/ingest/health"
curl -s -o /dev/null --max-time 600 -X POST -d '{"Records":[]}' "http://127.0.0.1:$port/2015-03-31/functions/delivery/invocations"
"$venv/bin/python" scripts/sqs_event_source.py "$MOTO_ENDPOINT" "$queue_url" \
  "http://127.0.0.1:$port/2015-03-31/functions/delivery/invocations" > "$work/poller.log" 2>&1 &
pids+=($!)
if ! python3 "${CONFORMANCE_TOOL:-$here/../shared/tools/conformance.py}" \
    --base-url "http://127.0.0.1:$port/lambda-url/instances" --auth "User $user, Organization $org"; then
  echo "--- cargo lambda watch (last 40 lines)"; tail -40 "$work/watch.log"
  echo "--- event source stand-in"; tail -20 "$work/poller.log"
  exit 1
fi
# The same functions against the API's OpenAPI description (fewer examples than against the
# local mode: every request is a few moto calls).
fuzz_key=api-fuzz-key-$RANDOM$RANDOM
if ! API_FUZZ_EMULATOR=1 API_FUZZ_KEY=$fuzz_key scripts/api-fuzz.sh --url "http://127.0.0.1:$port/lambda-url/instances" "User $user, Organization $org"; then
  echo "--- cargo lambda watch (last 40 lines)"; tail -40 "$work/watch.log"; exit 1
fi
# No secret may reach a log line of any function.
if grep -E -q "$user|$org|$fuzz_key|conformance-signing-key|gh_fixture_secret_not_real|whsec_" "$work/watch.log"; then
  echo "FAIL a secret appears in the functions' logs"; exit 1
fi
echo "PASS no secret in the functions' logs ($(wc -l < "$work/watch.log") lines checked)"
