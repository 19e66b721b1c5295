"""The project decider: `decide(state, command) -> events` and `evolve(state, event) -> state`.

Pure Python, no database, no settings: everything a project is and may do is here. A project's
stream holds the project and all of its jobs. Each event type is a frozen dataclass below with
its fields; `to_data` and `event_from_data` convert it to and from the JSON stored in the log
(ids and times as strings), which is the catalogue in `docs/events.md`, generated from these
classes by `python -m projects.catalogue`. The queue rules (open, head, leasable) are in
`projects.queue`.

`decide` only ever needs the project, its open (queued or leased) jobs, and the job a command
names, so callers may load just those; `evolve` keeps whatever jobs it is given.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, ClassVar, TypeVar

from core.exceptions import Conflict, Invalid, LeaseLost, NotFound
from projects import queue
from projects.queue import JobState


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
    INSPECT = "inspect"


class PullStrategy(StrEnum):
    """How a pull treats local work: see `agent.workspace`."""

    FF_ONLY = "ff-only"
    REBASE = "rebase"
    RESET = "reset"


# The error code of a git command that ran out of time; such a failure is retried once at most.
TIMEOUT = "timeout"


# --- Events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainEvent:
    """One fact about a project. Each subclass names its fields and says, in its docstring,
    when it is written; `type` is its stored name, the class's name."""

    type: ClassVar[str]
    # Whether a node may have a job to lease after this event (a new job, a lease given back,
    # a finished job that unblocks the next one of its project or frees its owner's slot).
    frees_work: ClassVar[bool] = True
    _datetimes: ClassVar[frozenset[str]] = frozenset()
    # Fields added after events of the type were stored: left out of the JSON while they hold
    # their default, so that an event that uses none of them is stored exactly as before.
    added_later: ClassVar[frozenset[str]] = frozenset()

    def to_data(self) -> dict[str, Any]:
        """The event as the JSON stored in `Event.data`."""
        data = {}
        for name, value in self.__dict__.items():
            if name in self.added_later and value == getattr(type(self), name):
                continue
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, Enum):
                value = value.value
            data[name] = value
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DomainEvent:
        """The event stored as `data`. Built without `__init__`, as `_changed` copies states:
        a rebuild reads a million events, and the stored JSON holds exactly the fields."""
        event = object.__new__(cls)
        values = event.__dict__
        values.update(data)
        for name in cls._datetimes:
            values[name] = datetime.fromisoformat(values[name])
        return event


EVENT_TYPES: dict[str, type[DomainEvent]] = {}
_E = TypeVar("_E", bound=type[DomainEvent])


def _event(cls: _E) -> _E:
    cls.type = cls.__name__
    cls._datetimes = frozenset(f.name for f in fields(cls) if f.type == "datetime")
    EVENT_TYPES[cls.type] = cls
    return cls


@_event
@dataclass(frozen=True)
class ProjectCreated(DomainEvent):
    """A person asked for a clone of a new project; always followed by its `JobQueued` of kind
    `clone`. `target_path` is `{owner_id}_{name}`, the checkout's place under the node's
    projects root. `branch` is the ref asked for: a branch, a tag or a full commit id. `lfs`,
    `submodules` (`none` or `recursive`), `filter` (partial clone) and `sparse` (cone-mode
    folders) were added later, and so was `credential_id` (the owner's credential its jobs use);
    events stored before them read as their defaults."""

    frees_work: ClassVar[bool] = False
    added_later: ClassVar[frozenset[str]] = frozenset(
        {"lfs", "submodules", "filter", "sparse", "credential_id"}
    )

    owner_id: int
    name: str
    node_id: str
    git_url: str
    branch: str
    depth: int | None
    target_path: str
    lfs: bool = False
    submodules: str = "none"
    filter: str = ""
    sparse: tuple[str, ...] = ()
    # The id of the owner's credential the project's jobs use; none when absent.
    credential_id: str | None = None


