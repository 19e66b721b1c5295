"""Reads of projects, as each person may see them, and of the queue, as the long polls need it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from projects import queue
from projects.domain import ProjectStatus
from projects.models import Event, Job, Project
from projects.queue import JobState


def visible_projects(user: AbstractBaseUser) -> QuerySet[Project]:
    """Staff see every project; everyone else sees their own."""
    projects = Project.objects.select_related("node", "credential")
    return projects if user.is_staff else projects.filter(owner=user)


def project_for(user: AbstractBaseUser, project_id) -> Project:
    """The project if `user` may see it; 404 otherwise, so others' projects do not leak."""
    return get_object_or_404(visible_projects(user), pk=project_id)


def project_with_open_jobs_for(user: AbstractBaseUser, project_id) -> Project:
    """`project_for`, with its open jobs fetched once for the answers that show them."""
    return get_object_or_404(with_open_jobs(visible_projects(user)), pk=project_id)


def project_events(project: Project) -> QuerySet[Event]:
    return Event.objects.filter(project_id=project.pk).order_by("version")


def with_open_jobs(projects: QuerySet[Project]) -> QuerySet[Project]:
    """Fetches every listed project's open jobs in one query, for `active_job`."""
    open_jobs = queue.open_in_queue_order(Job.objects.all())
    return projects.prefetch_related(Prefetch("jobs", queryset=open_jobs, to_attr="open_jobs"))


def active_job(project: Project) -> Job | None:
    """The project's head (`projects.queue.head`): the job running now or next."""
    prefetched = getattr(project, "open_jobs", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return queue.open_in_queue_order(project.jobs.all()).first()


def leasable_jobs(node_ids: list[str], now: datetime | None = None) -> QuerySet[Job]:
    """The jobs that the nodes `node_ids` may lease now (`projects.queue.leasable_only`)."""
    return queue.leasable_only(
        Job.objects.filter(node_id__in=node_ids),
        now=now or timezone.now(),
        limit=settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE,
    )


def nodes_with_leasable_jobs(node_ids: list[str]) -> set[str]:
    """Which of `node_ids` have a job to lease now (the long polls' re-check)."""
    due = leasable_jobs(node_ids).order_by().values_list("node_id", flat=True).distinct()
    return {str(node_id) for node_id in due}


@dataclass(frozen=True)
class FailureReason:
    """Why a project is not where it was asked to be, in words people can read."""

    code: str
    message: str
    retry_at: datetime | None = None
    """When the failed attempt is tried again, if it will be."""


def failure_reason(project: Project) -> FailureReason | None:
    """The current job's error while it has one (a retry is scheduled), else, for a failed
    project, its last error; never an older job's error while a newer job is open."""
    job = active_job(project)
    if job is not None:
        if not job.error:
            return None
        retry_at = job.available_at if job.state == JobState.QUEUED else None
        return _reason(job.error, retry_at)
    if project.status == ProjectStatus.FAILED and project.last_error:
        return _reason(project.last_error, None)
    return None


def last_error(project: Project) -> dict | None:
    """The project's latest error: the current job's while it waits for another attempt (the
    projection records an error only when a job ends), else the one recorded when a job last
    failed or was cancelled."""
    job = active_job(project)
    if job is not None and job.error:
        retry_at = job.available_at if job.state == JobState.QUEUED else None
        return {**job.error, "job_id": str(job.pk), "kind": job.kind, "retry_at": retry_at}
    return project.last_error


def _reason(error: dict, retry_at: datetime | None) -> FailureReason:
    return FailureReason(
        code=str(error.get("code") or "error"),
        message=str(error.get("message") or ""),
        retry_at=retry_at,
    )
