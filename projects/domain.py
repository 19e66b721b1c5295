"""The project decider: `decide(state, command) -> events` and `evolve(state, event) -> state`.

Pure Python, no Django: everything a project is and may do is here. A project's stream holds the
project and all of its jobs. Event data is JSON-native (ids and times are strings) so that what
is stored is exactly what `evolve` reads back; the event catalogue is `docs/events.md`.

`decide` only ever needs the project, its open (queued or leased) jobs, and the job a command
names, so callers may load just those; `evolve` keeps whatever jobs it is given.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from core.exceptions import Conflict, Invalid, LeaseLost, NotFound


class ProjectStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


class JobKind(StrEnum):
    CLONE = "clone"
    PULL = "pull"
    DELETE = "delete"


class JobState(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_JOB_STATES = frozenset({JobState.QUEUED, JobState.LEASED})


class EventType(StrEnum):
    PROJECT_CREATED = "ProjectCreated"
    JOB_QUEUED = "JobQueued"
    JOB_LEASED = "JobLeased"
    JOB_LEASE_RENEWED = "JobLeaseRenewed"
    JOB_LEASE_EXPIRED = "JobLeaseExpired"
    JOB_LEASE_RELEASED = "JobLeaseReleased"
    JOB_ATTEMPT_FAILED = "JobAttemptFailed"
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    JOB_CANCELLED = "JobCancelled"


# --- Events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    """An event `decide` wants appended."""

    type: EventType
    data: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """An event as stored: its place in the stream and when it was recorded."""

    type: str
    data: dict[str, Any]
    version: int
    recorded_at: datetime


# --- State ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    seq: int
    state: JobState
    max_attempts: int
    queued_at: datetime
    available_at: datetime
    attempt: int = 0
    failures: int = 0
    lease_token: str = ""
    lease_request_id: str = ""
    lease_instance_id: str = ""
    leased_at: datetime | None = None
    lease_expires_at: datetime | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_JOB_STATES


@dataclass(frozen=True)
class Project:
    id: str
    version: int = 0
    owner_id: int = 0
    name: str = ""
    node_id: str = ""
    git_url: str = ""
    branch: str = ""
    depth: int | None = None
    target_path: str = ""
    status: ProjectStatus = ProjectStatus.PENDING
    commit: str = ""
    checkout_branch: str = ""
    local_path: str = ""
    last_error: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    jobs: dict[str, Job] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.version > 0

    def open_jobs(self) -> list[Job]:
        return sorted((job for job in self.jobs.values() if job.is_open), key=lambda j: j.seq)

    def head_job(self) -> Job | None:
        """The job that runs next (or runs now): the oldest open job."""
        open_jobs = self.open_jobs()
        return open_jobs[0] if open_jobs else None


def initial_state(project_id: str) -> Project:
    return Project(id=project_id)


# --- Commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateProject:
    owner_id: int
    name: str
    node_id: str
    git_url: str
    branch: str
    depth: int | None
    job_id: str
    max_attempts: int


@dataclass(frozen=True)
class RequestPull:
    job_id: str
    max_attempts: int


@dataclass(frozen=True)
class RequestDelete:
    job_id: str
    max_attempts: int


@dataclass(frozen=True)
class CancelJob:
    job_id: str
    reason: str


@dataclass(frozen=True)
class RetryJob:
    """Queues a new job of the same kind as a failed or cancelled one."""

    failed_job_id: str
    job_id: str
    max_attempts: int


@dataclass(frozen=True)
class LeaseJob:
    job_id: str
    lease_token: str
    request_id: str
    instance_id: str
    now: datetime
    lease_seconds: int


@dataclass(frozen=True)
class RenewLease:
    job_id: str
    lease_token: str
    now: datetime
    lease_seconds: int
    progress: dict[str, Any] | None = None


@dataclass(frozen=True)
class CompleteJob:
    job_id: str
    lease_token: str
    now: datetime
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retry_backoff_seconds: int = 30


@dataclass(frozen=True)
class ExpireLease:
    job_id: str
    now: datetime


@dataclass(frozen=True)
class ReleaseLease:
    job_id: str
    reason: str
    lease_token: str | None = None


@dataclass(frozen=True)
class ExpireQueuedJob:
    """Fails a job that waited too long for its node; the caller has checked the node."""

    job_id: str
    reason: str


Command = (
    CreateProject
    | RequestPull
    | RequestDelete
    | CancelJob
    | RetryJob
    | LeaseJob
    | RenewLease
    | CompleteJob
    | ExpireLease
    | ReleaseLease
    | ExpireQueuedJob
)


# --- decide -----------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _job(state: Project, job_id: str) -> Job:
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFound(f"Job {job_id} is not a job of this project.", field="job_id")
    return job


def _queue(kind: JobKind, job_id: str, max_attempts: int) -> NewEvent:
    return NewEvent(
        EventType.JOB_QUEUED, {"job_id": job_id, "kind": kind.value, "max_attempts": max_attempts}
    )


def _require_live(state: Project) -> None:
    if not state.exists:
        raise NotFound("No such project.")
    if state.status == ProjectStatus.DELETED:
        raise Conflict("The project has been deleted.", code="project_deleted")


def decide(state: Project, command: Command) -> list[NewEvent]:
    """The events that `command` causes on `state`, or a `DomainError` saying why not."""
    match command:
        case CreateProject():
            if state.exists:
                raise Conflict("The project already exists.", code="project_exists")
            return [
                NewEvent(
                    EventType.PROJECT_CREATED,
                    {
                        "owner_id": command.owner_id,
                        "name": command.name,
                        "node_id": command.node_id,
                        "git_url": command.git_url,
                        "branch": command.branch,
                        "depth": command.depth,
                        "target_path": f"{command.owner_id}_{command.name}",
                    },
                ),
                _queue(JobKind.CLONE, command.job_id, command.max_attempts),
            ]

        case RequestPull():
            _require_live(state)
            if state.status != ProjectStatus.READY:
                raise Conflict(
                    f"Only a ready project can be pulled; this one is {state.status.value}.",
                    code="not_ready",
                )
            waiting = [
                j
                for j in state.open_jobs()
                if j.kind == JobKind.PULL and j.state == JobState.QUEUED
            ]
            if waiting:
                raise Conflict(
                    f"A pull is already queued (job {waiting[0].id}).", code="pull_already_queued"
                )
            return [_queue(JobKind.PULL, command.job_id, command.max_attempts)]

        case RequestDelete():
            _require_live(state)
            if state.status == ProjectStatus.DELETING:
                raise Conflict("The project is already being deleted.", code="already_deleting")
            superseded = [
                NewEvent(
                    EventType.JOB_CANCELLED, {"job_id": job.id, "reason": "superseded_by_delete"}
                )
                for job in state.open_jobs()
                if job.state == JobState.QUEUED
            ]
            return [*superseded, _queue(JobKind.DELETE, command.job_id, command.max_attempts)]

        case CancelJob():
            _require_live(state)
            job = _job(state, command.job_id)
            if not job.is_open:
                raise Conflict(
                    f"Job {job.id} is {job.state.value}; only queued or leased jobs can be cancelled.",
                    code="job_finished",
                )
            return [NewEvent(EventType.JOB_CANCELLED, {"job_id": job.id, "reason": command.reason})]

        case RetryJob():
            _require_live(state)
            job = _job(state, command.failed_job_id)
            if job.state not in (JobState.FAILED, JobState.CANCELLED):
                raise Conflict(
                    f"Job {job.id} is {job.state.value}; only failed or cancelled jobs are retried.",
                    code="not_retryable",
                )
            if state.open_jobs():
                raise Conflict("The project has a job queued or running.", code="job_open")
            allowed = {
                JobKind.CLONE: state.status == ProjectStatus.FAILED and not state.commit,
                JobKind.PULL: state.status == ProjectStatus.READY,
                JobKind.DELETE: True,
            }
            if not allowed[job.kind]:
                raise Conflict(
                    f"A {job.kind.value} cannot be retried while the project is "
                    f"{state.status.value}.",
                    code="not_retryable",
                )
            return [_queue(job.kind, command.job_id, command.max_attempts)]

        case LeaseJob():
            job = _job(state, command.job_id)
            head = state.head_job()
            if job.state != JobState.QUEUED or head is None or head.id != job.id:
                raise Conflict(f"Job {job.id} is not next in its project's queue.", code="not_next")
            if job.available_at > command.now:
                raise Conflict(
                    f"Job {job.id} waits until {_iso(job.available_at)}.", code="backoff"
                )
            return [
                NewEvent(
                    EventType.JOB_LEASED,
                    {
                        "job_id": job.id,
                        "attempt": job.attempt + 1,
                        "lease_token": command.lease_token,
                        "request_id": command.request_id,
                        "instance_id": command.instance_id,
                        "expires_at": _iso(command.now + timedelta(seconds=command.lease_seconds)),
                    },
                )
            ]

        case RenewLease():
            job = _held_lease(state, command.job_id, command.lease_token)
            data: dict[str, Any] = {
                "job_id": job.id,
                "expires_at": _iso(command.now + timedelta(seconds=command.lease_seconds)),
            }
            if command.progress:
                data["progress"] = command.progress
            return [NewEvent(EventType.JOB_LEASE_RENEWED, data)]

        case CompleteJob():
            return _complete(state, command)

        case ExpireLease():
            job = _job(state, command.job_id)
            if job.state != JobState.LEASED or job.lease_expires_at is None:
                raise Conflict(f"Job {job.id} holds no lease.", code="not_leased")
            if job.lease_expires_at > command.now:
                raise Conflict(f"The lease of job {job.id} has not expired.", code="not_expired")
            events = [
                NewEvent(EventType.JOB_LEASE_EXPIRED, {"job_id": job.id, "attempt": job.attempt})
            ]
            if job.failures + 1 >= job.max_attempts:
                events.append(
                    _final_failure(
                        job,
                        "lease_expired",
                        f"The lease expired {job.failures + 1} time(s); the agent stopped "
                        f"reporting. Giving up after {job.max_attempts} attempts.",
                    )
                )
            return events

        case ReleaseLease():
            job = _job(state, command.job_id)
            if job.state != JobState.LEASED or (
                command.lease_token is not None
                and not _same_token(job.lease_token, command.lease_token)
            ):
                raise LeaseLost(f"Job {job.id} is not leased with this token.", field="lease_token")
            return [
                NewEvent(
                    EventType.JOB_LEASE_RELEASED,
                    {"job_id": job.id, "attempt": job.attempt, "reason": command.reason},
                )
            ]

        case ExpireQueuedJob():
            job = _job(state, command.job_id)
            if job.state != JobState.QUEUED:
                raise Conflict(f"Job {job.id} is not queued.", code="not_queued")
            return [_final_failure(job, "node_unavailable", command.reason)]

    raise TypeError(f"Unknown command {command!r}")


def _same_token(held: str, given: str) -> bool:
    """Compares lease tokens in constant time."""
    return hmac.compare_digest(held.encode(), given.encode())


def _held_lease(state: Project, job_id: str, lease_token: str) -> Job:
    job = _job(state, job_id)
    if job.state != JobState.LEASED or not _same_token(job.lease_token, lease_token):
        raise LeaseLost(
            f"The lease on job {job_id} is no longer yours (job is {job.state.value}).",
            field="lease_token",
        )
    return job


def _final_failure(job: Job, code: str, message: str, retryable: bool = False) -> NewEvent:
    return NewEvent(
        EventType.JOB_FAILED,
        {
            "job_id": job.id,
            "attempt": job.attempt,
            "error": {"code": code, "message": message, "retryable": retryable},
        },
    )


def _complete(state: Project, command: CompleteJob) -> list[NewEvent]:
    job = _job(state, command.job_id)
    if (command.result is None) == (command.error is None):
        raise Invalid("Give exactly one of result and error.", field="outcome")
    succeeded = command.result is not None
    if _same_token(job.lease_token, command.lease_token) and not job.is_open:
        same = (job.state == JobState.SUCCEEDED and succeeded and job.result == command.result) or (
            job.state == JobState.FAILED and not succeeded and job.error == command.error
        )
        if same:
            return []  # the same report again: already recorded
        raise LeaseLost(
            f"Job {job.id} was already reported {job.state.value}.", field="lease_token"
        )
    job = _held_lease(state, command.job_id, command.lease_token)
    if command.result is not None:
        return [
            NewEvent(
                EventType.JOB_SUCCEEDED,
                {"job_id": job.id, "attempt": job.attempt, "result": command.result},
            )
        ]
    error = command.error or {}
    if error.get("retryable") and job.failures + 1 < job.max_attempts:
        retry_at = command.now + timedelta(seconds=command.retry_backoff_seconds * 2**job.failures)
        return [
            NewEvent(
                EventType.JOB_ATTEMPT_FAILED,
                {
                    "job_id": job.id,
                    "attempt": job.attempt,
                    "error": error,
                    "retry_at": _iso(retry_at),
                },
            )
        ]
    return [
        NewEvent(EventType.JOB_FAILED, {"job_id": job.id, "attempt": job.attempt, "error": error})
    ]


# --- evolve -----------------------------------------------------------------------------------


_Frozen = TypeVar("_Frozen", Project, Job)


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _changed(obj: _Frozen, **changes: Any) -> _Frozen:
    """`dataclasses.replace` at a fifth of its cost: a rebuild folds a million events.

    Like `copy.copy`, it makes a new instance from the old one's fields, and it sets `changes`
    before anyone can see the copy, which is thus as frozen as one `replace` makes. Unlike
    `replace` it does not run `__init__`, so nothing checks the names in `changes`: its callers,
    all in this module, spell them out, and a property test holds it to `replace`.
    """
    copy = object.__new__(type(obj))
    fields = copy.__dict__
    fields.update(obj.__dict__)
    fields.update(changes)
    return copy


def _with_job(state: Project, job: Job) -> dict[str, Job]:
    return {**state.jobs, job.id: job}


def _unleased(job: Job, **changes: Any) -> Job:
    """The job without a live lease. The token stays, so a repeated report can be recognised."""
    return _changed(job, lease_expires_at=None, progress={}, **changes)


def _checkout_status(commit: str, jobs: dict[str, Job]) -> ProjectStatus:
    """What the project is when a job that would have changed its checkout did not."""
    return _unless_deleting(jobs, ProjectStatus.READY if commit else ProjectStatus.FAILED)


def _unless_deleting(jobs: dict[str, Job], status: ProjectStatus) -> ProjectStatus:
    """A queued or running delete outranks what an earlier job's outcome would say."""
    deleting = any(job.kind == JobKind.DELETE and job.is_open for job in jobs.values())
    return ProjectStatus.DELETING if deleting else status


