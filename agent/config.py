"""The agent's settings: one frozen object built from `AGENT_*` environment variables."""

from __future__ import annotations

import grp
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ALLOWED_GIT_SCHEMES = ("https", "ssh", "http", "git", "file")
MAX_LEASE_WAIT = 50


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent is told by its environment, validated once at start."""

    server_url: str
    token: str = field(repr=False)
    storage_path: str
    projects_path: str
    datasets_path: str
    jobs_workspace: str
    outputs_path: str
    git_allowed_schemes: tuple[str, ...] = ("https", "ssh")
    git_allow_private_hosts: bool = False
    git_credential_helper: str = ""
    # Symlinks are checked out as symlinks, like git; false stores them as files of link text.
    git_symlinks: bool = True
    concurrency: int = 2
    git_timeout: int = 3600
    lease_wait: int = 25
    heartbeat_seconds: int = 20
    heartbeat_refresh_seconds: int = 300
    drain_seconds: int = 60
    ca_bundle: str | None = None
    log_format: str = "text"
    # Group-write checkouts (AGENT_CHECKOUT_MODE=group-write): the gid that owns them, or None.
    checkout_gid: int | None = None
    progress_seconds: float = 2.0

    @property
    def checkout_group_write(self) -> bool:
        """Whether checkouts are made group-owned and group-writable."""
        return self.checkout_gid is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentConfig:
        """Read and validate the settings; raise ConfigError naming the first bad variable."""
        env = os.environ if env is None else env
        storage = _path(env, "AGENT_STORAGE_PATH", "/data")
        return cls(
            server_url=_server_url(env),
            token=_token(env),
            storage_path=storage,
            projects_path=_path(env, "AGENT_PROJECTS_PATH", os.path.join(storage, "projects")),
            datasets_path=_path(env, "AGENT_DATASETS_PATH", os.path.join(storage, "datasets")),
            jobs_workspace=_path(env, "AGENT_JOBS_WORKSPACE", os.path.join(storage, "jobs")),
            outputs_path=_path(env, "AGENT_OUTPUTS_PATH", os.path.join(storage, "outputs")),
            git_allowed_schemes=_schemes(env),
            git_allow_private_hosts=_bool(env, "AGENT_GIT_ALLOW_PRIVATE_HOSTS", False),
            git_credential_helper=_credential_helper(env),
            git_symlinks=_bool(env, "AGENT_GIT_SYMLINKS", True),
            concurrency=_int(env, "AGENT_CONCURRENCY", 2, low=1, high=64),
            git_timeout=_int(env, "AGENT_GIT_TIMEOUT", 3600, low=1),
            lease_wait=_int(env, "AGENT_LEASE_WAIT", 25, low=0, high=MAX_LEASE_WAIT),
            heartbeat_seconds=_int(env, "AGENT_HEARTBEAT_SECONDS", 20, low=1, high=3600),
            heartbeat_refresh_seconds=_int(
                env, "AGENT_HEARTBEAT_REFRESH_SECONDS", 300, low=1, high=3600
            ),
            drain_seconds=_int(env, "AGENT_DRAIN_SECONDS", 60, low=0),
            ca_bundle=_ca_bundle(env),
            log_format=_choice(env, "AGENT_LOG_FORMAT", "text", ("text", "json")),
            checkout_gid=_checkout_gid(env),
            progress_seconds=float(_int(env, "AGENT_PROGRESS_SECONDS", 2, low=1, high=60)),
        )

    @property
    def folders(self) -> tuple[str, str, str, str]:
        """The four data folders the agent creates on start."""
        return (self.projects_path, self.datasets_path, self.jobs_workspace, self.outputs_path)

    @property
    def tls_verify(self) -> str | bool:
        """What `requests` takes as `verify=`: the CA bundle, or True for the system CAs."""
        return self.ca_bundle or True

    def create_folders(self) -> None:
        """Create the four data folders (and their parents) if they are missing."""
        for folder in self.folders:
            os.makedirs(folder, exist_ok=True)


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _server_url(env: Mapping[str, str]) -> str:
    name = "AGENT_SERVER_URL"
    value = _raw(env, name)
    if value is None:
        raise ConfigError(name, "is required (e.g. https://gitfleet.example.com)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(name, f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(name, "must start with http:// or https://")
    if not parts.hostname:
        raise ConfigError(name, "has no host")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(name, "must not contain credentials; use AGENT_TOKEN")
    if parts.query or parts.fragment:
        raise ConfigError(name, "must not have a query or fragment")
    return value.rstrip("/")


def _token(env: Mapping[str, str]) -> str:
    token, token_file = _raw(env, "AGENT_TOKEN"), _raw(env, "AGENT_TOKEN_FILE")
    if token is not None and token_file is not None:
        raise ConfigError("AGENT_TOKEN", "set either AGENT_TOKEN or AGENT_TOKEN_FILE, not both")
    if token is None and token_file is None:
        raise ConfigError("AGENT_TOKEN", "is required (or AGENT_TOKEN_FILE naming a file)")
    name = "AGENT_TOKEN"
    if token_file is not None:
        name = "AGENT_TOKEN_FILE"
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "is not UTF-8 text"
            raise ConfigError(name, f"cannot read {token_file}: {reason}") from None
    assert token is not None
    if not token:
        raise ConfigError(name, "the token is empty")
    if any(not ch.isprintable() or ch.isspace() for ch in token):
        raise ConfigError(name, "the token contains whitespace or control characters")
    return token


def _path(env: Mapping[str, str], name: str, default: str) -> str:
    value = _raw(env, name) or default
    if "\x00" in value:
        raise ConfigError(name, "contains a NUL character")
    return os.path.abspath(value)


def _schemes(env: Mapping[str, str]) -> tuple[str, ...]:
    name = "AGENT_GIT_ALLOWED_SCHEMES"
    value = _raw(env, name) or "https,ssh"
    schemes: list[str] = []
    for item in value.split(","):
        scheme = item.strip().lower()
        if scheme not in ALLOWED_GIT_SCHEMES:
            allowed = ", ".join(ALLOWED_GIT_SCHEMES)
            raise ConfigError(name, f"unknown scheme {item.strip()!r} (allowed: {allowed})")
        if scheme not in schemes:
            schemes.append(scheme)
    return tuple(schemes)


def _credential_helper(env: Mapping[str, str]) -> str:
    name = "AGENT_GIT_CREDENTIAL_HELPER"
    value = _raw(env, name) or ""
    if any(not ch.isprintable() for ch in value):
        raise ConfigError(name, "contains control characters")
    return value


def _int(
    env: Mapping[str, str], name: str, default: int, *, low: int, high: int | None = None
) -> int:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = int(value, 10)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(name, f"must be {bounds}, got {number}")
    return number


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _raw(env, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (_raw(env, name) or default).lower()
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _ca_bundle(env: Mapping[str, str]) -> str | None:
    name = "AGENT_CA_BUNDLE"
    value = _raw(env, name)
    if value is None:
        return None
    if not os.path.exists(value):
        raise ConfigError(name, f"{value} does not exist")
    return os.path.abspath(value)


def _checkout_gid(env: Mapping[str, str]) -> int | None:
    """The group of group-write checkouts; None unless AGENT_CHECKOUT_MODE=group-write."""
    mode = _choice(env, "AGENT_CHECKOUT_MODE", "private", ("private", "group-write"))
    group = _raw(env, "AGENT_CHECKOUT_GROUP")
    if mode == "private":
        if group is not None:
            raise ConfigError("AGENT_CHECKOUT_GROUP", "needs AGENT_CHECKOUT_MODE=group-write")
        return None
    if group is None:
        raise ConfigError(
            "AGENT_CHECKOUT_GROUP", "is required with AGENT_CHECKOUT_MODE=group-write"
        )
    try:
        return grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError("AGENT_CHECKOUT_GROUP", f"no group {group!r} on this host") from None
