"""Which git URLs may be fetched: schemes, scp-like ssh, users, hosts, ports and paths."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from gitpolicy.addresses import HostPolicy, check_host

# Schemes that reach a remote repository; the server never allows anything else.
NETWORK_SCHEMES = frozenset({"https", "http", "ssh", "git"})
# `file` reads the node's own disk: only an agent's own configuration may allow it (its tests
# serve repositories that way), never the server.
KNOWN_SCHEMES = NETWORK_SCHEMES | {"file"}
MAX_URL_LENGTH = 2048

_URL_PATH = re.compile(r"[A-Za-z0-9._~/+@:-]*\Z")
_SCP_LIKE = re.compile(
    r"(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)\Z"
)
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")
_PORT = re.compile(r"[1-9][0-9]{0,4}\Z")
# `<transport>::<address>` makes git run a remote helper (ext::, fd::, ...); git's own test.
_REMOTE_HELPER = re.compile(r"[A-Za-z0-9+.-]*::")
_BAD_SSH_USER = (
    "The ssh user name may use letters, digits, '.', '_' and '-' only, and may not start with "
    "'-' or '.'."
)
_LOCAL_PATH = "Local paths are not allowed; give a URL such as https://host/repo.git."


@dataclass(frozen=True)
class UrlPolicy(HostPolicy):
    """The schemes the operator allows, and whether private hosts are allowed."""

    allowed_schemes: frozenset[str]

    def __post_init__(self) -> None:
        # Settings and environment variables give a list in any case; git's schemes are lower.
        schemes = frozenset(scheme.lower() for scheme in self.allowed_schemes)
        object.__setattr__(self, "allowed_schemes", schemes)


@dataclass(frozen=True)
class GitUrl:
    """A URL that passed the policy, in parts: `host` without brackets and in lower case, as
    the agent resolves it; empty for `file` URLs."""

    url: str
    scheme: str
    user: str | None
    host: str
    port: int | None
    path: str


def validate_git_url(url: object, policy: UrlPolicy) -> str:
    """Return `url` unchanged if Gitfleet may fetch it under `policy`, or raise ValueError
    saying why not."""
    return parse_git_url(url, policy).url


def parse_git_url(url: object, policy: UrlPolicy) -> GitUrl:
    """Check `url` against `policy` and return its parts, or raise ValueError saying why not."""
    if not isinstance(url, str):
        raise ValueError("A git URL must be a string.")
    if not url:
        raise ValueError("A git URL is required.")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"A git URL has at most {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("A git URL may not contain whitespace or control characters.")
    if not url.isascii():
        raise ValueError("A git URL must be ASCII (no look-alike characters).")
    if url.startswith("-"):
        raise ValueError("A git URL may not start with '-'.")
    if _REMOTE_HELPER.match(url):
        raise ValueError("Remote helpers such as ext:: and fd:: are never allowed.")
    if "://" in url:
        return _parse_scheme_url(url, policy)
    return _parse_scp_like(url, policy)


def _parse_scp_like(url: str, policy: UrlPolicy) -> GitUrl:
    """`[user@]host:path`, git's short form of an ssh URL."""
    scp = _SCP_LIKE.match(url)
    if scp is None:
        raise ValueError(_LOCAL_PATH)
    if "ssh" not in policy.allowed_schemes:
        raise ValueError("ssh is not an allowed scheme on this server.")
    if len(scp["host"]) == 1 and scp["path"].startswith(("/", "\\")):
        # `C:/repo` is a drive path to git on Windows, not a host named C.
        raise ValueError(_LOCAL_PATH)
    if scp["user"] is not None and not _USER.match(scp["user"]):
        raise ValueError(_BAD_SSH_USER)
    check_host(scp["host"], policy)
    _check_path(scp["path"])
    return GitUrl(url, "ssh", scp["user"], _bare_host(scp["host"]), None, scp["path"])


def _parse_scheme_url(url: str, policy: UrlPolicy) -> GitUrl:
    """`scheme://[user@]host[:port]/path`."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"Not a valid URL: {exc}.") from exc
    scheme = url.partition("://")[0]
    if not _SCHEME.match(scheme):
        raise ValueError("Not a valid URL; give one such as https://host/repo.git.")
    if scheme != parts.scheme:
        # git picks the transport by the scheme's exact spelling; 'HTTPS' would name a helper.
        raise ValueError("Write the URL scheme in lower case.")
    allowed = policy.allowed_schemes & KNOWN_SCHEMES
    if scheme not in allowed:
        raise ValueError(
            f"Scheme {scheme!r} is not allowed; use one of: {', '.join(sorted(allowed))}."
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError("A git URL may not have a query string or a fragment.")
    if scheme == "file":
        if parts.netloc:
            raise ValueError("A file URL may not name a host; write file:///path.")
        _check_path(parts.path)
        return GitUrl(url, scheme, None, "", None, parts.path)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and (":" in userinfo or scheme != "ssh"):
        raise ValueError(
            "Credentials never travel in URLs; nodes use their own credential helper or SSH keys."
        )
    if at and not _USER.match(userinfo):
        raise ValueError(_BAD_SSH_USER)
    host, port = _split_host_port(hostport)
    if port is not None and (not _PORT.match(port) or int(port) > 65535):
        raise ValueError("The port must be a number from 1 to 65535, without leading zeros.")
    check_host(host, policy)
    _check_path(parts.path)
    return GitUrl(
        url,
        scheme,
        userinfo if at else None,
        _bare_host(host),
        int(port) if port is not None else None,
        parts.path,
    )


def _bare_host(host: str) -> str:
    """The host as a resolver takes it: no IPv6 brackets, no trailing dot, lower case."""
    return host.strip("[]").rstrip(".").lower()


def _check_path(path: str) -> None:
    if not path or path in ("/", ":"):
        raise ValueError("The URL has no repository path.")
    if not _URL_PATH.match(path):
        raise ValueError(
            "The repository path may use letters, digits and . _ ~ / + @ : - only (no spaces, "
            "percent-encoding or control characters)."
        )
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError("The repository path may not contain '.' or '..' segments.")
    if path.lstrip("/").startswith("-"):
        raise ValueError("The repository path may not start with '-'.")


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    """`host:port` or `[v6]:port` into the host and the port text (None when there is no ':')."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            raise ValueError("The IPv6 host is missing its ']'.")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("Only a port may follow an IPv6 host.")
        return host, rest[1:] if rest else None
    host, colon, port = hostport.partition(":")
    return host, port if colon else None