def _job_after(job: Job, event: Event) -> Job | None:
    """`job` after an event about it, or None when the event type does not change jobs."""
    data, at = event.data, event.recorded_at
    match event.type:
        case EventType.JOB_LEASED:
            return _changed(
                job,
                state=JobState.LEASED,
                attempt=data["attempt"],
                lease_token=data["lease_token"],
                lease_request_id=data["request_id"],
                lease_instance_id=data["instance_id"],
                leased_at=at,
                lease_expires_at=_when(data["expires_at"]),
                progress={},
                updated_at=at,
            )
        case EventType.JOB_LEASE_RENEWED:
            return _changed(
                job,
                lease_expires_at=_when(data["expires_at"]),
                progress=data.get("progress", job.progress),
                updated_at=at,
            )
        case EventType.JOB_LEASE_EXPIRED:
            return _unleased(
                job,
                state=JobState.QUEUED,
                failures=job.failures + 1,
                available_at=at,
                updated_at=at,
            )
        case EventType.JOB_LEASE_RELEASED:
            return _unleased(job, state=JobState.QUEUED, available_at=at, updated_at=at)
        case EventType.JOB_ATTEMPT_FAILED:
            return _unleased(
                job,
                state=JobState.QUEUED,
                failures=job.failures + 1,
                available_at=_when(data["retry_at"]),
                error=data["error"],
                updated_at=at,
            )
        case EventType.JOB_SUCCEEDED:
            return _unleased(
                job,
                state=JobState.SUCCEEDED,
                result=data["result"],
                finished_at=at,
                updated_at=at,
            )
        case EventType.JOB_FAILED:
            return _unleased(
                job, state=JobState.FAILED, error=data["error"], finished_at=at, updated_at=at
            )
        case EventType.JOB_CANCELLED:
            return _unleased(job, state=JobState.CANCELLED, finished_at=at, updated_at=at)
    return None


