"""What agents may do with jobs: lease, renew, complete, release; and the sweeps that expire.

Sync functions, called from the agent API (which runs them off the event loop) and from tests.
Every change goes through the decider like any other; nothing here writes a projection.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.exceptions import Conflict, DomainError, NotFound
from nodes.models import Node
from projects import domain, fixed_sql, projection, queue
from projects.delivery import JobAccess
from projects.domain import JobState
from projects.eventstore import execute
from projects.models import Job, Project
from projects.wakeups import announce_if_leasable


@dataclass(frozen=True)
class Grant:
    """A job handed to an agent, with its lease, as the append that leased it left them.

    `agent_api.LeaseResponseSerializer` renders it.
    """

    job: domain.Job
    project: domain.Project
    # What the lease answer adds for the agent (`projects.delivery`), once the view has it.
    access: JobAccess = field(default_factory=JobAccess)

    @property
    def timeout_seconds(self) -> int:
        """How long the agent may let git run for this job."""
        return settings.GIT_JOB_TIMEOUT

    @property
    def renew_every_seconds(self) -> int:
        return settings.LEASE_RENEW_SECONDS


def _agent_meta(node: Node, **extra: Any) -> dict[str, Any]:
    return {"node_id": str(node.pk), **{k: v for k, v in extra.items() if v}}


@dataclass(frozen=True)
class _NodeJob:
    """What the agent calls read of a job before deciding: whose stream it is on, and its kind."""

    pk: uuid.UUID
    project_id: uuid.UUID
    kind: str


def _node_job(node: Node, job_id: uuid.UUID | str) -> _NodeJob:
    """The job if it is this node's; another node's job is answered as if it did not exist."""
    row = fixed_sql.node_job_row(job_id, node.pk, ("id", "project_id", "kind"))
    if row is None:
        raise NotFound("No such job for this node.", field="job_id")
    return _NodeJob(pk=row["id"], project_id=row["project_id"], kind=row["kind"])


def job_kind(*, node: Node, job_id: uuid.UUID | str) -> str:
    return _node_job(node, job_id).kind


# --- Leasing ----------------------------------------------------------------------------------


def _node_param(node: Node) -> Any:
    return Job._meta.get_field("node").target_field.get_db_prep_value(node.pk, connection)


def _leasable_of(node: Node, now: datetime) -> tuple[str, list[Any]]:
    """`FROM … WHERE` of `node`'s leasable jobs (`j`, joined to their projects `p`), as the
    claim and the first look both read them (`projects.queue.leasable_sql`, which reads the
    node's `enabled` too), and its parameters."""
    job, project, node_table = Job._meta.db_table, Project._meta.db_table, Node._meta.db_table
    node_id = _node_param(node)
    sql = f"""
        FROM {job} j JOIN {project} p ON p.id = j.project_id
        WHERE j.node_id = %s AND {queue.leasable_sql(job, project, node_table)}
    """
    params = queue.leasable_params(
        node_id,
        connection.ops.adapt_datetimefield_value(now),
        settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE,
    )
    return sql, [node_id, *params]


def claim_query(node: Node, now: datetime) -> tuple[str, list[Any]]:
    """The claim's SQL and parameters: the project of the oldest leasable job of `node`,
    locked, skipping projects another transaction holds. The `job_claim` index serves it in
    queue order, so the scan stops at the first leasable job however deep the queue.
    """
    leasable, params = _leasable_of(node, now)
    lock = "FOR UPDATE OF p SKIP LOCKED" if connection.vendor == "postgresql" else ""
    return f"SELECT j.project_id {leasable} ORDER BY j.queued_at LIMIT 1 {lock}", params


# The first look, as one fixed statement: an idle fleet's every poll runs it, and building and
# compiling it through the ORM cost more than running it. Its rows are the node's leased jobs
# given for this request or whose lease ran out, and then one row of NULLs if the node has a job
# it may lease now.
_FIRST_LOOK = """
    SELECT * FROM (
        SELECT id, project_id, lease_request_id, lease_instance_id FROM {job}
        WHERE node_id = %s AND state = %s
          AND ((lease_request_id = %s AND lease_instance_id = %s) OR lease_expires_at < %s)
        LIMIT 100
    ) AS given_or_lapsed
    UNION ALL
    SELECT NULL, NULL, NULL, NULL WHERE EXISTS (SELECT 1 {leasable})
""".strip()


@dataclass(frozen=True)
class _FirstLook:
    # (job id, project id, request id, instance id) of the node's leased jobs given for this
    # request by this instance, or whose lease ran out.
    given_or_lapsed: list[tuple[str, str, str, str]]
    any_leasable: bool  # whether the node has a job it may lease now


def _first_look(node: Node, request_id: str, instance_id: str, now: datetime) -> _FirstLook:
    leasable, leasable_params = _leasable_of(node, now)
    sql = _FIRST_LOOK.format(job=Job._meta.db_table, leasable=leasable)
    params = [
        _node_param(node),
        JobState.LEASED.value,
        request_id,
        instance_id,
        connection.ops.adapt_datetimefield_value(now),
        *leasable_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return _FirstLook(
        given_or_lapsed=[
            (_uuid(job_id), _uuid(project_id), given_for, given_to)
            for job_id, project_id, given_for, given_to in rows
            if job_id is not None
        ],
        any_leasable=any(job_id is None for job_id, *_ in rows),
    )


def _uuid(value: Any) -> str:
    """A UUID column's value as the canonical string, whichever the engine returns."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


# Advisory-lock class of the claims, so that their keys cannot meet another use of such locks.
_CLAIM_LOCK_CLASS = 0x6746


def _claim_candidate(node: Node, now: datetime) -> str | None:
    """Locks and returns the project of the oldest leasable job of `node` (`claim_query`).

    On PostgreSQL the claims of one node first take turns on an advisory lock held to the end
    of the transaction: the claim counts the owner's leased jobs, and two claims counting at
    once would each miss the other's lease and break the per-person limit. The claim's own
    statement starts after the lock is granted, so it sees the lease the previous one
    committed; both go in one round trip (`fixed_sql.run_together`). SQLite's `BEGIN
    IMMEDIATE` serialises the claims already.
    """
    statements = [claim_query(node, now)]
    if connection.vendor == "postgresql":
        lock = ("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_CLAIM_LOCK_CLASS, str(node.pk)])
        statements.insert(0, lock)
    rows = fixed_sql.run_together(statements)[-1].rows
    return _uuid(rows[0][0]) if rows else None


def lease(*, node: Node, request_id: str, instance_id: str, woken: bool = False) -> Grant | None:
    """Leases the next job of `node`, or returns the lease already given for `request_id`.

    A first look answers a retried `request_id`, expires the node's lapsed leases, and, when
    nothing is due (the usual answer to an idle fleet's polls), returns after one read without
    opening a write transaction. `woken` is for a long poll's looks after its first, when a
    wake-up says work may have appeared: those go straight to the claim. A disabled node is
    given no new work (only the answer to a retried `request_id`).
    """
    if not woken:
        now = timezone.now()
        look = _first_look(node, request_id, str(instance_id), now)
        for job_id, project_id, given_for, given_to in look.given_or_lapsed:
            if (given_for, given_to) == (request_id, str(instance_id)):
                state = projection.load(project_id, job_ids=[job_id])
                return Grant(job=state.jobs[job_id], project=state)
        lapsed = [(job_id, project_id) for job_id, project_id, *_ in look.given_or_lapsed]
        if not _expire(lapsed, now) and not look.any_leasable:
            return None  # an idle node's poll: one read, no transaction
    for _ in range(5):
        now = timezone.now()
        with transaction.atomic():
            project_id = _claim_candidate(node, now)
            if project_id is None:
                return None

            def command(state: domain.Project, now: datetime = now) -> domain.Command:
                head = state.head_job()
                if head is None:
                    raise Conflict("Nothing to lease.", code="not_next")
                return domain.LeaseJob(
                    job_id=head.id,
                    lease_token=secrets.token_urlsafe(24),
                    request_id=request_id,
                    instance_id=instance_id,
                    now=now,
                    lease_seconds=settings.LEASE_SECONDS,
                )

            try:
                appended = execute(
                    project_id,
                    command,
                    meta=_agent_meta(node, request_id=request_id),
                    savepoint=False,  # on any refusal this whole transaction rolls back
                )
            except Conflict:
                # The head changed under us (cancelled, backing off): roll back, look again.
                transaction.set_rollback(True)
                continue
        state = appended.state
        return Grant(job=state.jobs[appended.events[0].event.job_id], project=state)
    return None


def _apply(project_id, job_id, command: domain.Command, meta: dict[str, Any]) -> domain.Job:
    """Runs one command about one job through the decider, waking waiters if it frees work;
    returns the job as it is afterwards."""
    appended = execute(
        project_id, command, meta=meta, job_ids=[str(job_id)], after=announce_if_leasable
    )
    return appended.state.jobs[str(job_id)]


def _apply_if_still_due(project_id, job_id, command: domain.Command, meta: dict[str, Any]) -> bool:
    """Like `_apply`, for sweeps: False when the job moved on meanwhile (renewed, finished)."""
    try:
        _apply(project_id, job_id, command, meta)
    except DomainError:
        return False
    return True


def renew(
    *, node: Node, job_id: uuid.UUID | str, lease_token: str, progress: dict | None
) -> datetime:
    job = _node_job(node, job_id)
    command = domain.RenewLease(
        job_id=str(job.pk),
        lease_token=lease_token,
        now=timezone.now(),
        lease_seconds=settings.LEASE_SECONDS,
        progress=progress or None,
    )
    appended = execute(job.project_id, command, meta=_agent_meta(node), job_ids=[str(job.pk)])
    return appended.state.jobs[str(job.pk)].lease_expires_at


def complete(
    *,
    node: Node,
    job_id: uuid.UUID | str,
    lease_token: str,
    result: dict | None = None,
    error: dict | None = None,
) -> domain.Job:
    """Records the outcome once; the same report again changes nothing and answers the same."""
    job = _node_job(node, job_id)
    command = domain.CompleteJob(
        job_id=str(job.pk),
        lease_token=lease_token,
        now=timezone.now(),
        result=result,
        error=error,
        retry_backoff_seconds=settings.RETRY_BACKOFF_SECONDS,
    )
    return _apply(job.project_id, job.pk, command, _agent_meta(node))


def release(*, node: Node, job_id: uuid.UUID | str, lease_token: str, reason: str) -> domain.Job:
    job = _node_job(node, job_id)
    command = domain.ReleaseLease(
        job_id=str(job.pk),
        reason=reason,
        max_releases=settings.LEASE_MAX_RELEASES,
        lease_token=lease_token,
    )
    return _apply(job.project_id, job.pk, command, _agent_meta(node))


def release_other_instances(*, node: Node, instance_id: str) -> int:
    """Gives back at once the leases `node` held under an earlier agent instance."""
    stale = Job.objects.filter(node=node, state=JobState.LEASED).exclude(
        lease_instance_id=instance_id
    )
    meta = _agent_meta(node, instance_id=instance_id)
    return sum(
        _apply_if_still_due(
            job.project_id,
            job.pk,
            domain.ReleaseLease(str(job.pk), "agent_restarted", settings.LEASE_MAX_RELEASES),
            meta,
        )
        for job in stale
    )


# --- Sweeps: the server's sweeper thread runs them; lease calls expire their own node's -------


def expire_leases(*, node: Node | None = None, limit: int = 100) -> int:
    """Puts jobs whose lease ran out back in the queue (or fails them after max attempts)."""
    now = timezone.now()
    expired = Job.objects.filter(state=JobState.LEASED, lease_expires_at__lt=now)
    if node is not None:
        expired = expired.filter(node=node)
    return _expire(expired.values_list("id", "project_id")[:limit], now)


def _expire(jobs, now: datetime) -> int:
    """Expires the leases of `jobs` ((job id, project id) pairs) that are still lapsed."""
    meta = {"system": "lease_expiry"}
    return sum(
        _apply_if_still_due(project_id, job_id, domain.ExpireLease(str(job_id), now), meta)
        for job_id, project_id in jobs
    )


def expire_queued(*, limit: int = 100) -> int:
    """Fails jobs that waited longer than `QUEUED_JOB_TTL` for a node that is offline or off."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.QUEUED_JOB_TTL)
    waiting = (
        Job.objects.filter(state=JobState.QUEUED, queued_at__lt=cutoff)
        .exclude(node__in=Node.objects.accepting_work())
        .select_related("node")
        .order_by("queued_at")
    )
    count = 0
    for job in waiting[:limit]:
        why = "disabled" if not job.node.enabled else "offline"
        reason = (
            f"Node {job.node.name} stayed {why}; the job waited more than "
            f"{settings.QUEUED_JOB_TTL} s."
        )
        count += _apply_if_still_due(
            job.project_id,
            job.pk,
            domain.ExpireQueuedJob(str(job.pk), reason),
            {"system": "queue_expiry"},
        )
    return count


def sweep() -> dict[str, int]:
    return {"leases_expired": expire_leases(), "queued_expired": expire_queued()}
