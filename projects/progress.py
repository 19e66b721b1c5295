"""Live progress of running jobs: telemetry kept beside the projection, never in the event log.

The agent posts git's progress every couple of seconds; writing an event for each would swell
the log with facts nobody replays. So the latest progress is stored on the job's row
(`Job.live_progress`, `live_progress_at`), the one write to that table outside
`projects.eventstore`, and only to those two columns, which `rebuild_projections` ignores. The
renewal still carries progress into `JobLeaseRenewed` at its own slower cadence, so the log
keeps a coarse record.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from typing import Any

from django.utils import timezone

from core.exceptions import LeaseLost, NotFound
from nodes.models import Node
from projects.domain import JobState
from projects.models import Job


def record_progress(
    *, node: Node, job_id: uuid.UUID | str, lease_token: str, progress: dict[str, Any]
) -> datetime:
    """Stores `progress` as the latest of the job's current attempt; raises `LeaseLost` when
    the lease is not (or no longer) this token's, `NotFound` for another node's job."""
    job = Job.objects.filter(pk=job_id, node=node).only("state", "lease_token", "attempt").first()
    if job is None:
        raise NotFound("No such job for this node.", field="job_id")
    if job.state != JobState.LEASED or not hmac.compare_digest(
        job.lease_token.encode(), lease_token.encode()
    ):
        raise LeaseLost(
            f"The lease on job {job.pk} is no longer yours (job is {job.state}).",
            field="lease_token",
        )
    now = timezone.now()
    # Guarded by the token again, so a lease that moved on meanwhile is not written over.
    Job.objects.filter(pk=job.pk, state=JobState.LEASED, lease_token=job.lease_token).update(
        live_progress={**progress, "attempt": job.attempt}, live_progress_at=now
    )
    return now


def current(job: Job) -> tuple[dict[str, Any], datetime | None]:
    """The job's latest progress and when it was reported: the live one while it belongs to
    the running attempt, else what the last renewal recorded."""
    live = job.live_progress or {}
    if job.state == JobState.LEASED and live.get("attempt") == job.attempt:
        return {k: v for k, v in live.items() if k != "attempt"}, job.live_progress_at
    return job.progress, None
