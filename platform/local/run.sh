#!/usr/bin/env bash
# Runs the whole Gitfleet on this machine: migrations, an admin user, a local node and its
# token, the ASGI server, and a local agent whose storage is ./data/node. Ctrl-C stops it all.
# Run it through `make run`, which creates the virtualenv first. Running it again reuses what
# exists. With DATABASE_URL set it uses that database (e.g. PostgreSQL) instead of SQLite.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DEBUG="${DEBUG:-true}"
export GITFLEET_DATA_DIR="${GITFLEET_DATA_DIR:-$PWD/data}"
HOST="${GITFLEET_HOST:-127.0.0.1}"
PORT="${GITFLEET_PORT:-8000}"
URL="http://$HOST:$PORT"
PY="${PY:-.venv/bin/python}"
SECRETS="$GITFLEET_DATA_DIR/secrets"
mkdir -p "$GITFLEET_DATA_DIR"

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

"$PY" -m uvicorn config.asgi:application --host "$HOST" --port "$PORT" \
    --timeout-graceful-shutdown 5 --no-access-log --lifespan off &
pids+=($!)

for _ in $(seq 1 100); do
    if "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "$URL/healthz" 2>/dev/null; then
        break
    fi
    sleep 0.2
done

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
  API token       .venv/bin/python manage.py create_token admin
Press Ctrl-C to stop.
INFO

wait -n "${pids[@]}"
