"""What people may ask of projects: clone, pull, delete, inspect, cancel, retry.

Each function validates what people give it (git input through `gitpolicy`, raising `Invalid`
naming the field), checks what only the outside world knows (the node, name uniqueness), then
hands a command to the decider through `eventstore.execute`. Views, the admin and the
benchmarks call these and nothing lower, so every entry point gets the same checks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError

import gitpolicy
from core.exceptions import Conflict, Invalid, NotFound
from nodes.models import Node
from projects import domain, wakeups
from projects.eventstore import Appended, execute
from projects.models import Job, Project
from projects.project_credentials import usable_credential

MAX_CLONE_DEPTH = 1_000_000

_T = TypeVar("_T")


def url_policy() -> gitpolicy.UrlPolicy:
    """The git URL policy the settings ask for. The server only ever fetches over the network:
    `file` stays off whatever `GIT_ALLOWED_SCHEMES` says."""
    schemes = frozenset(scheme.lower() for scheme in settings.GIT_ALLOWED_SCHEMES)
    return gitpolicy.UrlPolicy(
        allowed_schemes=schemes & gitpolicy.NETWORK_SCHEMES,
        allow_private_hosts=settings.GIT_ALLOW_PRIVATE_HOSTS,
    )


def _valid(field: str, rule: Callable[[object], _T], value: object) -> _T:
    """`rule(value)`, with its ValueError turned into `Invalid` naming `field`."""
    try:
        return rule(value)
    except ValueError as exc:
        raise Invalid(str(exc), field=field) from None


def _valid_depth(depth: object) -> int | None:
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_CLONE_DEPTH:
        raise ValueError(f"A shallow clone takes a depth from 1 to {MAX_CLONE_DEPTH}.")
    return depth


def _job_id(job_id: object) -> str:
    """A job id in its canonical form; any other spelling names no job."""
    text = str(job_id) if isinstance(job_id, uuid.UUID) else job_id
    if not isinstance(text, str) or not _is_canonical_uuid(text):
        raise NotFound("No such job in this project.", field="job_id")
    return text


def _is_canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


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


def _chosen_ref(ref: str | None, branch: str | None) -> str:
    """`ref` names a branch, a tag or a commit; `branch`, its older name, only a branch."""
    if ref is not None and branch is not None and ref != branch:
        raise Invalid("Give ref or branch (its older name for a branch), not both.", field="ref")
    if ref is not None:
        return _valid("ref", gitpolicy.validate_ref, ref)
    if branch is None:
        raise Invalid("A branch, tag or full commit id is required.", field="ref")
    return _valid("branch", gitpolicy.validate_branch, branch)


def _valid_lfs(lfs: bool | None, node: Node) -> bool:
    """LFS defaults to on where the node has git-lfs; asked for on a node without it, 409."""
    if lfs is None:
        return bool(node.git_lfs_version)
    if not isinstance(lfs, bool):
        raise Invalid("lfs is true or false.", field="lfs")
    if lfs and not node.git_lfs_version:
        raise Conflict(
            f"Node {node.name} has no git-lfs (its agent reports none); install git-lfs there "
            "or ask for lfs: false.",
            field="lfs",
            code="lfs_unavailable",
        )
    return lfs


def request_clone(
    *,
    owner: AbstractBaseUser,
    name: str,
    git_url: str,
    node: Node,
    branch: str | None = None,
    ref: str | None = None,
    depth: int | None = None,
    lfs: bool | None = None,
    submodules: str = "none",
    filter: str = "",
    sparse: list[str] | None = None,
    credential: object | None = None,
    request_id: str | None = None,
) -> Project:
    """Creates a project and queues its clone on `node`, after checking every input against the
    git-input policy; raises `Invalid` naming the first field that fails. `credential` is the id
    of one of the owner's credentials, for the URL's host (`project_credentials`)."""
    name = _valid("name", gitpolicy.validate_project_name, name)
    git_url = _valid("git_url", lambda url: gitpolicy.validate_git_url(url, url_policy()), git_url)
    branch = _chosen_ref(ref, branch)
    depth = _valid("depth", _valid_depth, depth)
    submodules = _valid("submodules", gitpolicy.validate_submodules, submodules)
    filter = _valid("filter", gitpolicy.validate_filter, filter)
    sparse = _valid("sparse", gitpolicy.validate_sparse, sparse)
    credential_id = None
    if credential is not None:
        credential_id = str(
            usable_credential(owner=owner, credential_id=credential, git_url=git_url).pk
        )
    _require_node_accepts_work(node)
    lfs = _valid_lfs(lfs, node)
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
        lfs=lfs,
        submodules=submodules,
        filter=filter,
        sparse=tuple(sparse),
        credential_id=credential_id,
    )
    try:
        execute(project_id, command, meta=_meta(owner, request_id), after=_wake)
    except IntegrityError as exc:  # a concurrent twin won the (owner, name) constraint
        raise Conflict(
            f"You already have a project named {name!r}.", field="name", code="duplicate_name"
        ) from exc
    return Project.objects.get(pk=project_id)


def _valid_strategy(strategy: object) -> domain.PullStrategy:
    try:
        return domain.PullStrategy(strategy)
    except ValueError:
        choices = ", ".join(member.value for member in domain.PullStrategy)
        raise ValueError(f"One of {choices}.") from None


def request_pull(
    *,
    project: Project,
    actor: AbstractBaseUser,
    strategy: str = domain.PullStrategy.FF_ONLY,
    ref: str | None = None,
    request_id: str | None = None,
) -> Job:
    """Queues a pull that treats local work as `strategy` says (see the README), or with `ref`
    a move to that branch, tag or commit."""
    pull_strategy = _valid("strategy", _valid_strategy, strategy)
    ref = "" if ref is None else _valid("ref", gitpolicy.validate_ref, ref)
    _require_node_accepts_work(project.node)
    job_id = str(uuid.uuid4())
    command = domain.RequestPull(
        job_id=job_id, max_attempts=settings.LEASE_MAX_ATTEMPTS, strategy=pull_strategy, ref=ref
    )
    execute(project.pk, command, meta=_meta(actor, request_id), after=_wake)
    return Job.objects.get(pk=job_id)


def request_delete(
    *,
    project: Project,
    actor: AbstractBaseUser,
    force: bool = False,
    request_id: str | None = None,
) -> Job:
    """Queues the removal of the checkout. Queued jobs are cancelled; a running one finishes.
    Unless `force`, the agent refuses (`local_changes`) when the checkout holds local work."""
    if not isinstance(force, bool):
        raise Invalid("true or false.", field="force")
    job_id = str(uuid.uuid4())
    command = domain.RequestDelete(
        job_id=job_id, max_attempts=settings.LEASE_MAX_ATTEMPTS, force=force
    )
    execute(project.pk, command, meta=_meta(actor, request_id), after=_wake)
    return Job.objects.get(pk=job_id)


def request_inspect(
    *, project: Project, actor: AbstractBaseUser, request_id: str | None = None
) -> Job:
    """Queues a read-only look at the checkout, which refreshes the project's `workspace`."""
    _require_node_accepts_work(project.node)
    job_id = str(uuid.uuid4())
    command = domain.RequestInspect(job_id=job_id, max_attempts=settings.LEASE_MAX_ATTEMPTS)
    execute(project.pk, command, meta=_meta(actor, request_id), after=_wake)
    return Job.objects.get(pk=job_id)


