"""What people may ask of projects: clone, pull, delete, cancel, retry.

Each function checks what only the outside world knows (the node, name uniqueness), then hands
a command to the decider through `eventstore.execute`. Views and the admin call these and
nothing lower.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError

from core.exceptions import Conflict, NotFound
from nodes.models import Node
from projects import domain, wakeups
from projects.eventstore import Appended, execute
from projects.models import Job, Project


def _meta(actor: AbstractBaseUser, request_id: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"user_id": actor.pk}
    if request_id:
        meta["request_id"] = request_id
    return meta


def _require_node_accepts_work(node: Node, field: str = "node") -> None:
    if not node.enabled:
        raise Conflict(
            f"Node {node.name} is disabled and takes no new work.",
            field=field,
            code="node_disabled",
        )
    if not node.is_online:
        raise Conflict(
            f"Node {node.name} is offline (not seen in the last {settings.NODE_ONLINE_WINDOW} s).",
            field=field,
            code="node_offline",
        )


def _wake(appended: Appended) -> None:
    wakeups.announce_if_leasable(appended)


def request_clone(
    *,
    owner: AbstractBaseUser,
    name: str,
    git_url: str,
    branch: str,
    node: Node,
    depth: int | None = None,
    request_id: str | None = None,
) -> Project:
    """Creates a project and queues its clone on `node`. Inputs are already validated."""
    _require_node_accepts_work(node)
    if (
        Project.objects.filter(owner=owner, name=name)
        .exclude(status=domain.ProjectStatus.DELETED)
        .exists()
    ):
        raise Conflict(
            f"You already have a project named {name!r}.", field="name", code="duplicate_name"
        )
    project_id = str(uuid.uuid4())
    command = domain.CreateProject(
        owner_id=owner.pk,
        name=name,
        node_id=str(node.pk),
        git_url=git_url,
        branch=branch,
        depth=depth,
        job_id=str(uuid.uuid4()),
        max_attempts=settings.LEASE_MAX_ATTEMPTS,
    )
    try:
        execute(project_id, command, meta=_meta(owner, request_id), after=_wake)
    except IntegrityError as exc:  # a concurrent twin won the (owner, name) constraint
        raise Conflict(
            f"You already have a project named {name!r}.", field="name", code="duplicate_name"
        ) from exc
    return Project.objects.get(pk=project_id)


def request_pull(
    *, project: Project, actor: AbstractBaseUser, request_id: str | None = None
) -> Job:
    _require_node_accepts_work(project.node)
    job_id = str(uuid.uuid4())
    command = domain.RequestPull(job_id=job_id, max_attempts=settings.LEASE_MAX_ATTEMPTS)
    execute(project.pk, command, meta=_meta(actor, request_id), after=_wake)
    return Job.objects.get(pk=job_id)


def request_delete(
    *, project: Project, actor: AbstractBaseUser, request_id: str | None = None
) -> Job:
    """Queues the removal of the checkout. Queued jobs are cancelled; a running one finishes."""
    job_id = str(uuid.uuid4())
    command = domain.RequestDelete(job_id=job_id, max_attempts=settings.LEASE_MAX_ATTEMPTS)
    execute(project.pk, command, meta=_meta(actor, request_id), after=_wake)
    return Job.objects.get(pk=job_id)


def cancel_job(
    *, project: Project, job_id: str, actor: AbstractBaseUser, request_id: str | None = None
) -> Job:
    """Cancels a queued or running job; a running one is stopped by its agent's next renew."""
    command = domain.CancelJob(job_id=str(job_id), reason="cancelled_by_user")
    execute(project.pk, command, meta=_meta(actor, request_id), job_ids=[str(job_id)])
    return Job.objects.get(pk=job_id)


def retry_job(
    *, project: Project, job_id: str, actor: AbstractBaseUser, request_id: str | None = None
) -> Job:
    """Queues a new job like a failed or cancelled one."""
    failed = Job.objects.filter(pk=job_id, project=project).first()
    if failed is None:
        raise NotFound("No such job in this project.", field="job_id")
    if failed.kind != domain.JobKind.DELETE:
        _require_node_accepts_work(project.node)
    new_job_id = str(uuid.uuid4())
    command = domain.RetryJob(
        failed_job_id=str(job_id), job_id=new_job_id, max_attempts=settings.LEASE_MAX_ATTEMPTS
    )
    execute(project.pk, command, meta=_meta(actor, request_id), job_ids=[str(job_id)], after=_wake)
    return Job.objects.get(pk=new_job_id)


def latest_retryable_job(project: Project) -> Job | None:
    """The most recent failed or cancelled job, if nothing is queued or running after it."""
    last = project.jobs.order_by("-seq").first()
    if last is None or last.state not in (domain.JobState.FAILED, domain.JobState.CANCELLED):
        return None
    return last
