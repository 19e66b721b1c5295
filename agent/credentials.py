"""How a job authenticates to its git host, and nothing else does: the project's credential,
the node's own credentials for people granted them, or nothing at all.

Every job gets a private folder (0700) in the agent's secrets folder, itself 0700 in the temporary
folder (`$TMPDIR`, named after the user and the storage path, so that each agent sweeps only its
own), removed when the job ends whatever the way, and by a restarted agent at start. It is the job's empty `HOME` (no
`~/.netrc`, no `~/.ssh`, no `~/.gitconfig`), and holds the job's known_hosts file and, for an
SSH credential, its key (0600). An HTTPS secret never touches a file: git asks the agent's own
helper (`agent/credential_helper.py`), scoped to the credential's host, which reads the answer
from a pipe the agent filled and git inherited; the environment names only the pipe's number.
The same helper answers the submodules' fetches on that host (git matches the helper's URL
scope by scheme, host and port, so a submodule elsewhere is asked nothing). The agent's own LFS
requests carry the token as a Basic header to the clone URL's own scheme, host and port only
(`HttpAuth`). The secret is in no argv, no environment, no `.git/config`, no remote URL, and is
redacted from every message the job reports.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import os
import shlex
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agent.logs import log_event
from agent.validation import InvalidJob

SECRETS_FOLDER = "gitfleet-job-secrets"
HELPER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "credential_helper.py")
CREDENTIAL_FD_VARIABLE = "GITFLEET_CREDENTIAL_FD"
# The helper answers one `get` per record; git asks once per remote-helper process, so a few
# copies cover every request of a job. Each record is at most a few KiB: all fit in the pipe.
_ANSWER_COPIES = 16
CREDENTIAL_KINDS = ("https-token", "ssh-key")
# The user name sent with a token when the credential names none; forges ignore it.
DEFAULT_TOKEN_USERNAME = "x-access-token"  # noqa: S105 - a user name, not a secret
MAX_SECRET_BYTES = 16 * 1024
MAX_KNOWN_HOSTS_BYTES = 256 * 1024
# Redacting key lines shorter than this would blank out common words of git's messages.
_MIN_REDACTED_PART = 12


@dataclass(frozen=True)
class GitCredential:
    """A person's credential as the lease delivered it; `secret` lives only in memory."""

    id: str
    name: str
    kind: str
    host: str
    username: str
    secret: str = field(repr=False)
    known_hosts: str = ""

    def secret_parts(self) -> list[str]:
        """What of the secret must never appear anywhere: the whole of it, and for a key each
        of its base64 lines, so that a leak split across lines is still caught."""
        parts = [self.secret.strip()]
        if self.kind == "ssh-key":
            lines = [line.strip() for line in self.secret.splitlines()]
            parts += [
                line
                for line in lines
                if len(line) >= _MIN_REDACTED_PART and not line.startswith("-----")
            ]
        return [part for part in parts if part]


@dataclass(frozen=True)
class Access:
    """What a job may authenticate with (the lease's `credential`, `use_node_credentials` and
    `ssh_known_hosts`)."""

    credential: GitCredential | None = None
    use_node_credentials: bool = False
    ssh_known_hosts: str = ""

    def redact(self, text: str) -> str:
        """`text` with every part of the secret replaced by `***`."""
        if self.credential is None:
            return text
        for part in sorted(self.credential.secret_parts(), key=len, reverse=True):
            text = text.replace(part, "***")
        return text


