# One image for the control plane and the node agent:
#   docker run IMAGE server   migrations, static files, then uvicorn on :8000
#   docker run IMAGE agent    the node agent (needs AGENT_SERVER_URL and AGENT_TOKEN[_FILE])
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/ requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements/server.txt -r requirements/agent.txt

FROM python:3.11.7-slim-bookworm
# git for the agent; nothing else is needed at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --uid 10001 gitfleet \
    && mkdir -p /data /app/data \
    && chown gitfleet:gitfleet /data /app/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root . /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    GITFLEET_DATA_DIR=/app/data \
    AGENT_STORAGE_PATH=/data
USER gitfleet
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["/app/platform/docker-entrypoint.sh"]
CMD ["server"]
