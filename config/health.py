"""Liveness and readiness probes for load balancers and orchestrators."""

import logging

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and answering; with `GITFLEET_RUN_ID` set, it says which run it is."""
    body = {"status": "ok"}
    if settings.RUN_ID:
        body["run"] = settings.RUN_ID
    return JsonResponse(body)


def readyz(request: HttpRequest) -> JsonResponse:
    """The database answers and every migration is applied."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception:
        # The reason goes to the log, not to whoever asks: it may name hosts and users.
        logger.exception("readiness check: database unavailable")
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    if pending:
        return JsonResponse(
            {"status": "unavailable", "pending_migrations": len(pending)}, status=503
        )
    return JsonResponse({"status": "ok"})
