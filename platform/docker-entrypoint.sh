#!/bin/sh
# Chooses what the image runs: `server` (default) or `agent`; anything else is executed as is.
set -eu
case "${1:-server}" in
    server)
        python manage.py migrate --no-input
        python manage.py collectstatic --no-input -v 0
        exec uvicorn config.asgi:application --host 0.0.0.0 --port "${PORT:-8000}" \
            --proxy-headers --forwarded-allow-ips="${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
            --timeout-keep-alive 75 --timeout-graceful-shutdown 30 --lifespan off
        ;;
    agent)
        exec python -m agent
        ;;
    *)
        exec "$@"
        ;;
esac
