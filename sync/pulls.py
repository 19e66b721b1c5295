"""Queueing a pull that no person asked for: a hook delivery or the schedule caused it."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

from django.conf import settings

from core.exceptions import DomainError
from projects import domain, queue, wakeups
from projects.eventstore import execute
from projects.models import Job, Project


@dataclass(frozen=True)
class PullCause:
    """Why a pull no person asked for was queued, kept in its events' `meta["cause"]`. Events
    stored before causes existed, and pulls people asked for, have none."""

    kind: Literal["hook", "schedule"]
    hook_id: str | None = None
    delivery_id: str | None = None

    def to_meta(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> PullCause | None:
        stored = meta.get("cause")
        return cls(**stored) if isinstance(stored, dict) else None


def queue_pull(project: Project, *, cause: PullCause) -> str | None:
    """Queues a pull of `project` with `cause` in its events' meta, and returns the job id; None
    when the project is not ready, its node takes no work, or a pull is queued or running."""
    node = project.node
    if not (node.enabled and node.is_online):
        return None
    running = queue.open_only(Job.objects.filter(project=project, kind=domain.JobKind.PULL))
    if running.exists():
        return None
    job_id = str(uuid.uuid4())
    command = domain.RequestPull(job_id=job_id, max_attempts=settings.LEASE_MAX_ATTEMPTS)
    meta = {"user_id": project.owner_id, "cause": cause.to_meta()}
    try:
        execute(project.pk, command, meta=meta, after=wakeups.announce_if_leasable)
    except DomainError:  # not ready, or a pull queued meanwhile: nothing to add
        return None
    return job_id
