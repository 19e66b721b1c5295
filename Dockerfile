# One image for the control plane and the node agent:
#   docker run IMAGE server   migrations, static files, then uvicorn on :8000
#   docker run IMAGE agent    the node agent (needs AGENT_SERVER_URL and AGENT_TOKEN[_FILE])
# platform/compose.yaml runs both; platform/README.md explains the settings.
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/ requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements/server.txt -r requirements/agent.txt

FROM python:3.11.7-slim-bookworm
# git and ssh for the agent's clones (https and ssh URLs), git-lfs for LFS objects, and sshd
# for the test suite's SSH git server when the tests run in this image (it is never started
# otherwise).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* openssh-client=1:9.2p1-* \
       openssh-server=1:9.2p1-* git-lfs=3.3.0-* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gitfleet \
    && useradd --system --uid 10001 --gid gitfleet --create-home --shell /usr/sbin/nologin gitfleet \
    && mkdir -p /data /app/data \
    && chown gitfleet:gitfleet /data /app/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Owned by root: the code is not writable by the user that runs it.
COPY --chown=root:root . /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    GITFLEET_DATA_DIR=/app/data \
    AGENT_STORAGE_PATH=/data
# Numeric, so the runtime can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# The server's liveness; an agent container has no port, so compose disables this for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# uvicorn and the agent both drain on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/platform/docker-entrypoint.sh"]
CMD ["server"]
