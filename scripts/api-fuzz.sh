#!/usr/bin/env bash
# schemathesis against the API, with its OpenAPI description (docs/openapi.yaml): generated
# requests, valid and invalid, single and chained through the description's links (create, then
# read, change, delete). Each answer is checked against the description (status, content type,
# headers, body schema), for no 5xx, for invalid requests refused, for auth enforced, for 405 with
# `Allow` on other methods, for a created instance readable and a deleted one gone. The seed is
# fixed, so a run makes the same requests on every machine; API_FUZZ_SEED and API_FUZZ_EXAMPLES
# (per operation) change it.
# Left out: positive_data_acceptance, because which valid-looking instances are refused depends
# on rules a schema cannot state (a callback URL is required when events are enabled; the network
# policy); object_level_authorization, which needs two tokens. Webhooks are signed by
# scripts/schemathesis_hooks.py, for an instance they make first and those the run makes.
# Usage: scripts/api-fuzz.sh <greenhouse-relay binary>   (starts a fresh local mode, then stops it)
#        scripts/api-fuzz.sh --url <base URL> <admin Authorization value>   (a running service)
# API_FUZZ_EMULATOR=1: the service runs under `cargo lambda watch` (see the hooks).
# API_FUZZ_HAR=<file>: every request and answer of the run, as a HAR file. API_FUZZ_KEY: the
# Greenhouse key of that instance (default: random), for a caller that checks logs for it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = --url ]; then
  base=${2:?base URL}; auth=${3:?Authorization value}; examples=${API_FUZZ_EXAMPLES:-10}
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
else
  . "$here/scripts/local-server.sh"
  start_local "${1:?binary}"
  base=http://127.0.0.1:$port; auth="User $user, Organization $org"; examples=${API_FUZZ_EXAMPLES:-30}
fi
# Where the hooks make the instance signed webhooks go to, and its key.
key=${API_FUZZ_KEY:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}
export API_FUZZ_BASE=$base API_FUZZ_AUTH=$auth API_FUZZ_KEY=$key
cd "$work"   # hypothesis keeps its example database in the working directory
if ! PYTHONPATH="$here/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks "$here/.venv-tools/bin/schemathesis" run "$here/docs/openapi.yaml" --url "$base" -H "Authorization: $auth" \
    --checks all --exclude-checks positive_data_acceptance,object_level_authorization \
    --seed "${API_FUZZ_SEED:-1}" --max-examples "$examples" --workers 1 --request-timeout 20 --warnings off \
    ${API_FUZZ_HAR:+--report har --report-har-path "$API_FUZZ_HAR"}; then
  [ -n "${log:-}" ] && { echo "--- server log (last 40 lines)"; tail -40 "$log"; }
  exit 1
fi
[ -n "${log:-}" ] && no_secret_in_log "whsec_|$key"
exit 0