@_event
@dataclass(frozen=True)
class JobQueued(DomainEvent):
    """A clone, pull, delete or inspect was asked for, or a failed or cancelled job was retried.
    A delete makes the project `deleting` and cancels the jobs still queued before it.
    `options` is there only when the job was asked for with some: a pull's `strategy` other
    than `ff-only`, a delete's `force`."""

    job_id: str
    kind: JobKind
    max_attempts: int
    options: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        data = super().to_data()
        if not self.options:
            data.pop("options", None)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DomainEvent:
        event = super().from_data(data)
        event.__dict__["kind"] = JobKind(data["kind"])
        event.__dict__.setdefault("options", None)
        return event


@_event
@dataclass(frozen=True)
class JobLeased(DomainEvent):
    """The node's agent took the job (a lease call). `attempt` counts leases of the job, whatever
    became of them; `request_id` lets a retried lease call get the same lease back;
    `instance_id` names the agent process that holds it."""

    frees_work: ClassVar[bool] = False

    job_id: str
    attempt: int
    lease_token: str
    request_id: str
    instance_id: str
    expires_at: datetime


@_event
@dataclass(frozen=True)
class JobLeaseRenewed(DomainEvent):
    """The agent renewed its lease until `expires_at`; `progress` (`phase, percent, objects,
    bytes`) is there only when it reported some."""

    frees_work: ClassVar[bool] = False

    job_id: str
    expires_at: datetime
    progress: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"job_id": self.job_id, "expires_at": self.expires_at.isoformat()}
        if self.progress:
            data["progress"] = self.progress
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DomainEvent:
        event = super().from_data(data)
        event.__dict__.setdefault("progress", None)
        return event


@_event
@dataclass(frozen=True)
class JobLeaseExpired(DomainEvent):
    """The lease ran out unrenewed: the job is queued again and the attempt counts as failed
    (a `JobFailed` follows when that makes `LEASE_MAX_ATTEMPTS`)."""

    job_id: str
    attempt: int


@_event
@dataclass(frozen=True)
class JobLeaseReleased(DomainEvent):
    """The agent gave the job back (`agent_shutdown` while draining), or a restarted agent
    replaced the instance that held it (`agent_restarted`): the job is queued again at once.
    Not a failed attempt; a `JobFailed` follows on the `LEASE_MAX_RELEASES`-th release."""

    job_id: str
    attempt: int
    reason: str


@_event
@dataclass(frozen=True)
class JobAttemptFailed(DomainEvent):
    """A retryable failure (`error{code, message, retryable}`) with attempts left: the job is
    queued again, to be leased after `retry_at`. A second `timeout` is not retried."""

    job_id: str
    attempt: int
    error: dict[str, Any]
    retry_at: datetime


@_event
@dataclass(frozen=True)
class JobSucceeded(DomainEvent):
    """The agent reported success (`result{commit, branch, local_path, duration_ms,
    size_bytes}`, and after a clone, pull or inspect `workspace{dirty, ahead, behind,
    size_bytes, ...}`; after a `reset` pull that saved local work, `backup_ref`): a clone makes
    the project `ready`, a pull moves its commit, an inspect refreshes its `workspace`, a delete
    makes it `deleted`."""

    job_id: str
    attempt: int
    result: dict[str, Any]


@_event
@dataclass(frozen=True)
class JobFailed(DomainEvent):
    """The job failed for good (`error{code, message, retryable}`): a failure that is not
    retryable, a second `timeout`, or a bound reached (`lease_expired`: `LEASE_MAX_ATTEMPTS`;
    `lease_released`: `LEASE_MAX_RELEASES`), or it waited too long for an offline or disabled
    node (`node_unavailable`). A failed clone makes the project `failed`; a failed pull or
    inspect keeps it `ready` with `last_error`, and so does a delete refused for
    `local_changes`."""

    job_id: str
    attempt: int
    error: dict[str, Any]


@_event
@dataclass(frozen=True)
class JobCancelled(DomainEvent):
    """A person cancelled the job (`cancelled_by_user`) or a delete superseded it
    (`superseded_by_delete`)."""

    job_id: str
    reason: str


@_event
@dataclass(frozen=True)
class ProjectCredentialChanged(DomainEvent):
    """The owner gave the project another credential (`credential_id`), or none (None). Only the
    id is recorded, never the secret; the next jobs use it."""

    frees_work: ClassVar[bool] = False

    credential_id: str | None


