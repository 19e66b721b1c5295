"""Scheduled sync: each sweep queues a pull for every project whose interval has come round.

Several server processes sweep at once; a period belongs to the one whose conditional update
moves `next_due_at` on from the value it read, so each period queues at most one pull.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from core.exceptions import Invalid
from projects import domain
from projects.models import Project
from sync.models import SyncSchedule
from sync.pulls import PullCause, queue_pull

MIN_INTERVAL = 60
MAX_INTERVAL = 30 * 86400
BATCH = 200


def valid_interval(value: object) -> int | None:
    """`value` as a sync interval in seconds, or None for no schedule; raises ValueError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("A whole number of seconds, or null for no scheduled sync.")
    if not MIN_INTERVAL <= value <= MAX_INTERVAL:
        raise ValueError(f"From {MIN_INTERVAL} to {MAX_INTERVAL} seconds, or null.")
    return value


def set_sync_interval(*, project: Project, interval: object) -> int | None:
    """Schedules a pull of `project` every `interval` seconds, or none when it is None; raises
    `Invalid` naming `sync_interval`."""
    try:
        seconds = valid_interval(interval)
    except ValueError as exc:
        raise Invalid(str(exc), field="sync_interval") from None
    if seconds is None:
        SyncSchedule.objects.filter(project=project).delete()
        return None
    SyncSchedule.objects.update_or_create(
        project=project,
        defaults={"interval": seconds, "next_due_at": timezone.now() + timedelta(seconds=seconds)},
    )
    return seconds


def sync_interval(project: Project) -> int | None:
    schedule = SyncSchedule.objects.filter(project=project).first()
    return schedule.interval if schedule else None


def queue_due_pulls(now: datetime | None = None) -> int:
    """Queues the pulls whose time has come; returns how many were queued."""
    now = now or timezone.now()
    due = list(
        SyncSchedule.objects.filter(
            next_due_at__lte=now, project__status=domain.ProjectStatus.READY
        ).order_by("next_due_at")[:BATCH]
    )
    queued = 0
    for schedule in due:
        claimed = SyncSchedule.objects.filter(
            pk=schedule.pk, next_due_at=schedule.next_due_at
        ).update(next_due_at=now + timedelta(seconds=schedule.interval))
        if not claimed:
            continue  # another process took this period
        project = Project.objects.select_related("node").get(pk=schedule.pk)
        if queue_pull(project, cause=PullCause(kind="schedule")):
            queued += 1
    return queued
