"""Re-validation of every job field the server sends (defence in depth; the server checks too).

The git URL, branch and target folder go through the same `gitpolicy` rules the server applied;
ids and numbers are checked here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitpolicy import UrlPolicy, validate_branch, validate_git_url, validate_target_name

JOB_KINDS = ("clone", "pull", "delete", "inspect")
PULL_STRATEGIES = ("ff-only", "rebase", "reset")
MAX_DEPTH = 2**31 - 1


class InvalidJob(ValueError):
    """A job field failed validation; the job is failed with code `invalid_job`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Job:
    """A validated job, as received in a lease."""

    id: str
    kind: str
    project_id: str
    git_url: str
    branch: str
    target_path: str
    depth: int | None
    timeout_seconds: int
    strategy: str = "ff-only"
    force: bool = False


def parse_job(
    data: Mapping[str, Any], *, allowed_schemes: Iterable[str], allow_private_hosts: bool
) -> Job:
    """Validate the `job` object of a lease response; raise InvalidJob naming the field."""
    if not isinstance(data, Mapping):
        raise InvalidJob("job", "must be an object")
    kind = data.get("kind")
    if kind not in JOB_KINDS:
        raise InvalidJob("kind", f"must be one of {', '.join(JOB_KINDS)}")
    needs_git = kind in ("clone", "pull")
    git_url = data.get("git_url") or ""
    branch = data.get("branch") or ""
    policy = UrlPolicy(
        allowed_schemes=frozenset(allowed_schemes), allow_private_hosts=allow_private_hosts
    )
    if needs_git or git_url:
        _check("git_url", lambda: validate_git_url(git_url, policy))
    if needs_git or branch:
        _check("branch", lambda: validate_branch(branch))
    return Job(
        id=_check("id", lambda: validate_uuid(data.get("id"))),
        kind=kind,
        project_id=_check("project_id", lambda: validate_uuid(data.get("project_id"))),
        git_url=git_url,
        branch=branch,
        target_path=_check("target_path", lambda: validate_target_name(data.get("target_path"))),
        depth=_check("depth", lambda: _positive_int(data.get("depth"), MAX_DEPTH, optional=True)),
        timeout_seconds=_check(
            "timeout_seconds", lambda: _positive_int(data.get("timeout_seconds"), None)
        ),
        strategy=_check("strategy", lambda: _strategy(data.get("strategy"))),
        force=_check("force", lambda: _flag(data.get("force"))),
    )


def _strategy(value: object) -> str:
    """A pull strategy; absent (an older server) means the fast-forward it always was."""
    if value is None:
        return "ff-only"
    if value not in PULL_STRATEGIES:
        raise ValueError(f"must be one of {', '.join(PULL_STRATEGIES)}")
    return str(value)


def _flag(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _check(field: str, validate: Any) -> Any:
    try:
        return validate()
    except ValueError as exc:
        raise InvalidJob(field, str(exc)) from None


def validate_uuid(value: object) -> str:
    """Return the canonical (lowercase, hyphenated) form of a UUID string."""
    if not isinstance(value, str) or len(value) != 36:
        raise ValueError("must be a UUID")
    return str(uuid.UUID(value))


def _positive_int(value: object, high: int | None, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError("must be a positive whole number" + (" or null" if optional else ""))
    if high is not None and value > high:
        raise ValueError(f"must be at most {high}")
    return value