def parse_access(data: Mapping[str, Any]) -> Access:
    """The credential fields of a lease's `job` object; raises InvalidJob naming the field."""
    granted = data.get("use_node_credentials", False)
    if not isinstance(granted, bool):
        raise InvalidJob("use_node_credentials", "must be true or false")
    known_hosts = _text(data, "ssh_known_hosts", MAX_KNOWN_HOSTS_BYTES, "ssh_known_hosts")
    raw = data.get("credential")
    if raw is None:
        return Access(use_node_credentials=granted, ssh_known_hosts=known_hosts)
    if not isinstance(raw, Mapping):
        raise InvalidJob("credential", "must be an object or null")
    kind = raw.get("kind")
    if kind not in CREDENTIAL_KINDS:
        raise InvalidJob("credential.kind", f"must be one of {', '.join(CREDENTIAL_KINDS)}")
    host = _text(raw, "host", 260, "credential.host")
    if not host or any(ch in host for ch in "/@ \t\r\n\\'\"") or not host.isprintable():
        raise InvalidJob("credential.host", "must be a host or host:port")
    secret = _text(raw, "secret", MAX_SECRET_BYTES, "credential.secret")
    if not secret or "\0" in secret:
        raise InvalidJob("credential.secret", "must be a non-empty string")
    if kind == "https-token" and any(ch in secret for ch in "\r\n"):
        raise InvalidJob("credential.secret", "a token is one line")
    username = _text(raw, "username", 100, "credential.username")
    if any(ch in username for ch in "\r\n\0"):
        raise InvalidJob("credential.username", "must be one line")
    credential = GitCredential(
        id=_text(raw, "id", 64, "credential.id"),
        name=_text(raw, "name", 64, "credential.name"),
        kind=kind,
        host=host.lower(),
        username=username,
        secret=secret,
        known_hosts=_text(raw, "known_hosts", MAX_KNOWN_HOSTS_BYTES, "credential.known_hosts"),
    )
    return Access(credential=credential, use_node_credentials=granted, ssh_known_hosts=known_hosts)


def _text(data: Mapping[str, Any], key: str, limit: int, name: str) -> str:
    value = data.get(key) or ""
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidJob(name, f"must be a string of at most {limit} characters")
    return value


Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_origin(url: str) -> Origin | None:
    """(scheme, host, port) of an http(s) URL, the port filled in when implied; None for any
    other URL or one that does not parse."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


@dataclass(frozen=True)
class HttpAuth:
    """The project's HTTPS credential as the agent itself sends it (LFS requests), bound to the
    one origin — scheme, host and port of the clone URL — it was given for. Every other origin
    gets nothing, whatever a repository or an LFS server names."""

    origin: Origin
    username: str
    secret: str = field(repr=False)

    @property
    def header(self) -> str:
        pair = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def headers_for(self, url: str) -> dict[str, str]:
        """The Authorization header for `url` if it is on the credential's origin, else none."""
        return {"Authorization": self.header} if url_origin(url) == self.origin else {}

    def carried_by(self, value: str) -> bool:
        """Whether `value` (a header an LFS server handed back) holds the secret."""
        return self.secret in value or self.header.split(" ", 1)[1] in value


def http_auth(credential: GitCredential | None, git_url: str) -> HttpAuth | None:
    """The HttpAuth of a job: only an HTTPS token whose host[:port] is the clone URL's own."""
    if credential is None or credential.kind != "https-token":
        return None
    origin = url_origin(git_url)
    if origin is None or url_origin(f"{origin[0]}://{credential.host}/") != origin:
        return None
    username = credential.username or DEFAULT_TOKEN_USERNAME
    return HttpAuth(origin=origin, username=username, secret=credential.secret)


@dataclass
class GitSetup:
    """What every git command of one job runs with: `-c` flags, environment and inherited fds,
    and the credential the agent's own HTTP requests (LFS) may send to the clone URL's host."""

    flags: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    removed_env: tuple[str, ...] = ()
    http_auth: HttpAuth | None = field(default=None, repr=False)

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {name: value for name, value in base.items() if name not in self.removed_env}
        env.update(self.env)
        return env


def secrets_root(storage_path: str) -> str:
    """The agent's own folder for jobs' secrets, in the temporary folder: not in the storage,
    whose backups and listings it must stay out of."""
    digest = hashlib.sha256(os.path.abspath(storage_path).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"{SECRETS_FOLDER}-{os.geteuid()}-{digest}")


def _private_root(storage_path: str) -> str:
    """`secrets_root`, made 0700 if missing; refused unless it is a folder of this user's that
    nobody else may enter (another user of a shared /tmp could have made it first)."""
    root = secrets_root(storage_path)
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PermissionError(errno.EACCES, "the secrets folder is not private", root)
    return root


def sweep_secrets(storage_path: str) -> list[str]:
    """Remove what jobs of an agent that died left in the secrets folder; return their names."""
    root = secrets_root(storage_path)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    if os.path.islink(root):
        return []
    for name in names:
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return names


