"""The three jobs: clone, pull and delete a project folder directly under the projects root."""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from agent import checkout, workspace
from agent.config import AgentConfig
from agent.credentials import Access, job_access
from agent.errors import JobFailure, failure_from_os_error
from agent.git import Git, JobControl
from agent.logs import log_event
from agent.paths import (
    UnsafePath,
    child_path,
    lstat_or_none,
    refuse_symlink,
    remove_tree,
    target_path,
)
from agent.validation import Job
from gitpolicy import UrlPolicy, check_resolved_host, parse_git_url

TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"

# Keys a checkout made by the agent may carry in .git/config. Anything else (core.fsmonitor,
# core.sshCommand, filter drivers, include.path, ...) could make git run code; pull refuses it.
_ALLOWED_LOCAL_CONFIG = re.compile(
    r"core\.(repositoryformatversion|filemode|bare|logallrefupdates|symlinks|ignorecase"
    r"|precomposeunicode|sharedrepository)"
    r"|remote\.origin\.(url|fetch)"
    r"|branch\..+\.(remote|merge)"
    r"|user\.(name|email)"
    r"|extensions\.objectformat"
    # What agent.checkout writes: cone-mode sparse checkout, partial clone, submodule URLs
    # (checked against the policy) and git-lfs's format marker. Never `submodule.*.update`.
    r"|core\.sparsecheckout|core\.sparsecheckoutcone"
    r"|remote\.origin\.(promisor|partialclonefilter)"
    r"|extensions\.partialclone"
    r"|submodule\.[A-Za-z0-9._/+@=,-]+\.(url|active)"
    r"|lfs\.repositoryformatversion"
)


@dataclass(frozen=True)
class JobResult:
    """What a successful job reports back."""

    commit: str
    branch: str
    local_path: str
    duration_ms: int
    size_bytes: int
    ref: str = ""
    ref_kind: str = ""
    submodules: int = 0
    submodules_skipped: int = 0
    lfs_files: int = 0
    # The checkout's state after the job (`agent.workspace.inspect`); None after a delete.
    workspace: dict[str, object] | None = None
    # The ref a `reset` pull saved the local work under, if there was any.
    backup_ref: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {name: value for name, value in asdict(self).items() if value is not None}


def perform(
    job: Job, config: AgentConfig, control: JobControl, access: Access | None = None
) -> JobResult:
    """Run one validated job with what `access` lets it authenticate with (nothing when None).

    Raises JobFailure, its message free of the credential's secret, or JobCancelled if
    `control` was cancelled.
    """
    access = access or Access()
    operation = _OPERATIONS[job.kind]
    started = time.monotonic()
    try:
        with job_access(
            access,
            git_url=job.git_url,
            storage_path=config.storage_path,
            node_helper=config.git_credential_helper,
        ) as setup:
            git = Git(config, control=control, deadline=started + job.timeout_seconds, setup=setup)
            try:
                return operation(job, config, git, started)
            except UnsafePath as exc:
                raise JobFailure("unsafe_path", str(exc)) from None
    except OSError as exc:
        failure = failure_from_os_error(exc, f"{job.kind} {job.target_path}")
        raise _explained(failure, job, access) from None
    except JobFailure as failure:
        raise _explained(failure, job, access) from None


def _explained(failure: JobFailure, job: Job, access: Access) -> JobFailure:
    """`failure` with the secret redacted and, for refused access, what was tried and where to
    fix it."""
    credential = access.credential
    message = failure.message
    if failure.code == "auth_failed":
        if credential is not None:
            message = (
                f"the credential {credential.name!r} was refused by {credential.host}: {message}"
            )
        elif access.use_node_credentials:
            message = f"the node's own credentials were refused: {message}"
        else:
            message = (
                "the repository asks for credentials and the project has none: give it one of "
                f"your credentials for its host: {message}"
            )
    elif failure.code == "host_key_unknown":
        message = (
            "the SSH server's host key is not known: add its line to the credential's "
            "known_hosts, or ask the operator to add it to GIT_SSH_KNOWN_HOSTS: " + message
        )
    elif failure.code == "host_key_mismatch":
        message = (
            "the SSH server's host key differs from the known one (the server changed its key, "
            "or something is in between): " + message
        )
    return JobFailure(failure.code, access.redact(message), retryable=failure.retryable)