def event_from_data(type_: str, data: dict[str, Any]) -> DomainEvent:
    """The typed event stored under `type_` with `data`."""
    return EVENT_TYPES[type_].from_data(data)


@dataclass(frozen=True)
class Recorded:
    """An event as stored: its place in the stream and when it was recorded."""

    event: DomainEvent
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
    timeouts: int = 0
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
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return queue.is_open(self)

    @property
    def releases(self) -> int:
        """Leases given back so far, while the job is open: each of its leases but a running
        one ended expired or failed (both counted in `failures`) or given back."""
        return self.attempt - self.failures - (1 if self.state == JobState.LEASED else 0)


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
    credential_id: str | None = None
    status: ProjectStatus = ProjectStatus.PENDING
    commit: str = ""
    checkout_branch: str = ""
    ref_kind: str = ""
    lfs: bool = False
    submodules: str = "none"
    filter: str = ""
    sparse: list[str] = field(default_factory=list)
    submodules_skipped: int = 0
    local_path: str = ""
    last_error: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # The checkout as the last clone, pull or inspect found it (`agent.workspace.inspect`),
    # with `inspected_at`; None before the first and after a delete.
    workspace: dict[str, Any] | None = None
    jobs: dict[str, Job] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.version > 0

    def open_jobs(self) -> list[Job]:
        return queue.open_jobs(self.jobs.values())

    def head_job(self) -> Job | None:
        """The job that runs next (or runs now): see `projects.queue.head`."""
        return queue.head(self.jobs.values())


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
    lfs: bool = False
    submodules: str = "none"
    filter: str = ""
    sparse: tuple[str, ...] = ()
    credential_id: str | None = None


@dataclass(frozen=True)
class ChangeCredential:
    credential_id: str | None


@dataclass(frozen=True)
class RequestPull:
    job_id: str
    max_attempts: int
    strategy: PullStrategy = PullStrategy.FF_ONLY
    ref: str = ""


@dataclass(frozen=True)
class RequestDelete:
    job_id: str
    max_attempts: int
    force: bool = False


@dataclass(frozen=True)
class RequestInspect:
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
    """Gives a lease back; the `max_releases`-th release of one job fails it for good."""

    job_id: str
    reason: str
    max_releases: int
    lease_token: str | None = None


@dataclass(frozen=True)
class ExpireQueuedJob:
    """Fails a job that waited too long for its node; the caller has checked the node."""

    job_id: str
    reason: str


Command = (
    CreateProject
    | ChangeCredential
    | RequestPull
    | RequestDelete
    | RequestInspect
    | CancelJob
    | RetryJob
    | LeaseJob
    | RenewLease
    | CompleteJob
    | ExpireLease
    | ReleaseLease
    | ExpireQueuedJob
)


# --- decide: one function per command -----------------------------------------------------------

_DECIDERS: dict[type, Callable[[Project, Any], list[DomainEvent]]] = {}
_C = TypeVar("_C")


def _decides(command_type: type[_C]):
    def register(
        decider: Callable[[Project, _C], list[DomainEvent]],
    ) -> Callable[[Project, _C], list[DomainEvent]]:
        _DECIDERS[command_type] = decider
        return decider

    return register


def decide(state: Project, command: Command) -> list[DomainEvent]:
    """The events that `command` causes on `state`, or a `DomainError` saying why not."""
    decider = _DECIDERS.get(type(command))
    if decider is None:
        raise TypeError(f"Unknown command {command!r}")
    return decider(state, command)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _job(state: Project, job_id: str) -> Job:
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFound(f"Job {job_id} is not a job of this project.", field="job_id")
    return job


def _require_live(state: Project) -> None:
    if not state.exists:
        raise NotFound("No such project.")
    if state.status == ProjectStatus.DELETED:
        raise Conflict("The project has been deleted.", code="project_deleted")


