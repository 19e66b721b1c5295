#!/usr/bin/env bash
# Runs the whole Gitfleet on this machine: migrations, an admin user, a local node and its
# token, the ASGI server, and a local agent whose storage is ./data/node. Ctrl-C stops it all.
# Run it through `make run`, which creates the virtualenv first. Running it again reuses what
# exists. With DATABASE_URL set it uses that database (e.g. PostgreSQL) instead of SQLite.
# With GITFLEET_DEMO=1 (`make demo`) it also serves a small git repository on 127.0.0.1 and
# asks for a clone of it, so the project reaches `ready` without any network access.
#
# The first run writes the local settings to $GITFLEET_DATA_DIR/local.env (a generated
# SECRET_KEY, DEBUG=true), which `manage.py` reads by itself, so every command in the README
# works in any shell later. Ports are checked before anything starts.
set -euo pipefail
cd "$(dirname "$0")/../.."

export GITFLEET_DATA_DIR="${GITFLEET_DATA_DIR:-$PWD/data}"
HOST="${GITFLEET_HOST:-127.0.0.1}"
PORT="${GITFLEET_PORT:-8000}"
URL="http://$HOST:$PORT"
PY="${PY:-.venv/bin/python}"
SECRETS="$GITFLEET_DATA_DIR/secrets"
mkdir -p "$GITFLEET_DATA_DIR"
DEMO="${GITFLEET_DEMO:-0}"
DEMO_GIT_PORT="${GITFLEET_DEMO_GIT_PORT:-9418}"

ports=("$PORT:GITFLEET_PORT")
if [ "$DEMO" = "1" ]; then ports+=("$DEMO_GIT_PORT:GITFLEET_DEMO_GIT_PORT"); fi
RUN_COMMAND="make run"
if [ "$DEMO" = "1" ]; then RUN_COMMAND="make demo"; fi
GITFLEET_RUN_COMMAND="$RUN_COMMAND" "$PY" platform/local/ports.py "$HOST" "${ports[@]}" || exit 1

LOCAL_ENV="$GITFLEET_DATA_DIR/local.env"
if [ ! -f "$LOCAL_ENV" ]; then
    (
        umask 077
        {
            echo "# Local settings written by the first \`make run\`; manage.py reads this file."
            echo "# Never commit it; delete it to start over. Deployments set their own settings."
            echo "SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')"
            echo "DEBUG=true"
            echo "GITFLEET_DATA_DIR=$GITFLEET_DATA_DIR"
        } > "$LOCAL_ENV"
    )
    echo "Wrote the local settings to $LOCAL_ENV"
fi
export GITFLEET_ENV_FILE="$LOCAL_ENV"
if [ "$DEMO" = "1" ]; then
    # The demo repository is served from 127.0.0.1 over git://, which only the demo allows.
    export GIT_ALLOW_PRIVATE_HOSTS=true GIT_ALLOWED_SCHEMES="https,ssh,git"
    export AGENT_GIT_ALLOW_PRIVATE_HOSTS=true AGENT_GIT_ALLOWED_SCHEMES="https,ssh,git"
fi

# People's git credentials are encrypted with CREDENTIAL_KEYS; unless one is given, a local key
# is made once and kept beside the admin password, so stored credentials survive a restart.
CREDENTIAL_KEYS_FILE="$SECRETS/credential-keys"
if [ -z "${CREDENTIAL_KEYS:-}" ]; then
    if [ ! -s "$CREDENTIAL_KEYS_FILE" ]; then
        mkdir -p "$SECRETS"
        (
            umask 077
            "$PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' \
                >"$CREDENTIAL_KEYS_FILE.new"
        )
        mv "$CREDENTIAL_KEYS_FILE.new" "$CREDENTIAL_KEYS_FILE"
        echo "Made a credential encryption key in $CREDENTIAL_KEYS_FILE."
    fi
    CREDENTIAL_KEYS="$(cat "$CREDENTIAL_KEYS_FILE")"
    export CREDENTIAL_KEYS
fi

"$PY" manage.py migrate --no-input -v 0
"$PY" manage.py bootstrap_local --secrets-dir "$SECRETS"

pids=()
stop() {
    trap - INT TERM EXIT
    echo "Stopping Gitfleet..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
}
trap stop INT TERM EXIT

if [ "$DEMO" = "1" ]; then
    "$PY" platform/local/demo.py prepare "$GITFLEET_DATA_DIR/demo"
    # git-daemon itself, not `git daemon`: that wrapper would be the one stopped, leaving the
    # daemon holding the port (and a background job here ignores the terminal's Ctrl-C).
    "$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 --port="$DEMO_GIT_PORT" \
        --base-path="$GITFLEET_DATA_DIR/demo/served" "$GITFLEET_DATA_DIR/demo/served" &
    pids+=($!)
fi

GITFLEET_RUN_ID="$("$PY" -c 'import secrets; print(secrets.token_hex(8))')"
GITFLEET_RUN_ID="$GITFLEET_RUN_ID" "$PY" -m uvicorn config.asgi:application --host "$HOST" --port "$PORT" \
    --timeout-graceful-shutdown 5 --no-access-log --lifespan off &
server_pid=$!
pids+=("$server_pid")

# Healthy means *this* server answers: the process started above is alive and /healthz names
# this run. Another program that took the port meanwhile answers without it (or not at all).
healthy=0
for _ in $(seq 1 150); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "The server did not start (see its log above); nothing is running on $URL." >&2
        exit 1
    fi
    if "$PY" -c 'import json, sys, urllib.request
answer = json.load(urllib.request.urlopen(sys.argv[1], timeout=1))
sys.exit(0 if answer.get("run") == sys.argv[2] else 1)' "$URL/healthz" "$GITFLEET_RUN_ID" 2>/dev/null; then
        healthy=1
        break
    fi
    sleep 0.2
done
if [ "$healthy" != 1 ]; then
    echo "The server started here did not answer on $URL within 30 s (is another program" \
        "answering there? choose another port with GITFLEET_PORT)." >&2
    exit 1
fi

if [ -f agent/__main__.py ]; then
    AGENT_SERVER_URL="$URL" \
    AGENT_TOKEN_FILE="$SECRETS/local.token" \
    AGENT_STORAGE_PATH="${AGENT_STORAGE_PATH:-$GITFLEET_DATA_DIR/node}" \
        "$PY" -m agent &
    pids+=($!)
fi

cat <<INFO

Gitfleet is running.
  Admin console   $URL/admin/        (login printed above)
  Browsable API   $URL/api/v1/
  API docs        $URL/api/docs/     (Swagger)  and  $URL/api/redoc/
  Node 'local'    storage in ${AGENT_STORAGE_PATH:-$GITFLEET_DATA_DIR/node}
  In a new shell  GITFLEET=$URL
                  TOKEN=\$(.venv/bin/python manage.py create_token admin | tail -n 1)
Press Ctrl-C to stop.
INFO

if [ "$DEMO" = "1" ]; then
    token=$("$PY" manage.py create_token "${GITFLEET_ADMIN_USER:-admin}" --name demo 2>/dev/null | tail -n 1)
    "$PY" platform/local/demo.py request "$URL" "$token" "git://127.0.0.1:$DEMO_GIT_PORT/hello.git"
fi

wait -n "${pids[@]}"