def clone(job: Job, config: AgentConfig, git: Git, started: float) -> JobResult:
    """Clone into a temporary folder inside the projects root, then rename it into place."""
    root = config.projects_path
    target = target_path(root, job.target_path)
    existing = refuse_symlink(target)
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode) and _origin_url(git, target) == job.git_url:
            # The same job delivered twice, or a clone that already happened: nothing to do.
            return _checkout_result(git, target, started, job, checkout.current(git, target))
        raise JobFailure("target_exists", f"{job.target_path} already exists with other content")
    _check_resolved_host(job, config)
    checkout.prepare(job, git)
    temp = child_path(root, f"{TEMP_PREFIX}{job.id}-{secrets.token_hex(4)}")
    try:
        os.mkdir(temp)
        if config.checkout_gid is not None:
            workspace_group_folder(temp, config.checkout_gid)
    except OSError as exc:
        raise failure_from_os_error(exc, f"cannot create a folder in {root}") from None
    try:
        resolved = checkout.clone(job, config, git, temp, cwd=root)
        extras = checkout.finish_clone(job, resolved, config, git, temp)
        if lstat_or_none(target) is not None:
            raise JobFailure("target_exists", f"{job.target_path} appeared while cloning")
        os.rename(temp, target)
    except BaseException:
        remove_tree(temp)
        raise
    return _checkout_result(git, target, started, job, resolved, extras, fresh=True)