@_decides(CreateProject)
def _create(state: Project, command: CreateProject) -> list[DomainEvent]:
    if state.exists:
        raise Conflict("The project already exists.", code="project_exists")
    return [
        ProjectCreated(
            owner_id=command.owner_id,
            name=command.name,
            node_id=command.node_id,
            git_url=command.git_url,
            branch=command.branch,
            depth=command.depth,
            target_path=f"{command.owner_id}_{command.name}",
            lfs=command.lfs,
            submodules=command.submodules,
            filter=command.filter,
            sparse=tuple(command.sparse),
            credential_id=command.credential_id,
        ),
        JobQueued(command.job_id, JobKind.CLONE, command.max_attempts),
    ]


@_decides(ChangeCredential)
def _change_credential(state: Project, command: ChangeCredential) -> list[DomainEvent]:
    _require_live(state)
    if state.credential_id == command.credential_id:
        return []
    return [ProjectCredentialChanged(command.credential_id)]


@_decides(RequestPull)
def _pull(state: Project, command: RequestPull) -> list[DomainEvent]:
    _require_live(state)
    if state.status != ProjectStatus.READY:
        raise Conflict(
            f"Only a ready project can be pulled; this one is {state.status.value}.",
            code="not_ready",
        )
    waiting = [
        j for j in state.open_jobs() if j.kind == JobKind.PULL and j.state == JobState.QUEUED
    ]
    if waiting:
        raise Conflict(
            f"A pull is already queued (job {waiting[0].id}).", code="pull_already_queued"
        )
    options: dict[str, Any] = {}
    if command.strategy != PullStrategy.FF_ONLY:
        options["strategy"] = command.strategy.value
    if command.ref:
        # A pull that moves the checkout to another branch, tag or commit.
        options["ref"] = command.ref
    return [JobQueued(command.job_id, JobKind.PULL, command.max_attempts, options or None)]


@_decides(RequestDelete)
def _delete(state: Project, command: RequestDelete) -> list[DomainEvent]:
    _require_live(state)
    if state.status == ProjectStatus.DELETING:
        raise Conflict("The project is already being deleted.", code="already_deleting")
    superseded: list[DomainEvent] = [
        JobCancelled(job.id, "superseded_by_delete")
        for job in state.open_jobs()
        if job.state == JobState.QUEUED
    ]
    options = {"force": True} if command.force else None
    return [*superseded, JobQueued(command.job_id, JobKind.DELETE, command.max_attempts, options)]


@_decides(RequestInspect)
def _inspect(state: Project, command: RequestInspect) -> list[DomainEvent]:
    _require_live(state)
    if state.status != ProjectStatus.READY:
        raise Conflict(
            f"Only a ready project can be inspected; this one is {state.status.value}.",
            code="not_ready",
        )
    waiting = [
        j for j in state.open_jobs() if j.kind == JobKind.INSPECT and j.state == JobState.QUEUED
    ]
    if waiting:
        raise Conflict(
            f"An inspect is already queued (job {waiting[0].id}).", code="inspect_already_queued"
        )
    return [JobQueued(command.job_id, JobKind.INSPECT, command.max_attempts)]


@_decides(CancelJob)
def _cancel(state: Project, command: CancelJob) -> list[DomainEvent]:
    _require_live(state)
    job = _job(state, command.job_id)
    if not job.is_open:
        raise Conflict(
            f"Job {job.id} is {job.state.value}; only queued or leased jobs can be cancelled.",
            code="job_finished",
        )
    return [JobCancelled(job.id, command.reason)]


@_decides(RetryJob)
def _retry(state: Project, command: RetryJob) -> list[DomainEvent]:
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
        JobKind.INSPECT: state.status == ProjectStatus.READY,
    }
    if not allowed[job.kind]:
        raise Conflict(
            f"A {job.kind.value} cannot be retried while the project is {state.status.value}.",
            code="not_retryable",
        )
    return [JobQueued(command.job_id, job.kind, command.max_attempts, job.options or None)]