def cancel_job(
    *, project: Project, job_id: str, actor: AbstractBaseUser, request_id: str | None = None
) -> Job:
    """Cancels a queued or running job; a running one is stopped by its agent's next renew."""
    job_id = _job_id(job_id)
    command = domain.CancelJob(job_id=job_id, reason="cancelled_by_user")
    execute(project.pk, command, meta=_meta(actor, request_id), job_ids=[job_id])
    return Job.objects.get(pk=job_id)


def retry_job(
    *, project: Project, job_id: str, actor: AbstractBaseUser, request_id: str | None = None
) -> Job:
    """Queues a new job like a failed or cancelled one."""
    job_id = _job_id(job_id)
    failed = Job.objects.filter(pk=job_id, project=project).first()
    if failed is None:
        raise NotFound("No such job in this project.", field="job_id")
    if failed.kind != domain.JobKind.DELETE:
        _require_node_accepts_work(project.node)
    new_job_id = str(uuid.uuid4())
    command = domain.RetryJob(
        failed_job_id=job_id, job_id=new_job_id, max_attempts=settings.LEASE_MAX_ATTEMPTS
    )
    execute(project.pk, command, meta=_meta(actor, request_id), job_ids=[job_id], after=_wake)
    return Job.objects.get(pk=new_job_id)


def latest_retryable_job(project: Project) -> Job | None:
    """The most recent failed or cancelled job, if nothing is queued or running after it."""
    last = project.jobs.order_by("-seq").first()
    if last is None or last.state not in (domain.JobState.FAILED, domain.JobState.CANCELLED):
        return None
    return last