def pull(job: Job, config: AgentConfig, git: Git, started: float) -> JobResult:
    """Fetch the tracked branch, then bring the checkout to it as `job.strategy` says:
    `ff-only` fast-forwards and leaves a dirty or diverged checkout alone, `rebase` and `reset`
    are in `agent.workspace`.

    A job whose `ref` differs from `branch` (the ref the project is on) moves the checkout to
    that branch, tag or commit instead; a tag or commit is checked out again on every pull.

    `depth` is not passed to the fetch: a shallow checkout fetches just the commits after its
    HEAD, whereas `--depth` would cut the new tip off from HEAD and every pull would diverge.
    """
    target = target_path(config.projects_path, job.target_path)
    checkout.prepare(job, git)
    _check_checkout(git, target)
    if job.strategy == "ff-only":
        changed = workspace.changed_paths(git, target, untracked=False)
        if changed:
            listing = workspace.LocalWork(changed=changed, unpushed=[]).describe()
            raise JobFailure("dirty_worktree", f"local changes in {job.target_path}: {listing}")
    _check_resolved_host(job, config)
    resolved = checkout.resolve(job, git, cwd=target)
    head = git.run("symbolic-ref", "--quiet", "HEAD", repo=target, check=False).stdout.strip()
    moving = job.ref != job.branch
    if resolved.kind == "branch" and not moving and head != f"refs/heads/{resolved.ref}":
        current = head.removeprefix("refs/heads/") or "a detached HEAD"
        raise JobFailure("git_error", f"the checkout is on {current}, not on {resolved.ref}")
    if resolved.kind != "branch" or head != f"refs/heads/{resolved.ref}":
        checkout.move(job, resolved, git, target)
        extras = checkout.extras(job, config, git, target)
        return _checkout_result(git, target, started, job, resolved, extras)
    tracking = f"refs/remotes/origin/{resolved.ref}"
    fetch = ["fetch", "--progress", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head"]
    source = checkout.fetch_source(job, git, target)
    git.run(*fetch, "--", source, f"+refs/heads/{resolved.ref}:{tracking}", repo=target)
    if job.strategy == "rebase":
        workspace.rebase(git, target, resolved.ref, tracking)
        extras = checkout.extras(job, config, git, target)
        return _checkout_result(git, target, started, job, resolved, extras)
    if job.strategy == "reset":
        backup_ref = workspace.reset(git, target, tracking)
        extras = checkout.extras(job, config, git, target)
        return _checkout_result(git, target, started, job, resolved, extras, backup_ref=backup_ref)
    ancestor = git.run("merge-base", "--is-ancestor", "HEAD", tracking, repo=target, check=False)
    if ancestor.returncode == 1:
        raise JobFailure("not_fast_forward", f"{resolved.ref} has diverged from the remote branch")
    if ancestor.returncode != 0:
        raise JobFailure("git_error", ancestor.stderr)
    merge = git.run(
        "merge", "--ff-only", "--no-stat", "--no-edit", tracking, repo=target, check=False
    )
    if merge.returncode != 0:
        if "would be overwritten" in merge.stderr:
            raise JobFailure("dirty_worktree", merge.stderr)
        raise git.failure(merge, where=target)
    extras = checkout.extras(job, config, git, target)
    return _checkout_result(git, target, started, job, resolved, extras)


def inspect(job: Job, config: AgentConfig, git: Git, started: float) -> JobResult:
    """Look at the checkout and change nothing: its HEAD and its workspace summary (with the
    LFS filter named when the project uses LFS, as its clone and pulls do, or every LFS file
    would look changed)."""
    target = target_path(config.projects_path, job.target_path)
    _check_checkout(git, target)
    checkout.prepare(job, git)
    return _checkout_result(git, target, started, job, checkout.current(git, target))


def delete(job: Job, config: AgentConfig, git: Git, started: float) -> JobResult:
    """Rename the project into a trash name, then remove it; what is already gone succeeds.

    Unless the job is forced, a checkout holding local work (see `agent.workspace.local_work`),
    or one that cannot be checked, fails `local_changes` and is left as it is.
    """
    root = config.projects_path
    target = target_path(root, job.target_path)
    if refuse_symlink(target) is not None:
        if not job.force:
            _refuse_losing_work(git, target, job)
        trash = child_path(root, f"{TRASH_PREFIX}{job.id}-{secrets.token_hex(4)}")
        os.rename(target, trash)
        remove_tree(trash)
    return JobResult(
        commit="", branch=job.branch, local_path=target, duration_ms=_ms_since(started),
        size_bytes=0,
    )  # fmt: skip


def sweep_leftovers(projects_root: str) -> list[str]:
    """Remove temporary and trash folders left by an agent that died mid-job; return their names.

    One that cannot be removed is logged and left: it must not stop the agent from starting.
    """
    removed = []
    try:
        entries = list(os.scandir(projects_root))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.name.startswith((TEMP_PREFIX, TRASH_PREFIX)):
            try:
                remove_tree(child_path(projects_root, entry.name))
            except OSError as exc:
                log_event(logging.WARNING, "sweep_failed", name=entry.name, error=str(exc))
                continue
            removed.append(entry.name)
    return removed


_OPERATIONS: dict[str, Callable[[Job, AgentConfig, Git, float], JobResult]] = {
    "clone": clone,
    "pull": pull,
    "delete": delete,
    "inspect": inspect,
}


def _refuse_losing_work(git: Git, target: str, job: Job) -> None:
    try:
        _check_checkout(git, target)
        work = workspace.local_work(git, target)
    except JobFailure as exc:
        raise JobFailure(
            "local_changes",
            f"{job.target_path} could not be checked for local work ({exc.code}: {exc.message});"
            " delete with force=true to remove it anyway",
        ) from None
    if not work.empty:
        raise JobFailure(
            "local_changes",
            f"{job.target_path} holds work that would be lost; delete with force=true to remove"
            f" it anyway. {work.describe()}",
        )


def workspace_group_folder(path: str, gid: int) -> None:
    """Make a new, still private folder group-owned, group-writable and setgid, so that all
    git creates below it (under umask 002) belongs to the group and stays writable by it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, -1, gid)
        os.fchmod(fd, 0o2775)
    finally:
        os.close(fd)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _checkout_result(
    git: Git,
    target: str,
    started: float,
    job: Job,
    resolved: checkout.Resolved,
    extras: checkout.Extras | None = None,
    *,
    backup_ref: str | None = None,
    fresh: bool = False,
) -> JobResult:
    """The job's result and the checkout's workspace summary; `fresh` for a checkout this job
    made, which is clean by construction and whose index is HEAD's tree, so the entries the
    extras listed serve the summary too (see `workspace.inspect`)."""
    extras = extras or checkout.Extras()
    upstream = resolved.ref if resolved.kind == "branch" else job.branch
    head = workspace.read_head(git, target, upstream=upstream, default=job.branch)
    entries = extras.head if fresh else None
    state = workspace.inspect(git, target, head, fresh=fresh, entries=entries)
    return JobResult(
        commit=head.commit,
        branch=head.branch,
        local_path=target,
        duration_ms=_ms_since(started),
        size_bytes=int(state["size_bytes"]),
        workspace=state,
        backup_ref=backup_ref,
        ref=resolved.ref,
        ref_kind=resolved.kind,
        submodules=extras.submodules,
        submodules_skipped=extras.submodules_skipped,
        lfs_files=extras.lfs_files,
    )


def _git_dir_config(target: str) -> str | None:
    """The checkout's .git/config if `.git` is a plain folder holding a plain config file."""
    git_dir = os.path.join(target, ".git")
    git_dir_info = lstat_or_none(git_dir)
    if git_dir_info is None or not stat.S_ISDIR(git_dir_info.st_mode):
        return None
    config_path = os.path.join(git_dir, "config")
    config_info = lstat_or_none(config_path)
    if config_info is None or not stat.S_ISREG(config_info.st_mode):
        return None
    return config_path


def _read_config_file(git: Git, config_path: str) -> list[tuple[str, str]]:
    """Entries of one config file, parsed by git itself, without includes and without a repo."""
    listing = git.run("config", "--file", config_path, "--no-includes", "--list", "-z")
    entries = []
    for item in listing.stdout.split("\0"):
        if item:
            key, _, value = item.partition("\n")
            entries.append((key, value))
    return entries


def _origin_url(git: Git, target: str) -> str | None:
    config_path = _git_dir_config(target)
    if config_path is None:
        return None
    urls = [
        value for key, value in _read_config_file(git, config_path) if key == "remote.origin.url"
    ]
    return urls[-1] if urls else None


def _check_checkout(git: Git, target: str) -> None:
    """Refuse anything but a plain checkout whose config cannot make git run code."""
    info = refuse_symlink(target)
    if info is None or not stat.S_ISDIR(info.st_mode):
        raise JobFailure("not_a_checkout", f"{target} does not exist or is not a folder")
    config_path = _git_dir_config(target)
    if config_path is None:
        raise JobFailure("not_a_checkout", f"{target} has no .git folder")
    git_dir = os.path.dirname(config_path)
    for redirect in ("commondir", "gitdir", "config.worktree"):
        if lstat_or_none(os.path.join(git_dir, redirect)) is not None:
            raise JobFailure("unsafe_path", f"{target}/.git has a {redirect} file")
    for key, _ in _read_config_file(git, config_path):
        if not _ALLOWED_LOCAL_CONFIG.fullmatch(key):
            raise JobFailure("unsafe_path", f"{target}/.git/config sets {key}, which pull refuses")


def _check_resolved_host(job: Job, config: AgentConfig) -> None:
    """Apply the address rules to what the URL's host resolves to now, just before git runs."""
    policy = UrlPolicy(
        allowed_schemes=frozenset(config.git_allowed_schemes),
        allow_private_hosts=config.git_allow_private_hosts,
    )
    try:
        parsed = parse_git_url(job.git_url, policy)
        if parsed.scheme != "file":
            check_resolved_host(parsed.host, parsed.port, policy)
    except ValueError as exc:
        raise JobFailure("invalid_job", f"git_url: {exc}") from None