@_decides(LeaseJob)
def _lease(state: Project, command: LeaseJob) -> list[DomainEvent]:
    job = _job(state, command.job_id)
    if not queue.is_next(job, state.jobs.values(), command.now):
        if job.state == JobState.QUEUED and state.head_job() is job:
            raise Conflict(f"Job {job.id} waits until {_iso(job.available_at)}.", code="backoff")
        raise Conflict(f"Job {job.id} is not next in its project's queue.", code="not_next")
    return [
        JobLeased(
            job_id=job.id,
            attempt=job.attempt + 1,
            lease_token=command.lease_token,
            request_id=command.request_id,
            instance_id=command.instance_id,
            expires_at=command.now + timedelta(seconds=command.lease_seconds),
        )
    ]


@_decides(RenewLease)
def _renew(state: Project, command: RenewLease) -> list[DomainEvent]:
    job = _held_lease(state, command.job_id, command.lease_token)
    return [
        JobLeaseRenewed(
            job_id=job.id,
            expires_at=command.now + timedelta(seconds=command.lease_seconds),
            progress=command.progress or None,
        )
    ]


@_decides(ExpireLease)
def _expire(state: Project, command: ExpireLease) -> list[DomainEvent]:
    job = _job(state, command.job_id)
    if job.state != JobState.LEASED or job.lease_expires_at is None:
        raise Conflict(f"Job {job.id} holds no lease.", code="not_leased")
    if job.lease_expires_at > command.now:
        raise Conflict(f"The lease of job {job.id} has not expired.", code="not_expired")
    events: list[DomainEvent] = [JobLeaseExpired(job.id, job.attempt)]
    failures = job.failures + 1
    if failures >= job.max_attempts:
        events.append(
            _final_failure(
                job,
                "lease_expired",
                f"The lease expired: the agent stopped reporting. That is {failures} failed "
                f"attempt(s), the bound of {job.max_attempts} (LEASE_MAX_ATTEMPTS); leases "
                f"given back by the agent ({job.releases}) do not count.",
            )
        )
    return events


@_decides(ReleaseLease)
def _release(state: Project, command: ReleaseLease) -> list[DomainEvent]:
    job = _job(state, command.job_id)
    if job.state != JobState.LEASED or (
        command.lease_token is not None and not _same_token(job.lease_token, command.lease_token)
    ):
        raise LeaseLost(f"Job {job.id} is not leased with this token.", field="lease_token")
    events: list[DomainEvent] = [JobLeaseReleased(job.id, job.attempt, command.reason)]
    releases = job.releases + 1
    if releases >= command.max_releases:
        events.append(
            _final_failure(
                job,
                "lease_released",
                f"The agent gave the lease back {releases} time(s) (last: {command.reason}), "
                f"the bound of {command.max_releases} (LEASE_MAX_RELEASES): the job may be "
                f"stopping its agent. Failed attempts so far: {job.failures}.",
            )
        )
    return events


@_decides(ExpireQueuedJob)
def _expire_queued(state: Project, command: ExpireQueuedJob) -> list[DomainEvent]:
    job = _job(state, command.job_id)
    if job.state != JobState.QUEUED:
        raise Conflict(f"Job {job.id} is not queued.", code="not_queued")
    return [_final_failure(job, "node_unavailable", command.reason)]


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


def _final_failure(job: Job, code: str, message: str, retryable: bool = False) -> JobFailed:
    return JobFailed(
        job.id, job.attempt, {"code": code, "message": message, "retryable": retryable}
    )


@_decides(CompleteJob)
def _complete(state: Project, command: CompleteJob) -> list[DomainEvent]:
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
        return [JobSucceeded(job.id, job.attempt, command.result)]
    error = command.error or {}
    # One person's clones of a server that never answers would hold a node's slots for
    # max_attempts times the git timeout; a timeout is worth one more try, not more.
    retries_left = job.failures + 1 < job.max_attempts and not (
        error.get("code") == TIMEOUT and job.timeouts >= 1
    )
    if error.get("retryable") and retries_left:
        retry_at = command.now + timedelta(seconds=command.retry_backoff_seconds * 2**job.failures)
        return [JobAttemptFailed(job.id, job.attempt, error, retry_at)]
    return [JobFailed(job.id, job.attempt, error)]


# --- evolve: one mutator per event type ---------------------------------------------------------


_Frozen = TypeVar("_Frozen", Project, Job)


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


_Mutator = Callable[[Project, Any, int, datetime], Project]
_MUTATORS: dict[type[DomainEvent], _Mutator] = {}