@contextlib.contextmanager
def job_access(
    access: Access, *, git_url: str, storage_path: str, node_helper: str
) -> Iterator[GitSetup]:
    """The git set-up of one job; its private folder and pipe are gone when the block ends."""
    folder = _job_folder(storage_path)
    fds: list[int] = []
    try:
        home = os.path.join(folder, "home")
        os.mkdir(home, 0o700)
        known_hosts = os.path.join(folder, "known_hosts")
        lines = [access.ssh_known_hosts]
        if access.credential is not None:
            lines.insert(0, access.credential.known_hosts)
        _write_private(known_hosts, "\n".join(line.strip() for line in lines if line.strip()))
        # An empty value first: it clears every helper named before (a repository's config).
        flags = ["-c", "credential.helper="]
        env: dict[str, str] = {}
        removed: tuple[str, ...] = ()
        known_hosts_files = [known_hosts]
        if access.use_node_credentials:
            if node_helper:
                flags += ["-c", f"credential.helper={node_helper}"]
            node_known_hosts = os.path.expanduser("~/.ssh/known_hosts")
            if os.path.exists(node_known_hosts):
                known_hosts_files.append(node_known_hosts)
        else:
            env["HOME"] = home
            env["XDG_CONFIG_HOME"] = home
            removed = ("SSH_AUTH_SOCK",)
        identity = None
        credential = access.credential
        if credential is not None and credential.kind == "ssh-key":
            identity = os.path.join(folder, "key")
            _write_private(identity, credential.secret.strip() + "\n")
        elif credential is not None:
            read_end = _answer_pipe(credential)
            fds.append(read_end)
            scheme = urlsplit(git_url).scheme or "https"
            helper = f"!{shlex.quote(sys.executable)} -I -S {shlex.quote(HELPER_SCRIPT)}"
            flags += ["-c", f"credential.{scheme}://{credential.host}.helper={helper}"]
            env[CREDENTIAL_FD_VARIABLE] = str(read_end)
        env["GIT_SSH_COMMAND"] = ssh_command(
            identity=identity,
            known_hosts_files=known_hosts_files,
            node_keys=access.use_node_credentials and identity is None,
        )
        yield GitSetup(
            flags=flags, env=env, pass_fds=tuple(fds), removed_env=removed,
            http_auth=http_auth(credential, git_url),
        )  # fmt: skip
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        if os.path.exists(folder):
            log_event(logging.ERROR, "job_secrets_left", folder=folder)
        # The last job out removes the agent's folder too; another job's folder keeps it.
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(folder))


def _job_folder(storage_path: str) -> str:
    """A new private folder for one job. Made again when a job that just ended removed the
    agent's folder between its creation and this job's."""
    for _ in range(5):
        try:
            return tempfile.mkdtemp(prefix="job-", dir=_private_root(storage_path))
        except FileNotFoundError:
            continue
    return tempfile.mkdtemp(prefix="job-", dir=_private_root(storage_path))


def ssh_command(*, identity: str | None, known_hosts_files: list[str], node_keys: bool) -> str:
    """The `GIT_SSH_COMMAND` of a job: host keys always checked against `known_hosts_files`;
    only the job's key (`identity`), or with `node_keys` the node's own keys and agent."""
    options = [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "UserKnownHostsFile=" + " ".join(known_hosts_files),
        "UpdateHostKeys=no",
        "CheckHostIP=no",
        "PasswordAuthentication=no",
        "KbdInteractiveAuthentication=no",
        "ControlMaster=no",
        "ControlPath=none",
    ]
    command = ["ssh"]
    if not node_keys:
        command += ["-F", "/dev/null"]
        options += ["GlobalKnownHostsFile=/dev/null", "IdentitiesOnly=yes", "IdentityAgent=none"]
        options.append(f"IdentityFile={identity}" if identity else "IdentityFile=none")
    elif identity:
        options.append(f"IdentityFile={identity}")
    for option in options:
        command += ["-o", option]
    return shlex.join(command)


def _write_private(path: str, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)


def _answer_pipe(credential: GitCredential) -> int:
    """A pipe holding the helper's answers, each ended by a NUL; returns its read end."""
    username = credential.username or DEFAULT_TOKEN_USERNAME
    record = f"username={username}\npassword={credential.secret}\n".encode() + b"\0"
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, record * _ANSWER_COPIES)
    finally:
        os.close(write_end)
    return read_end
