"""Between the decider's state and the projection tables: load, save, and rebuild from the log.

Only `projects.eventstore.append` and `rebuild_projections` call `save`; nothing else writes
the `Project` and `Job` tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef

from projects import domain
from projects.models import Event, Job, Project

_JOB_FIELDS = (
    "kind",
    "seq",
    "state",
    "max_attempts",
    "queued_at",
    "available_at",
    "attempt",
    "failures",
    "lease_token",
    "lease_request_id",
    "lease_instance_id",
    "leased_at",
    "lease_expires_at",
    "progress",
    "result",
    "error",
    "finished_at",
    "updated_at",
)
_PROJECT_FIELDS = (
    "version",
    "name",
    "git_url",
    "branch",
    "depth",
    "target_path",
    "status",
    "commit",
    "checkout_branch",
    "local_path",
    "last_error",
    "created_at",
    "updated_at",
)


def stored_event(row: Event) -> domain.Event:
    return domain.Event(
        type=row.type, data=row.data, version=row.version, recorded_at=row.recorded_at
    )


def _job_state(row: Job) -> domain.Job:
    values = {name: getattr(row, name) for name in _JOB_FIELDS}
    values["kind"] = domain.JobKind(row.kind)
    values["state"] = domain.JobState(row.state)
    return domain.Job(id=str(row.id), **values)


def load(project_id: uuid.UUID | str, *, job_ids: Iterable[str] = (), lock: bool = False):
    """The decider's state of a project from its projection: the project, its open jobs and
    the jobs named in `job_ids`. `lock` takes the stream's row lock (PostgreSQL) first.
    """
    query = Project.objects.filter(pk=project_id)
    if lock:
        query = query.select_for_update()
    row = query.first()
    if row is None:
        return domain.initial_state(str(project_id))
    wanted = [str(job_id) for job_id in job_ids]
    jobs = Job.objects.filter(project_id=row.pk).filter(
        state__in=[s.value for s in domain.OPEN_JOB_STATES]
    ) | Job.objects.filter(project_id=row.pk, id__in=_valid_uuids(wanted))
    values = {name: getattr(row, name) for name in _PROJECT_FIELDS}
    values["status"] = domain.ProjectStatus(row.status)
    return domain.Project(
        id=str(row.pk),
        owner_id=row.owner_id,
        node_id=str(row.node_id),
        jobs={str(job.id): _job_state(job) for job in jobs},
        **values,
    )


def _valid_uuids(values: Iterable[str]) -> list[uuid.UUID]:
    out = []
    for value in values:
        try:
            out.append(uuid.UUID(value))
        except ValueError:
            continue
    return out


def save(state: domain.Project, *, job_ids: Iterable[str], created: bool) -> None:
    """Writes the project row and the rows of `job_ids` as `state` has them."""
    values = {name: getattr(state, name) for name in _PROJECT_FIELDS}
    values["status"] = state.status.value
    if created:
        Project.objects.create(
            id=state.id, owner_id=state.owner_id, node_id=state.node_id, **values
        )
    else:
        Project.objects.filter(pk=state.id).update(**values)
    for job_id in job_ids:
        job = state.jobs[job_id]
        fields = _job_values(job)
        updated = Job.objects.filter(pk=job.id).update(**fields)
        if not updated:
            Job.objects.create(id=job.id, project_id=state.id, node_id=state.node_id, **fields)


def _job_values(job: domain.Job) -> dict[str, Any]:
    fields = {name: getattr(job, name) for name in _JOB_FIELDS}
    fields["kind"] = job.kind.value
    fields["state"] = job.state.value
    return fields


# --- Rebuild ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    project_id: str
    what: str
    field: str
    stored: Any
    replayed: Any

    def __str__(self) -> str:
        return (
            f"project {self.project_id}: {self.what} {self.field}: "
            f"stored {self.stored!r}, replayed {self.replayed!r}"
        )


def replay(project_id: str, events: Iterable[domain.Event]) -> domain.Project:
    return domain.fold(domain.initial_state(project_id), events)


def replay_all(batch_size: int = 2000) -> Iterator[domain.Project]:
    """Every project folded from its events, streaming the log in position order per stream."""
    project_ids = (
        Event.objects.order_by("project_id").values_list("project_id", flat=True).distinct()
    )
    for project_id in project_ids.iterator(chunk_size=batch_size):
        rows = Event.objects.filter(project_id=project_id).order_by("version")
        yield replay(str(project_id), (stored_event(row) for row in rows.iterator(batch_size)))


def diff(replayed: domain.Project) -> list[Drift]:
    """How the stored projection of one project differs from its replay."""
    drifts: list[Drift] = []
    row = Project.objects.filter(pk=replayed.id).first()
    if row is None:
        return [Drift(replayed.id, "project", "row", None, "present")]
    expected = {name: getattr(replayed, name) for name in _PROJECT_FIELDS}
    expected["status"] = replayed.status.value
    expected["owner_id"] = replayed.owner_id
    expected["node_id"] = replayed.node_id
    actual = {name: getattr(row, name) for name in _PROJECT_FIELDS}
    actual["owner_id"] = row.owner_id
    actual["node_id"] = str(row.node_id)
    drifts += [
        Drift(replayed.id, "project", name, actual[name], value)
        for name, value in expected.items()
        if actual[name] != value
    ]
    stored_jobs = {str(job.id): job for job in Job.objects.filter(project_id=replayed.id)}
    for job_id, job in replayed.jobs.items():
        stored = stored_jobs.pop(job_id, None)
        if stored is None:
            drifts.append(Drift(replayed.id, f"job {job_id}", "row", None, "present"))
            continue
        values = _job_values(job)
        drifts += [
            Drift(replayed.id, f"job {job_id}", name, getattr(stored, name), value)
            for name, value in values.items()
            if getattr(stored, name) != value
        ]
    drifts += [
        Drift(replayed.id, f"job {job_id}", "row", "present", None) for job_id in stored_jobs
    ]
    return drifts


def check(project_id: str) -> list[Drift]:
    """Replays one project from its events and compares it with what is stored."""
    rows = Event.objects.filter(project_id=project_id).order_by("version")
    return diff(replay(str(project_id), map(stored_event, rows.iterator())))


def orphans() -> list[Drift]:
    """Project rows that no event stream accounts for."""
    # NOT EXISTS, not NOT IN: PostgreSQL rescans a NOT IN subquery for every row.
    has_events = Exists(Event.objects.filter(project_id=OuterRef("pk")))
    return [
        Drift(str(pk), "project", "row", "present", None)
        for pk in Project.objects.filter(~has_events).values_list("pk", flat=True)
    ]


def repair(replayed: domain.Project) -> None:
    """Rewrites one project's projection rows from its replay."""
    Job.objects.filter(project_id=replayed.id).exclude(id__in=list(replayed.jobs)).delete()
    created = not Project.objects.filter(pk=replayed.id).exists()
    save(replayed, job_ids=list(replayed.jobs), created=created)