def _mutates(event_type: type[DomainEvent]) -> Callable[[_Mutator], _Mutator]:
    def register(mutator: _Mutator) -> _Mutator:
        _MUTATORS[event_type] = mutator
        return mutator

    return register


def evolve(state: Project, recorded: Recorded) -> Project:
    """The project after `recorded`; never fails, never looks anywhere but its arguments.

    Every object that changes is copied once, with all of its changes at once.
    """
    event = recorded.event
    return _MUTATORS[type(event)](state, event, recorded.version, recorded.recorded_at)


def fold(state: Project, events: Iterable[Recorded]) -> Project:
    for recorded in events:
        state = evolve(state, recorded)
    return state


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


def _timeouts(job: Job, error: dict[str, Any]) -> int:
    return job.timeouts + (error.get("code") == TIMEOUT)


def _stepped(state: Project, version: int, at: datetime, **changes: Any) -> Project:
    return _changed(state, version=version, updated_at=at, **changes)


@_mutates(ProjectCreated)
def _created(state: Project, event: ProjectCreated, version: int, at: datetime) -> Project:
    return _stepped(
        state,
        version,
        at,
        owner_id=event.owner_id,
        name=event.name,
        node_id=event.node_id,
        git_url=event.git_url,
        branch=event.branch,
        depth=event.depth,
        target_path=event.target_path,
        lfs=event.lfs,
        submodules=event.submodules,
        filter=event.filter,
        sparse=list(event.sparse),
        credential_id=event.credential_id,
        status=ProjectStatus.PENDING,
        created_at=at,
    )


@_mutates(ProjectCredentialChanged)
def _credential_changed(
    state: Project, event: ProjectCredentialChanged, version: int, at: datetime
) -> Project:
    return _stepped(state, version, at, credential_id=event.credential_id)


@_mutates(JobQueued)
def _queued(state: Project, event: JobQueued, version: int, at: datetime) -> Project:
    queued = Job(
        id=event.job_id,
        kind=event.kind,
        seq=version,
        state=JobState.QUEUED,
        max_attempts=event.max_attempts,
        queued_at=at,
        available_at=at,
        updated_at=at,
        options=event.options or {},
    )
    status = {
        JobKind.CLONE: ProjectStatus.PENDING,
        JobKind.PULL: state.status,
        JobKind.DELETE: ProjectStatus.DELETING,
        JobKind.INSPECT: state.status,
    }[event.kind]
    return _stepped(state, version, at, status=status, jobs=_with_job(state, queued))


def _job_mutator(
    event_type: type[DomainEvent],
) -> Callable[[Callable[[Job, Any, datetime], Job]], Callable[[Job, Any, datetime], Job]]:
    """Registers a mutator of the job an event names, for events that change only that job.
    A job that is not in `state` was not loaded: only decide()'s caller can know it is
    irrelevant, so the project just moves to the event's version."""

    def register(
        change: Callable[[Job, Any, datetime], Job],
    ) -> Callable[[Job, Any, datetime], Job]:
        def mutate(state: Project, event: Any, version: int, at: datetime) -> Project:
            job = state.jobs.get(event.job_id)
            if job is None:
                return _stepped(state, version, at)
            return _stepped(state, version, at, jobs=_with_job(state, change(job, event, at)))

        _MUTATORS[event_type] = mutate
        return change

    return register


@_job_mutator(JobLeased)
def _leased(job: Job, event: JobLeased, at: datetime) -> Job:
    return _changed(
        job,
        state=JobState.LEASED,
        attempt=event.attempt,
        lease_token=event.lease_token,
        lease_request_id=event.request_id,
        lease_instance_id=event.instance_id,
        leased_at=at,
        lease_expires_at=event.expires_at,
        progress={},
        updated_at=at,
    )


@_job_mutator(JobLeaseRenewed)
def _renewed(job: Job, event: JobLeaseRenewed, at: datetime) -> Job:
    return _changed(
        job,
        lease_expires_at=event.expires_at,
        progress=job.progress if event.progress is None else event.progress,
        updated_at=at,
    )


