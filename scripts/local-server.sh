# Sourced by the scripts that test a running local mode (conformance.sh, api-fuzz.sh).
# `start_local <binary>` starts it on a free loopback port with a throwaway database and fresh
# admin secrets, waits until it answers, and stops it (and removes its files) when the script
# exits. It sets: port, user, org (the admin secrets), work (its directory), log (its output).
start_local() {
  local bin=${1:?binary}
  work=$(mktemp -d)
  log=$work/server.log
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  user=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  org=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  ADMIN_USER_SECRET=$user ADMIN_ORG_SECRET=$org LISTEN_ADDR=127.0.0.1:$port DATABASE_PATH=$work/relay.db \
    "$bin" serve > "$log" 2>&1 &
  local_pid=$!
  trap 'kill "$local_pid" 2>/dev/null || true; wait "$local_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    kill -0 "$local_pid" 2>/dev/null || { cat "$log"; echo "server exited"; exit 1; }
    sleep 0.1
  done
  echo "the local mode did not answer within 10 s"; tail -40 "$log"; exit 1
}

# Fails when the server's log holds one of the admin secrets or anything else matching $1 (an
# extended regular expression of other secrets the caller used).
no_secret_in_log() {
  if grep -E -q "$user|$org${1:+|$1}" "$log"; then
    echo "FAIL a secret appears in the server log"; exit 1
  fi
}
