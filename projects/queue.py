"""The queue rules: which jobs are open, which job is a project's head, which jobs a node may lease.

Each rule is written here once in every form the code needs, side by side:

- a pure-Python predicate, which the decider uses (this module imports no Django app and reads
  no settings, so the decider stays free of the database);
- an ORM filter, for the selectors and the long polls' re-check;
- the SQL of the claim, which must lock and skip in one statement, and of the lease call's
  first look, which an idle fleet's every poll runs (fixed SQL: no query built per call).

`tests/server/test_queue_rules.py` holds the three forms to the same answers on a table of cases,
on SQLite and PostgreSQL.

The rules, in words. A job is *open* while it is queued or leased. A project's *head* is its
oldest open job (lowest `seq`): jobs of one project run one at a time, in the order asked. A job
is *leasable* by its project's node when that node is enabled, the job is queued, it is its
project's head, its retry time (`available_at`) has come, and the project's owner holds fewer than `limit` leased jobs on that
node (`MAX_RUNNING_JOBS_PER_USER_PER_NODE`), so that one person cannot take every slot of a node.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from django.db.models import Count, Exists, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce


class JobState(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_JOB_STATES = frozenset({JobState.QUEUED, JobState.LEASED})


class QueuedJob(Protocol):
    """What the pure rules read of a job (the decider's `Job` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def state(self) -> JobState: ...
    @property
    def available_at(self) -> datetime: ...


_J = TypeVar("_J", bound=QueuedJob)


# --- Pure predicates (the decider's form) ----------------------------------------------------


def is_open(job: QueuedJob) -> bool:
    return job.state in OPEN_JOB_STATES


def open_jobs(jobs: Iterable[_J]) -> list[_J]:
    """The open jobs among `jobs`, in queue order."""
    return sorted((job for job in jobs if is_open(job)), key=lambda job: job.seq)


def head(jobs: Iterable[_J]) -> _J | None:
    """The job that runs next or runs now: the oldest open job of a project's `jobs`."""
    return min((job for job in jobs if is_open(job)), key=lambda job: job.seq, default=None)


def is_next(job: QueuedJob, jobs: Iterable[QueuedJob], now: datetime) -> bool:
    """`job` is queued, the head of its project (`jobs`), and its retry time has come: what the
    decider can see of leasability in one project's stream."""
    first = head(jobs)
    return (
        job.state == JobState.QUEUED
        and first is not None
        and first.id == job.id
        and job.available_at <= now
    )


def is_leasable(
    job: QueuedJob,
    jobs: Iterable[QueuedJob],
    *,
    now: datetime,
    owner_leased: int,
    limit: int,
    node_enabled: bool = True,
) -> bool:
    """`is_next`, the node is enabled, and the project's owner holds fewer than `limit` leased
    jobs on the node (`owner_leased` counts them; the caller has matched the node)."""
    return node_enabled and is_next(job, jobs, now) and owner_leased < limit


# --- ORM forms -------------------------------------------------------------------------------


def open_only(jobs: QuerySet) -> QuerySet:
    """The open jobs of a `Job` queryset."""
    return jobs.filter(state__in=OPEN_JOB_STATES)


def open_in_queue_order(jobs: QuerySet) -> QuerySet:
    """The open jobs of a `Job` queryset in queue order: a project's first is its `head`."""
    return open_only(jobs).order_by("seq")


def leasable_only(jobs: QuerySet, *, now: datetime, limit: int) -> QuerySet:
    """The leasable jobs of a `Job` queryset (filter it by node first): `is_leasable` in SQL."""
    model = jobs.model
    earlier_open = open_only(model.objects.filter(project_id=OuterRef("project_id"))).filter(
        seq__lt=OuterRef("seq")
    )
    owner_leased = (
        model.objects.filter(
            node_id=OuterRef("node_id"),
            state=JobState.LEASED,
            project__owner_id=OuterRef("project__owner_id"),
        )
        .order_by()
        .values("node_id")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return (
        jobs.filter(state=JobState.QUEUED, available_at__lte=now, node__enabled=True)
        .exclude(Exists(earlier_open))
        .alias(owner_leased=Coalesce(Subquery(owner_leased), Value(0), output_field=IntegerField()))
        .filter(owner_leased__lt=limit)
    )


# --- SQL form (the claim) --------------------------------------------------------------------


def leasable_sql(job_table: str, project_table: str, node_table: str) -> str:
    """The leasable condition on `j` (a job row of one node, `j.node_id = <that node>` in the
    caller's SQL) joined to `p` (its project row), for raw SQL; its parameters come from
    `leasable_params`. The node's `enabled` is read here, in the claim, so that a node disabled
    while its agent waited gets nothing.

    The owners at their limit on the node are found once per statement (the node is a
    parameter), not counted again for every queued job: on a table the planner has no
    statistics for yet, it would otherwise count for each of the node's queued jobs before it
    sorted them, milliseconds per claim with a few hundred queued.
    """
    return f"""
        j.state = %s AND j.available_at <= %s
        AND EXISTS (SELECT 1 FROM {node_table} n WHERE n.id = j.node_id AND n.enabled)
        AND NOT EXISTS (
          SELECT 1 FROM {job_table} e
          WHERE e.project_id = j.project_id AND e.state IN (%s, %s) AND e.seq < j.seq
        )
        AND p.owner_id NOT IN (
          SELECT rp.owner_id FROM {job_table} r JOIN {project_table} rp ON rp.id = r.project_id
          WHERE r.node_id = %s AND r.state = %s
          GROUP BY rp.owner_id HAVING COUNT(*) >= %s
        )
    """  # noqa: S608 - table names come from the models, values are parameters


def leasable_params(node: Any, now: Any, limit: int) -> list[Any]:
    """The parameters of `leasable_sql`, `node` (the node's id) and `now` already adapted for
    the database."""
    return [
        JobState.QUEUED.value,
        now,
        JobState.QUEUED.value,
        JobState.LEASED.value,
        node,
        JobState.LEASED.value,
        limit,
    ]
