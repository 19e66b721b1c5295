"""Between the decider's state and the projection tables: load, save, and rebuild from the log.

Only `projects.eventstore.append` (`save_changes`) and `rebuild_projections` (`save`) write the
`Project` and `Job` tables; nothing else does. `load` and `save_changes`, which every command
runs, use the fixed statements of `projects.fixed_sql` rather than the ORM; the rebuild keeps the ORM.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from itertools import groupby, islice
from operator import itemgetter
from typing import Any

from django.db.models import Exists, Func, OuterRef, QuerySet, TextField
from django.db.models.functions import Cast

from projects import domain, fixed_sql, queue
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
    "timeouts",
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
    "options",
)
_PROJECT_FIELDS = (
    "version",
    "name",
    "git_url",
    "branch",
    "depth",
    "target_path",
    "credential_id",
    "status",
    "commit",
    "checkout_branch",
    "ref_kind",
    "lfs",
    "submodules",
    "filter",
    "sparse",
    "submodules_skipped",
    "local_path",
    "last_error",
    "created_at",
    "updated_at",
    "workspace",
)


_LOADED_JOB_COLUMNS = ("id", *_JOB_FIELDS)
_LOADED_PROJECT_COLUMNS = ("id", "owner_id", "node_id", *_PROJECT_FIELDS)


def _job_state(row: dict[str, Any]) -> domain.Job:
    """A job as the decider has it, from its stored columns (`_LOADED_JOB_COLUMNS`)."""
    values = {name: row[name] for name in _JOB_FIELDS}
    values["kind"] = domain.JobKind(row["kind"])
    values["state"] = domain.JobState(row["state"])
    return domain.Job(id=str(row["id"]), **values)


def load(project_id: uuid.UUID | str, *, job_ids: Iterable[str] = (), lock: bool = False):
    """The decider's state of a project from its projection: the project, its open jobs and
    the jobs named in `job_ids`. `lock` takes the stream's row lock (PostgreSQL) first.
    """
    row, jobs = fixed_sql.project_with_jobs(
        project_id,
        _LOADED_PROJECT_COLUMNS,
        _LOADED_JOB_COLUMNS,
        states=queue.OPEN_JOB_STATES,
        job_ids=_valid_uuids(str(job_id) for job_id in job_ids),
        lock=lock,
    )
    if row is None:
        return domain.initial_state(str(project_id))
    values = _stored_project_values(row)
    values["status"] = domain.ProjectStatus(row["status"])
    return domain.Project(
        id=str(row["id"]),
        owner_id=row["owner_id"],
        node_id=str(row["node_id"]),
        jobs={str(job["id"]): _job_state(job) for job in jobs},
        **values,
    )


def _stored_project_values(row: dict[str, Any]) -> dict[str, Any]:
    """The row's `_PROJECT_FIELDS` as the decider spells them (the credential id as text)."""
    values = {name: row[name] for name in _PROJECT_FIELDS}
    if values["credential_id"] is not None:
        values["credential_id"] = str(values["credential_id"])
    return values


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
    if created:
        _insert_project(state)
    else:
        Project.objects.filter(pk=state.id).update(**_project_values(state))
    for job_id in job_ids:
        job = state.jobs[job_id]
        if not Job.objects.filter(pk=job.id).update(**_job_values(job)):
            _insert_job(state, job)


def save_new(state: domain.Project) -> None:
    """Inserts the rows of a project's first events: the project and its jobs. A concurrent
    twin of the project (the same live owner and name) raises `IntegrityError`."""
    _insert_project(state)
    for job in state.jobs.values():
        _insert_job(state, job)


def changes(state: domain.Project, *, previous: domain.Project) -> list[fixed_sql.Statement]:
    """The statements that write what changed from `previous` (the state, already stored, that
    the events were folded onto) to `state`: the changed columns of the project row, the
    changed columns of the jobs it had, and the jobs that are new; for the caller to send with
    its events (`eventstore.append`).

    The first statement is the project row's compare-and-set on `previous.version`: a row
    count of 0 means another writer moved it first, and nothing of this may be committed.
    """
    changed = _changed_values(previous, state, _PROJECT_FIELDS)
    statements = [fixed_sql.update_statement(Project, state.id, changed, version=previous.version)]
    for job_id, job in state.jobs.items():
        before = previous.jobs.get(job_id)
        if before is None:
            statements += fixed_sql.insert_statements(Job, [_new_job_values(state, job)])
        elif job != before:
            changed = _changed_values(before, job, _JOB_FIELDS)
            statements.append(fixed_sql.update_statement(Job, job.id, changed))
    return statements


def _insert_project(state: domain.Project) -> None:
    values = {"id": state.id, "owner_id": state.owner_id, "node_id": state.node_id}
    fixed_sql.insert(Project, [{**values, **_project_values(state)}])


def _insert_job(state: domain.Project, job: domain.Job) -> None:
    fixed_sql.insert(Job, [_new_job_values(state, job)])


def _new_job_values(state: domain.Project, job: domain.Job) -> dict[str, Any]:
    values = {"id": job.id, "project_id": state.id, "node_id": state.node_id}
    return {**values, **_job_values(job)}


