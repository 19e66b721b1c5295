"""Re-validation of every job field the server sends (defence in depth; the server checks too)."""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.paths import validate_target_name

JOB_KINDS = ("clone", "pull", "delete")
MAX_URL_LENGTH = 2048
MAX_BRANCH_LENGTH = 255
MAX_DEPTH = 2**31 - 1

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused whatever the operator allows: link-local (which includes the 169.254.169.254
# metadata endpoint) and the cloud metadata endpoints reachable by name or IPv6.
_ALWAYS_REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(net) for net in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
)
_ALWAYS_REFUSED_NAMES = ("metadata.google.internal",)


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


@dataclass(frozen=True)
class GitUrl:
    """The parts of a git URL that policy looks at."""

    scheme: str
    host: str
    port: int | None = None


def parse_job(
    data: Mapping[str, Any], *, allowed_schemes: Iterable[str], allow_private_hosts: bool
) -> Job:
    """Validate the `job` object of a lease response; raise InvalidJob naming the field."""
    if not isinstance(data, Mapping):
        raise InvalidJob("job", "must be an object")
    kind = data.get("kind")
    if kind not in JOB_KINDS:
        raise InvalidJob("kind", f"must be one of {', '.join(JOB_KINDS)}")
    needs_git = kind != "delete"
    git_url = data.get("git_url") or ""
    branch = data.get("branch") or ""
    if needs_git or git_url:
        _check(
            "git_url",
            lambda: validate_git_url(
                git_url, allowed_schemes=allowed_schemes, allow_private_hosts=allow_private_hosts
            ),
        )
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
    )


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


def _has_control_or_space(text: str) -> bool:
    return any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text)


# `[user@]host:path` with no `/` before the first `:` is git's scp-like ssh syntax.
_SCP_LIKE = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]/]+\]|[^@/:\[\]]+):(?P<path>.*)")
# `<transport>::<address>` asks git to run a remote helper (ext::, fd::, ...).
_REMOTE_HELPER = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")


def validate_git_url(
    url: object, *, allowed_schemes: Iterable[str], allow_private_hosts: bool
) -> GitUrl:
    """Check a clone URL against the scheme, credential and host policy; ValueError says why."""
    if not isinstance(url, str) or not url:
        raise ValueError("must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"is longer than {MAX_URL_LENGTH} characters")
    if url.startswith("-"):
        raise ValueError("must not start with '-'")
    if _has_control_or_space(url):
        raise ValueError("must not contain whitespace or control characters")
    if _REMOTE_HELPER.match(url):
        raise ValueError("remote-helper syntax (<transport>::<address>) is not allowed")
    allowed = {scheme.lower() for scheme in allowed_schemes}
    if "://" in url:
        parsed = _parse_scheme_url(url)
    elif (match := _SCP_LIKE.fullmatch(url)) is not None:
        host = match["host"].strip("[]")
        if (match["user"] or "").startswith("-"):
            raise ValueError("user name must not start with '-'")
        if not match["path"]:
            raise ValueError("has no repository path")
        parsed = GitUrl(scheme="ssh", host=host.lower(), port=None)
    else:
        raise ValueError("must be a URL like https://host/repo.git or git@host:repo.git")
    if parsed.scheme not in allowed:
        raise ValueError(
            f"scheme {parsed.scheme!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
        )
    if parsed.host.startswith("-"):
        raise ValueError("host must not start with '-'")
    if parsed.scheme != "file":
        check_host(parsed.host, allow_private_hosts=allow_private_hosts)
    return parsed


def _parse_scheme_url(url: str) -> GitUrl:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if parts.password is not None:
        raise ValueError("must not contain credentials (user:password@)")
    if parts.username is not None and scheme != "ssh":
        # A token is often sent as the user name over https; only ssh names a login user.
        raise ValueError("must not contain a user name or token; only ssh://user@host is allowed")
    if (parts.username or "").startswith("-"):
        raise ValueError("user name must not start with '-'")
    host = (parts.hostname or "").lower()
    if scheme == "file":
        if host not in ("", "localhost"):
            raise ValueError("file URLs must not name a host")
        if not parts.path.startswith("/"):
            raise ValueError("file URLs need an absolute path")
    elif not host:
        raise ValueError("has no host")
    if scheme != "file" and parts.path in ("", "/"):
        raise ValueError("has no repository path")
    return GitUrl(scheme=scheme, host=host, port=parts.port)


def check_host(host: str, *, allow_private_hosts: bool) -> None:
    """Refuse metadata and link-local hosts always, loopback/private ones unless allowed."""
    name = host.rstrip(".").lower()
    if not name:
        raise ValueError("has no host")
    if name in _ALWAYS_REFUSED_NAMES:
        raise ValueError(f"host {host} is a cloud metadata endpoint")
    address = _literal_address(name)
    if address is None:
        if (name == "localhost" or name.endswith(".localhost")) and not allow_private_hosts:
            raise ValueError(f"host {host} is loopback; private hosts are not allowed")
        return
    check_address(address, allow_private_hosts=allow_private_hosts)


def check_address(address: IPAddress, *, allow_private_hosts: bool) -> None:
    """Apply the host policy to one IP address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in _ALWAYS_REFUSED_NETWORKS if net.version == address.version):
        raise ValueError(f"host {address} is link-local or a cloud metadata address")
    if address.is_multicast:
        raise ValueError(f"host {address} is a multicast address")
    # Not globally routable: loopback, private, shared (CGNAT), unspecified, reserved.
    if not address.is_global and not allow_private_hosts:
        raise ValueError(f"host {address} is loopback or private; private hosts are not allowed")


def _literal_address(name: str) -> IPAddress | None:
    name = name.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    # Shorthand IPv4 that resolvers still accept: 127.1, 0x7f.1, 2130706433, 017700000001.
    if re.fullmatch(r"[0-9a-fx.]+", name) and not name.endswith("."):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    return None


def check_resolved_host(host: str, port: int | None, *, allow_private_hosts: bool) -> None:
    """Resolve `host` and apply the policy to every address; a name that does not resolve passes.

    This narrows DNS tricks (a public name pointing at 127.0.0.1) but cannot close them: git
    resolves again when it connects.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        check_address(address, allow_private_hosts=allow_private_hosts)


_BRANCH_FORBIDDEN = set(" ~^:?*[\\")


def validate_branch(name: object) -> str:
    """Apply the rules of `git check-ref-format --branch` (and refuse a leading '-')."""
    if not isinstance(name, str) or not name:
        raise ValueError("must be a non-empty string")
    if len(name) > MAX_BRANCH_LENGTH:
        raise ValueError(f"is longer than {MAX_BRANCH_LENGTH} characters")
    if name.startswith("-"):
        raise ValueError("must not start with '-'")
    if name == "HEAD":
        raise ValueError("HEAD is not a branch name")
    if name == "@":
        raise ValueError("must not be '@'")
    if _has_control_or_space(name):
        raise ValueError("must not contain whitespace or control characters")
    bad = sorted(_BRANCH_FORBIDDEN.intersection(name))
    if bad:
        raise ValueError(f"must not contain {' '.join(repr(ch) for ch in bad)}")
    if "@{" in name:
        raise ValueError("must not contain '@{'")
    if ".." in name:
        raise ValueError("must not contain '..'")
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise ValueError("must not start or end with '/' or contain '//'")
    if name.endswith("."):
        raise ValueError("must not end with '.'")
    for component in name.split("/"):
        if component.startswith("."):
            raise ValueError("no part may start with '.'")
        if component.endswith(".lock"):
            raise ValueError("no part may end with '.lock'")
    return name
