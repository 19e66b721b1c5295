"""Prometheus metrics at `/metrics`, for operators holding `METRICS_TOKEN`.

Job, queue and node figures are read from the database at scrape time, so every server process
reports the same fleet-wide values (aggregate them with `max`, not `sum`). Long polls held, the
garbage collector's pauses and the process metrics describe the process that answered.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import logging
import time
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from core.errors import error_body
from nodes.models import Node
from projects.domain import JobKind, JobState
from projects.models import Job
from projects.queue import OPEN_JOB_STATES
from projects.wakeups import hub

logger = logging.getLogger(__name__)

# Git work runs from seconds (a pull) to the hour a large clone may take (GIT_JOB_TIMEOUT).
LEASE_TO_COMPLETE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
FINISHED_STATES = tuple(state.value for state in JobState if state not in OPEN_JOB_STATES)


class FleetCollector:
    """Reads jobs, queues and nodes from the database on every scrape."""

    def describe(self) -> Iterator[Metric]:
        # Registering must not query the database, so the families are described empty.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        jobs, depth, oldest, durations, nodes_online, nodes, database_up, waiting = families
        waiting.add_metric([], hub.waiting)
        try:
            self._read_database(jobs, depth, oldest, durations, nodes_online, nodes)
        except DatabaseError:
            logger.warning("metrics: the database did not answer", exc_info=True)
            database_up.add_metric([], 0)
            yield database_up
            yield waiting
            return
        database_up.add_metric([], 1)
        yield from families

    def _families(self) -> list[Metric]:
        return [
            GaugeMetricFamily("gitfleet_jobs", "Jobs by kind and state.", labels=["kind", "state"]),
            GaugeMetricFamily(
                "gitfleet_queue_depth",
                "Queued jobs waiting for each node (including those waiting to be retried).",
                labels=["node"],
            ),
            GaugeMetricFamily(
                "gitfleet_queue_oldest_age_seconds",
                "Age of each node's oldest queued job; 0 when its queue is empty.",
                labels=["node"],
            ),
            HistogramMetricFamily(
                "gitfleet_job_lease_to_complete_seconds",
                "From the last lease of a finished job to its end, by kind and outcome; "
                "cumulative over every finished job in the database.",
                labels=["kind", "outcome"],
            ),
            GaugeMetricFamily(
                "gitfleet_nodes_online",
                "Nodes whose agent was seen within NODE_ONLINE_WINDOW.",
            ),
            GaugeMetricFamily("gitfleet_nodes", "Registered nodes, enabled or not."),
            GaugeMetricFamily(
                "gitfleet_database_up", "1 when this scrape could read the database."
            ),
            GaugeMetricFamily(
                "gitfleet_long_polls_waiting",
                "Agent lease calls this server process is holding open right now.",
            ),
        ]

    def _read_database(self, jobs, depth, oldest, durations, nodes_online, nodes) -> None:
        counts = {
            (row["kind"], row["state"]): row["n"]
            for row in Job.objects.order_by().values("kind", "state").annotate(n=Count("pk"))
        }
        for kind in (kind.value for kind in JobKind):
            for state in (state.value for state in JobState):
                jobs.add_metric([kind, state], counts.get((kind, state), 0))

        now = timezone.now()
        queues = {
            row["node__name"]: row
            for row in Job.objects.filter(state=JobState.QUEUED)
            .order_by()
            .values("node__name")
            .annotate(n=Count("pk"), oldest=Min("queued_at"))
        }
        names = list(Node.objects.order_by("name").values_list("name", flat=True))
        for name in names:
            queue = queues.get(name)
            depth.add_metric([name], queue["n"] if queue else 0)
            age = (now - queue["oldest"]).total_seconds() if queue else 0.0
            oldest.add_metric([name], max(age, 0.0))

        for labels, buckets, total in _lease_to_complete():
            durations.add_metric(labels, buckets, total)

        nodes_online.add_metric([], Node.objects.online().count())
        nodes.add_metric([], len(names))


def _lease_to_complete() -> Iterator[tuple[list[str], list[tuple[str, float]], float]]:
    """Cumulative buckets of `finished_at - leased_at` per kind and outcome, in one query."""
    took = ExpressionWrapper(F("finished_at") - F("leased_at"), output_field=DurationField())
    buckets = {
        f"le_{i}": Count("pk", filter=Q(took__lte=timedelta(seconds=bound)))
        for i, bound in enumerate(LEASE_TO_COMPLETE_BUCKETS)
    }
    rows = (
        Job.objects.filter(
            state__in=FINISHED_STATES, leased_at__isnull=False, finished_at__isnull=False
        )
        .annotate(took=took)
        .order_by()
        .values("kind", "state")
        .annotate(n=Count("pk"), total=Sum("took"), **buckets)
    )
    found = {(row["kind"], row["state"]): row for row in rows}
    # Every series from zero on, so the first finished job of a kind shows up in rate().
    for kind in (kind.value for kind in JobKind):
        for outcome in FINISHED_STATES:
            row = found.get((kind, outcome))
            cumulative = [
                (str(float(bound)), float(row[f"le_{i}"]) if row else 0.0)
                for i, bound in enumerate(LEASE_TO_COMPLETE_BUCKETS)
            ]
            cumulative.append(("+Inf", float(row["n"]) if row else 0.0))
            total = row["total"].total_seconds() if row and row["total"] is not None else 0.0
            yield [kind, outcome], cumulative, max(total, 0.0)


_collector = FleetCollector()
REGISTRY.register(_collector)

GC_PAUSES = Histogram(
    "gitfleet_gc_pause_seconds",
    "Collections of this process's garbage collector, by generation; every thread waits "
    "each one out, so a long one delays every request in flight.",
    ["generation"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
_gc_started = 0.0


def _time_collection(phase: str, info: dict) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        GC_PAUSES.labels(str(info["generation"])).observe(time.perf_counter() - _gc_started)


gc.callbacks.append(_time_collection)


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    # Hashing first makes the comparison constant-time in the token's length too.
    expected = hashlib.sha256(token.encode()).digest()
    presented = hashlib.sha256(given.strip().encode()).digest()
    return hmac.compare_digest(expected, presented)


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; 404 while `METRICS_TOKEN` is unset, 401 without the token."""
    token = settings.METRICS_TOKEN
    if not token:
        return JsonResponse(error_body("Not found.", "not_found"), status=404)
    if not _authorized(request, token):
        response = JsonResponse(
            error_body(
                "Metrics need 'Authorization: Bearer <METRICS_TOKEN>'.",
                "not_authenticated",
                {"Authorization": ["Missing or not the metrics token."]},
            ),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encode(REGISTRY), content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