def _column(value: Any) -> Any:
    """A decider value as its column holds it (enums by their value)."""
    return value.value if isinstance(value, Enum) else value


def _project_values(state: domain.Project) -> dict[str, Any]:
    return {name: _column(getattr(state, name)) for name in _PROJECT_FIELDS}


def _changed_values(before: Any, after: Any, names: Iterable[str]) -> dict[str, Any]:
    return {
        name: _column(getattr(after, name))
        for name in names
        if getattr(after, name) != getattr(before, name)
    }


def _job_values(job: domain.Job) -> dict[str, Any]:
    return {name: _column(getattr(job, name)) for name in _JOB_FIELDS}


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


def replay(project_id: str, events: Iterable[domain.Recorded]) -> domain.Project:
    return domain.fold(domain.initial_state(project_id), events)


class _UtcText(Func):
    """A timestamp as ISO 8601 text in UTC, for `datetime.fromisoformat`: it reads one in a
    fifth of the time the drivers' own conversion takes (a regular expression on SQLite, pure
    Python in Django's psycopg loader), and a rebuild reads a million."""

    output_field = TextField()
    # SQLite holds Django's timestamps as UTC text already; CAST only hides the column's
    # declared type, which would make the sqlite3 module parse it.
    template = "CAST(%(expressions)s AS text)"

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler,
            connection,
            template="to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
            **extra_context,
        )


def _event_rows(events: QuerySet[Event]) -> QuerySet[Event, tuple[Any, ...]]:
    """`events` in stream order as tuples of what a replay reads and nothing else (no model
    instances, no `meta`), all of it as text that Django need not convert row by row: the
    stream id becomes a UUID once per stream, `_replayed_events` reads the rest."""
    return (
        events.order_by("project_id", "version")
        .annotate(
            stream=Cast("project_id", TextField()),
            data_json=Cast("data", TextField()),
            recorded_at_utc=_UtcText("recorded_at"),
        )
        .values_list("stream", "type", "data_json", "version", "recorded_at_utc")
    )


def _replayed_events(rows: Iterable[tuple[Any, ...]]) -> Iterator[domain.Recorded]:
    """The events of rows from `_event_rows`."""
    for _, type_, data, version, recorded_at in rows:
        at = datetime.fromisoformat(recorded_at).replace(tzinfo=UTC)
        yield domain.Recorded(domain.event_from_data(type_, json.loads(data)), version, at)


def replay_all(batch_size: int = 5000) -> Iterator[domain.Project]:
    """Every project folded from its events, in project id order.

    One query reads the whole log ordered by stream and version, `batch_size` rows at a time,
    so memory holds one chunk and one project whatever the size of the log.
    """
    rows = _event_rows(Event.objects.all()).iterator(chunk_size=batch_size)
    for stream, events in groupby(rows, key=itemgetter(0)):
        yield replay(str(uuid.UUID(stream)), _replayed_events(events))


def diffs(
    replayed: Iterable[domain.Project], batch_size: int = 500
) -> Iterator[tuple[domain.Project, list[Drift]]]:
    """Each replayed project and how its stored projection differs from it, in the order
    given. The stored rows of `batch_size` projects are read at a time: their
    project rows in one query and their job rows in another.
    """
    projects = iter(replayed)
    while batch := list(islice(projects, batch_size)):
        ids = [uuid.UUID(project.id) for project in batch]
        rows = {row.pk: row for row in Project.objects.filter(pk__in=ids).order_by()}
        jobs: dict[uuid.UUID, dict[str, Job]] = {project_id: {} for project_id in ids}
        for job in Job.objects.filter(project_id__in=ids):
            jobs[job.project_id][str(job.id)] = job
        for project, project_id in zip(batch, ids, strict=True):
            yield project, _drifts(project, rows.get(project_id), jobs[project_id])


def _drifts(
    replayed: domain.Project, row: Project | None, stored_jobs: dict[str, Job]
) -> list[Drift]:
    """How `row` and `stored_jobs` (the job rows of the project, by id) differ from
    `replayed`."""
    drifts: list[Drift] = []
    if row is None:
        return [Drift(replayed.id, "project", "row", None, "present")]
    expected = {
        **_project_values(replayed),
        "owner_id": replayed.owner_id,
        "node_id": replayed.node_id,
    }
    actual = _stored_project_values({name: getattr(row, name) for name in _PROJECT_FIELDS})
    actual["owner_id"] = row.owner_id
    actual["node_id"] = str(row.node_id)
    drifts += [
        Drift(replayed.id, "project", name, actual[name], value)
        for name, value in expected.items()
        if actual[name] != value
    ]
    stored_jobs = dict(stored_jobs)
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


def replay_one(project_id: str) -> domain.Project:
    """One project replayed from its events (`rebuild_projections --project`)."""
    rows = _event_rows(Event.objects.filter(project_id=project_id))
    return replay(str(project_id), _replayed_events(rows.iterator()))


def check(project_id: str) -> list[Drift]:
    """How the stored projection of one project differs from its replay."""
    [(_, drifts)] = diffs([replay_one(project_id)])
    return drifts


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
