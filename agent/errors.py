"""How a job ends badly: a protocol error code, a scrubbed message, and whether to retry."""

from __future__ import annotations

import errno
import re

MAX_MESSAGE_LENGTH = 2000

# Codes from docs/agent-protocol.md.
ERROR_CODES = frozenset(
    {
        "auth_failed",
        "host_key_unknown",
        "host_key_mismatch",
        "repository_not_found",
        "branch_not_found",
        "timeout",
        "network_error",
        "disk_full",
        "permission_denied",
        "not_fast_forward",
        "dirty_worktree",
        "conflict",
        "local_changes",
        "not_a_checkout",
        "target_exists",
        "invalid_job",
        "unsafe_path",
        "git_error",
        "internal_error",
        "ref_not_found",
        "lfs_unavailable",
        "lfs_url_refused",
        "lfs_incomplete",
        "submodule_refused",
    }
)
RETRYABLE_CODES = frozenset({"timeout", "network_error", "internal_error", "lfs_incomplete"})


class JobFailure(Exception):
    """The job failed; `message` is already scrubbed and capped, ready to send to the server."""

    def __init__(self, code: str, message: str, *, retryable: bool | None = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.message = cap_message(scrub(message))
        self.retryable = code in RETRYABLE_CODES if retryable is None else retryable
        super().__init__(f"{code}: {self.message}")

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class JobCancelled(Exception):
    """The job was stopped from outside (lease lost, or the agent is shutting down)."""


def failure_from_os_error(exc: OSError, doing: str) -> JobFailure:
    """Map an error from the file system to the protocol's codes."""
    text = f"{doing}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return JobFailure("disk_full", text)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return JobFailure("permission_denied", text)
    return JobFailure("internal_error", text)


_TOKEN_SHAPES = (
    r"gh[pousr]_[A-Za-z0-9]{16,}",
    r"github_pat_[A-Za-z0-9_]{16,}",
    r"glpat-[A-Za-z0-9_-]{16,}",
    r"gf[au]_[A-Za-z0-9_-]{8,}",
    r"xox[abposr]-[A-Za-z0-9-]{10,}",
    r"AKIA[0-9A-Z]{16}",
)
_SCRUBBERS = (
    # Whole header values: `Authorization: Bearer ...`, `Proxy-Authorization: Basic ...`.
    (re.compile(r"(?i)\b((?:proxy-)?authorization\s*:\s*)[^\r\n]*"), r"\1***"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    # User info in URLs: https://user:secret@host/ -> https://***@host/.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@"), r"\1***@"),
    (re.compile(r"\b(?:" + "|".join(_TOKEN_SHAPES) + r")"), "***"),
    # key=value and key: value forms of secrets, quoted or not.
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|token|access_token|private_token|api_key|apikey"
            r"|secret|client_secret)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,'\"]+)"
        ),
        r"\1\2***",
    ),
)


def scrub(text: str) -> str:
    """Replace anything that looks like a credential with `***`."""
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


def cap_message(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """Keep the end of `text` (git's last lines say what failed) within `limit` characters."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :]