def evolve(state: Project, event: Event) -> Project:
    """The project after `event`; never fails, never looks anywhere but its arguments.

    Every object that changes is copied once, with all of its changes at once.
    """
    data, at, version = event.data, event.recorded_at, event.version

    if event.type == EventType.PROJECT_CREATED:
        return _changed(
            state,
            version=version,
            updated_at=at,
            owner_id=data["owner_id"],
            name=data["name"],
            node_id=data["node_id"],
            git_url=data["git_url"],
            branch=data["branch"],
            depth=data["depth"],
            target_path=data["target_path"],
            status=ProjectStatus.PENDING,
            created_at=at,
        )

    if event.type == EventType.JOB_QUEUED:
        kind = JobKind(data["kind"])
        queued = Job(
            id=data["job_id"],
            kind=kind,
            seq=version,
            state=JobState.QUEUED,
            max_attempts=data["max_attempts"],
            queued_at=at,
            available_at=at,
            updated_at=at,
        )
        status = {
            JobKind.CLONE: ProjectStatus.PENDING,
            JobKind.PULL: state.status,
            JobKind.DELETE: ProjectStatus.DELETING,
        }[kind]
        return _changed(
            state, version=version, updated_at=at, status=status, jobs=_with_job(state, queued)
        )

    before = state.jobs.get(data.get("job_id", ""))
    # A job that is not in `state` was not loaded: only decide()'s caller can know it is
    # irrelevant.
    job = None if before is None else _job_after(before, event)
    if before is None or job is None:
        return _changed(state, version=version, updated_at=at)
    jobs = _with_job(state, job)

    if event.type == EventType.JOB_SUCCEEDED:
        if job.kind == JobKind.DELETE:
            return _changed(
                state,
                version=version,
                updated_at=at,
                jobs=jobs,
                last_error=None,
                status=ProjectStatus.DELETED,
                commit="",
                checkout_branch="",
                local_path="",
            )
        result = data["result"]
        return _changed(
            state,
            version=version,
            updated_at=at,
            jobs=jobs,
            last_error=None,
            status=_unless_deleting(jobs, ProjectStatus.READY),
            commit=result["commit"],
            checkout_branch=result["branch"],
            local_path=result["local_path"],
        )

    if event.type == EventType.JOB_FAILED:
        last_error = {**data["error"], "job_id": job.id, "kind": job.kind.value, "at": _iso(at)}
        status = state.status if job.kind == JobKind.PULL else _checkout_status(state.commit, jobs)
        return _changed(
            state, version=version, updated_at=at, jobs=jobs, last_error=last_error, status=status
        )

    if event.type == EventType.JOB_CANCELLED and before.is_open and job.kind != JobKind.PULL:
        last_error = {
            "code": "cancelled",
            "message": f"The {job.kind.value} job was cancelled ({data['reason']}).",
            "retryable": True,
            "job_id": job.id,
            "kind": job.kind.value,
            "at": _iso(at),
        }
        return _changed(
            state,
            version=version,
            updated_at=at,
            jobs=jobs,
            status=_checkout_status(state.commit, jobs),
            last_error=last_error,
        )

    return _changed(state, version=version, updated_at=at, jobs=jobs)


def fold(state: Project, events: Iterable[Event]) -> Project:
    for event in events:
        state = evolve(state, event)
    return state