@_job_mutator(JobLeaseExpired)
def _lease_expired(job: Job, event: JobLeaseExpired, at: datetime) -> Job:
    return _unleased(
        job, state=JobState.QUEUED, failures=job.failures + 1, available_at=at, updated_at=at
    )


@_job_mutator(JobLeaseReleased)
def _lease_released(job: Job, event: JobLeaseReleased, at: datetime) -> Job:
    return _unleased(job, state=JobState.QUEUED, available_at=at, updated_at=at)


@_job_mutator(JobAttemptFailed)
def _attempt_failed(job: Job, event: JobAttemptFailed, at: datetime) -> Job:
    return _unleased(
        job,
        state=JobState.QUEUED,
        failures=job.failures + 1,
        timeouts=_timeouts(job, event.error),
        available_at=event.retry_at,
        error=event.error,
        updated_at=at,
    )


def _succeeded_job(job: Job, event: JobSucceeded, at: datetime) -> Job:
    return _unleased(
        job, state=JobState.SUCCEEDED, result=event.result, finished_at=at, updated_at=at
    )


@_mutates(JobSucceeded)
def _succeeded(state: Project, event: JobSucceeded, version: int, at: datetime) -> Project:
    before = state.jobs.get(event.job_id)
    if before is None:
        return _stepped(state, version, at)
    job = _succeeded_job(before, event, at)
    jobs = _with_job(state, job)
    if job.kind == JobKind.DELETE:
        return _stepped(
            state,
            version,
            at,
            jobs=jobs,
            last_error=None,
            status=ProjectStatus.DELETED,
            commit="",
            checkout_branch="",
            ref_kind="",
            submodules_skipped=0,
            local_path="",
            workspace=None,
        )
    workspace = event.result.get("workspace")
    return _stepped(
        state,
        version,
        at,
        jobs=jobs,
        last_error=None,
        status=_unless_deleting(jobs, ProjectStatus.READY),
        commit=event.result["commit"],
        checkout_branch=event.result["branch"],
        # A pull that moved the checkout makes its ref the project's; older results carry no
        # ref_kind and leave it as it was.
        branch=job.options.get("ref") or state.branch,
        ref_kind=event.result.get("ref_kind", state.ref_kind),
        submodules_skipped=event.result.get("submodules_skipped", state.submodules_skipped),
        local_path=event.result["local_path"],
        workspace=state.workspace if workspace is None else {**workspace, "inspected_at": _iso(at)},
    )


@_mutates(JobFailed)
def _failed(state: Project, event: JobFailed, version: int, at: datetime) -> Project:
    before = state.jobs.get(event.job_id)
    if before is None:
        return _stepped(state, version, at)
    job = _unleased(
        before,
        state=JobState.FAILED,
        timeouts=_timeouts(before, event.error),
        error=event.error,
        finished_at=at,
        updated_at=at,
    )
    jobs = _with_job(state, job)
    last_error = {**event.error, "job_id": job.id, "kind": job.kind.value, "at": _iso(at)}
    status = (
        state.status
        if job.kind in (JobKind.PULL, JobKind.INSPECT)
        else _checkout_status(state.commit, jobs)
    )
    return _stepped(state, version, at, jobs=jobs, last_error=last_error, status=status)


@_mutates(JobCancelled)
def _cancelled(state: Project, event: JobCancelled, version: int, at: datetime) -> Project:
    before = state.jobs.get(event.job_id)
    if before is None:
        return _stepped(state, version, at)
    job = _unleased(before, state=JobState.CANCELLED, finished_at=at, updated_at=at)
    jobs = _with_job(state, job)
    if not before.is_open or job.kind in (JobKind.PULL, JobKind.INSPECT):
        return _stepped(state, version, at, jobs=jobs)
    last_error = {
        "code": "cancelled",
        "message": f"The {job.kind.value} job was cancelled ({event.reason}).",
        "retryable": True,
        "job_id": job.id,
        "kind": job.kind.value,
        "at": _iso(at),
    }
    return _stepped(
        state,
        version,
        at,
        jobs=jobs,
        status=_checkout_status(state.commit, jobs),
        last_error=last_error,
    )
