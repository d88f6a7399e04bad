#!/usr/bin/env bash
# Starts the local mode on a free port with a throwaway database, runs the contract's black-box
# conformance tool (../shared/tools/conformance.py) against it, and stops it.
# Usage: scripts/conformance.sh <path to the greenhouse-relay binary>
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tool=${CONFORMANCE_TOOL:-$here/../shared/tools/conformance.py}
. "$here/scripts/local-server.sh"
start_local "${1:?binary}"
if ! python3 "$tool" --base-url "http://127.0.0.1:$port" --auth "User $user, Organization $org"; then
  echo "--- server log (last 40 lines)"; tail -40 "$log"; exit 1
fi
# The run must not have written any secret to the log.
no_secret_in_log "conformance-signing-key|gh_fixture_secret_not_real|whsec_"
