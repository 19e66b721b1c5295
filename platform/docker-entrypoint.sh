#!/bin/sh
# Chooses what the image runs: `server` (default) or `agent`; anything else is executed as is.
# The server's uvicorn flags are explained in platform/README.md ("uvicorn in production").
set -eu
case "${1:-server}" in
    server)
        python manage.py migrate --no-input
        python manage.py collectstatic --no-input -v 0
        # Workers: WEB_CONCURRENCY (uvicorn reads it; default 1). Trusted proxies:
        # FORWARDED_ALLOW_IPS. Keep-alive above the longest long poll (LONG_POLL_MAX_WAIT, 50 s)
        # and above the load balancer's idle timeout; `gitfleet.request` replaces the access log.
        exec uvicorn config.asgi:application --host 0.0.0.0 --port "${PORT:-8000}" \
            --proxy-headers --forwarded-allow-ips="${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
            --timeout-keep-alive 75 --timeout-graceful-shutdown 30 \
            --lifespan off --no-access-log --no-server-header
        ;;
    agent)
        exec python -m agent
        ;;
    *)
        exec "$@"
        ;;
esac
