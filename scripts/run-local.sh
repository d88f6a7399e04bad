#!/usr/bin/env bash
# `make run`: builds the local mode and starts it. When ADMIN_USER_SECRET / ADMIN_ORG_SECRET are
# not set, development values are generated once into data/dev.env (git-ignored) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data
if [ -z "${ADMIN_USER_SECRET:-}" ] || [ -z "${ADMIN_ORG_SECRET:-}" ]; then
  if [ ! -f data/dev.env ]; then
    umask 077
    {
      echo "ADMIN_USER_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
      echo "ADMIN_ORG_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
    } > data/dev.env
    echo "make run: generated development admin secrets in data/dev.env"
  fi
  set -a; . data/dev.env; set +a
  from_dev_env=1
fi
cargo build --release --locked -p greenhouse-relay
listen=${LISTEN_ADDR:-127.0.0.1:3000}
# The secrets themselves are never printed (this output often ends up in a log): the commands
# below read them from the environment.
if [ -n "${from_dev_env:-}" ]; then
  load="  set -a; . '$PWD/data/dev.env'; set +a      # the admin secrets, into this shell"
else
  load="  # ADMIN_USER_SECRET and ADMIN_ORG_SECRET: as exported where make run was started"
fi
cat <<MSG

greenhouse-relay (local mode) on http://$listen, database ${DATABASE_PATH:-data/greenhouse-relay.db}
Admin calls use the header "Authorization: User \$ADMIN_USER_SECRET, Organization \$ADMIN_ORG_SECRET".
Create an instance from another shell (and in a third, \`make listen\` receives its notifications):
$load
  curl -s http://$listen/instances -H 'Content-Type: application/json' \\
    -H "Authorization: User \$ADMIN_USER_SECRET, Organization \$ADMIN_ORG_SECRET" \\
    -d '{"element":{"key":"greenhouse"},"name":"acme","configuration":{"event.notification.callback.url":"http://127.0.0.1:8081/hooks","event.notification.signature.key":"change-me"}}'
then send it a test notification (the token is in the answer):
  curl -s -X POST http://$listen/instances/<id>/events/test -H "Authorization: Element <token>"

MSG
export LOG_FORMAT=${LOG_FORMAT:-text}
exec "${CARGO_TARGET_DIR:-target}/release/greenhouse-relay" serve
