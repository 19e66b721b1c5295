"""Hermetic git: explicit subprocesses in their own process group, with a scrubbed environment.

Every command runs with an environment built from scratch and with `-c` settings that switch off
what a repository or the host could use to run code or reach elsewhere: hooks, fsmonitor,
redirects, submodule recursion, credential helpers and ssh commands from repository config,
the system and global git config. What a job may authenticate with (its credential, or the
node's own for people granted them, or nothing: a private empty `HOME`, no helper, no SSH
keys or agent) comes from `agent.credentials` as a `GitSetup`.
Symlinks are checked out as symlinks, as git does (`AGENT_GIT_SYMLINKS=false` stores them as
plain files holding the link text); the agent itself never follows one. Git LFS smudging is
always skipped (`GIT_LFS_SKIP_SMUDGE`): `agent.lfs` downloads LFS objects itself, under the URL
policy, and only the agent's own `-c` settings name the LFS filter.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent import children
from agent.config import AgentConfig
from agent.credentials import GitSetup, HttpAuth
from agent.errors import JobCancelled, JobFailure
from agent.logs import logger

GIT = "git"
_KEPT_STDERR_LINES = 200
_MAX_STDERR_LINE_BYTES = 4096

# Variables copied from the agent's own environment; everything else git sees is set below.
_PASSED_THROUGH = (
    "PATH",
    "HOME",
    "TMPDIR",
    "SSH_AUTH_SOCK",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
)


def git_environment(config: AgentConfig) -> dict[str, str]:
    """The whole environment of a git subprocess."""
    env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(
        {
            "LC_ALL": "C",
            "LANG": "C",
            "GIT_ALLOW_PROTOCOL": ":".join(config.git_allowed_schemes),
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            # Set but empty: git then neither runs core.askPass nor falls back to SSH_ASKPASS.
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "SSH_ASKPASS_REQUIRE": "never",
            # Overrides core.sshCommand / core.gitProxy that a repository's config might set.
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            "GIT_PROXY_COMMAND": "",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",
            # git-lfs would fetch from whatever endpoint .lfsconfig names; agent.lfs does it.
            "GIT_LFS_SKIP_SMUDGE": "1",
        }
    )
    return env


def git_config_flags(config: AgentConfig) -> list[str]:
    """`-c` settings for every command; command-line settings beat any repository's config."""
    file_allowed = "file" in config.git_allowed_schemes
    settings = [
        ("core.hooksPath", "/dev/null"),
        ("core.fsmonitor", "false"),
        ("core.symlinks", "true" if config.git_symlinks else "false"),
        ("http.followRedirects", "false"),
        ("protocol.file.allow", "always" if file_allowed else "never"),
        ("protocol.ext.allow", "never"),
        ("submodule.recurse", "false"),
        ("fetch.recurseSubmodules", "false"),
        ("safe.bareRepository", "explicit"),
        ("gc.auto", "0"),
        ("maintenance.auto", "false"),
        ("advice.detachedHead", "false"),
        # An empty value clears any helper list a repository's config set.
        ("credential.helper", ""),
    ]
    flags: list[str] = []
    for key, value in settings:
        flags += ["-c", f"{key}={value}"]
    return flags


@dataclass(frozen=True)
class Progress:
    """One parsed git progress line."""

    phase: str
    percent: int
    objects: int
    bytes: int | None = None


# Numbers are bounded: a hostile server controls "remote:" lines, and int() of a number with
# thousands of digits raises (Python's digit limit). 18 digits keep every count within 2**63.
_PROGRESS_LINE = re.compile(
    r"(?:remote: )?(?P<phase>[A-Z][A-Za-z ]{0,39}?):\s{1,40}(?P<percent>\d{1,3})% "
    r"\((?P<done>\d{1,18})/(?P<total>\d{1,18})\)"
    r"(?:, (?P<amount>\d{1,18}(?:\.\d{1,6})?) (?P<unit>bytes?|KiB|MiB|GiB|TiB))?"
)
MAX_PROGRESS_NUMBER = 2**63 - 1
_PHASES = {
    "receiving objects": "receiving",
    "resolving deltas": "resolving",
    "counting objects": "counting",
    "compressing objects": "compressing",
    "updating files": "checkout",
    "checking out files": "checkout",
}
_UNITS = {"byte": 1, "bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def parse_progress(line: str) -> Progress | None:
    """Parse "Receiving objects:  42% (420/1000), 1.20 MiB | 1.00 MiB/s" and its kin."""
    match = _PROGRESS_LINE.match(line.strip())
    if match is None:
        return None
    name = match["phase"].strip().lower()
    phase = _PHASES.get(name, name.split()[0])
    amount = None
    if match["amount"] is not None:
        amount = min(int(float(match["amount"]) * _UNITS[match["unit"]]), MAX_PROGRESS_NUMBER)
    return Progress(
        phase=phase[:40], percent=min(int(match["percent"]), 100), objects=int(match["done"]),
        bytes=amount,
    )  # fmt: skip


class JobControl:
    """What a running job shares with the loop: progress goes out, cancellation comes in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._progress: dict[str, Any] = {}
        self._cancel_reason: str | None = None

    @property
    def cancel_reason(self) -> str | None:
        """Why the job was cancelled (`lease_lost`, `shutdown`), or None."""
        return self._cancel_reason

    def cancel(self, reason: str) -> None:
        """Stop the job now: SIGKILL the process group of any git it is running."""
        with self._lock:
            if self._cancel_reason is None:
                self._cancel_reason = reason
            processes = [p for p in self._processes if p.returncode is None]
        for process in processes:
            children.signal_group(process.pid, signal.SIGKILL)

    def raise_if_cancelled(self) -> None:
        if self._cancel_reason is not None:
            raise JobCancelled(self._cancel_reason)

    def progress(self) -> dict[str, Any]:
        """The latest progress, in the shape the renew call takes."""
        with self._lock:
            return dict(self._progress)

    def report(self, progress: Progress) -> None:
        with self._lock:
            self._progress.update(
                phase=progress.phase, percent=progress.percent, objects=progress.objects
            )
            if progress.bytes is not None:
                self._progress["bytes"] = progress.bytes

    def attach(self, process: subprocess.Popen[bytes]) -> None:
        """Register a running git, killed at once if the job is (or gets) cancelled."""
        with self._lock:
            self._processes.add(process)
            cancelled = self._cancel_reason is not None
        if cancelled:
            children.signal_group(process.pid, signal.SIGKILL)

    def detach(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.discard(process)


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


class Git:
    """Runs git commands for one job: one config, one control, one deadline for all of them."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        control: JobControl | None = None,
        deadline: float,
        setup: GitSetup | None = None,
    ) -> None:
        self._config = config
        self._control = control or JobControl()
        self._deadline = deadline
        setup = setup or GitSetup(flags=[], env={})
        self._env = setup.environment(git_environment(config))
        self._flags = git_config_flags(config) + setup.flags
        self._pass_fds = setup.pass_fds
        self._http_auth = setup.http_auth
        # Group-write checkouts: everything git creates is group-writable (-1: umask untouched).
        self._umask = 0o002 if config.checkout_group_write else -1

    def add_settings(self, settings: Iterable[tuple[str, str]]) -> None:
        """Add `-c key=value` settings to every later command of this job."""
        for key, value in settings:
            self._flags += ["-c", f"{key}={value}"]

    def report(self, progress: Progress) -> None:
        """Pass progress of work done outside git (LFS downloads) on to the renew loop."""
        self._control.report(progress)

    @property
    def http_auth(self) -> HttpAuth | None:
        """What the agent's own HTTP requests of this job (LFS) may authenticate with."""
        return self._http_auth

    @property
    def environment(self) -> dict[str, str]:
        """The environment git runs with, for helpers (git-lfs) that must see the same."""
        return dict(self._env)

    def run(
        self,
        *args: str,
        repo: str | None = None,
        cwd: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> GitResult:
        """Run `git <args>`; with `repo`, pinned to that checkout (no repository discovery);
        `env` adds variables (a temporary index, a commit's author) to the hermetic environment.

        Raises JobFailure (with a classified code) on a non-zero exit when `check`, JobFailure
        `timeout` when the deadline passes, JobCancelled when the job is cancelled meanwhile.
        """
        self._control.raise_if_cancelled()
        command = [GIT, *self._flags]
        if repo is not None:
            command += [f"--git-dir={os.path.join(repo, '.git')}", f"--work-tree={repo}"]
        command += args
        timeout = min(self._deadline - time.monotonic(), float(self._config.git_timeout))
        if timeout <= 0:
            raise JobFailure("timeout", "the job's time ran out")
        children.become_subreaper()
        process = children.start(
            command,
            cwd=cwd or repo or "/",
            env={**self._env, **env} if env else self._env,
            umask=self._umask,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=self._pass_fds,
        )
        self._control.attach(process)
        stdout = bytearray()
        stderr_lines: deque[str] = deque(maxlen=_KEPT_STDERR_LINES)
        readers = [
            threading.Thread(target=_collect, args=(process.stdout, stdout), daemon=True),
            threading.Thread(
                target=self._read_stderr, args=(process.stderr, stderr_lines), daemon=True
            ),
        ]
        for reader in readers:
            reader.start()
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            children.kill_process_group(process)
        finally:
            self._control.detach(process)
            if process.returncode is None:
                children.kill_process_group(process, grace=0)
            children.forget(process)
            # Whatever is left of the group (a remote helper git did not wait for) goes now.
            children.end_process_group(process)
            for reader in readers:
                reader.join(timeout=5)
        self._control.raise_if_cancelled()
        stderr = "\n".join(stderr_lines)
        if timed_out:
            raise JobFailure("timeout", f"git {args[0]} took longer than {timeout:.0f} s")
        result = GitResult(process.returncode, stdout.decode("utf-8", "replace"), stderr)
        if check and result.returncode != 0:
            raise self.failure(result, where=cwd or repo or "/")
        return result

    def failure(self, result: GitResult, *, where: str) -> JobFailure:
        """The JobFailure for a failed git command that ran in (or wrote to) `where`."""
        failure = classify_failure(result.stderr, returncode=result.returncode)
        if failure.code == "git_error" and disk_full_at(where, result.stderr):
            return JobFailure("disk_full", result.stderr or failure.message)
        return failure

    def _read_stderr(self, stream: Any, lines: deque[str]) -> None:
        """Drain git's stderr to its end whatever it holds: a reader that stopped would leave
        git blocked on a full pipe until the timeout."""
        buffer = b""
        while chunk := stream.read1(65536):
            buffer += chunk
            *complete, buffer = re.split(rb"[\r\n]", buffer)
            # The rest of an overlong line is dropped, so that memory stays bounded.
            buffer = buffer[:_MAX_STDERR_LINE_BYTES]
            for raw in complete:
                self._take_stderr_line(raw[:_MAX_STDERR_LINE_BYTES], lines)
        if buffer:
            self._take_stderr_line(buffer, lines)

    def _take_stderr_line(self, raw: bytes, lines: deque[str]) -> None:
        try:
            line = raw.decode("utf-8", "replace")
            progress = parse_progress(line)
            if progress is not None:
                self._control.report(progress)
            elif line.strip() and not line.startswith("Cloning into "):
                lines.append(line)
        except Exception:
            logger.exception("git_stderr_line_skipped")


def _collect(stream: Any, sink: bytearray) -> None:
    while chunk := stream.read1(65536):
        sink += chunk


def _has_any(text: str, needles: Iterable[str]) -> bool:
    return any(needle in text for needle in needles)


_DISK_FULL = ("no space left on device", "disk quota exceeded")
_AUTH = (
    "terminal prompts disabled",
    "could not read username",
    "could not read password",
    "authentication failed",
    "permission denied (publickey",
    "permission denied (keyboard-interactive",
    "permission denied (password",
    "http basic: access denied",
    "returned error: 401",
    "returned error: 403",
)
# ssh says "Host key verification failed." for both; what precedes it tells them apart.
_HOST_KEY_MISMATCH = (
    "remote host identification has changed",
    "host key for",  # "Host key for [host]:port has changed and you have requested strict …"
)
_HOST_KEY_UNKNOWN = ("host key is known for", "host key verification failed")
_BRANCH_NOT_FOUND = (
    "not found in upstream",
    "couldn't find remote ref",
    "could not find remote branch",
)
_REPOSITORY_NOT_FOUND = (
    "repository not found",
    "' not found",  # fatal: repository 'https://host/x.git/' not found
    "does not appear to be a git repository",
    "repository not exported",
    "no such repository",
    "returned error: 404",
)
_PERMISSION = ("permission denied", "read-only file system", "operation not permitted")
_NETWORK = (
    "could not resolve host",
    "could not resolve proxy",
    "unable to look up",
    "name or service not known",
    "temporary failure in name resolution",
    "connection refused",
    "connection timed out",
    "connection reset",
    "timed out",
    "failed to connect",
    "unable to connect",
    "could not connect",
    "network is unreachable",
    "no route to host",
    "the remote end hung up",
    "early eof",
    "rpc failed",
    "ssl",
    "tls",
    "gnutls",
    "could not read from remote repository",
    "returned error: 5",
)
_CLASSES = (
    ("disk_full", _DISK_FULL),
    ("host_key_mismatch", _HOST_KEY_MISMATCH),
    ("host_key_unknown", _HOST_KEY_UNKNOWN),
    ("auth_failed", _AUTH),
    ("branch_not_found", _BRANCH_NOT_FOUND),
    ("repository_not_found", _REPOSITORY_NOT_FOUND),
    ("permission_denied", _PERMISSION),
    ("network_error", _NETWORK),
)


# Git reports some failed writes without the reason ("error: unable to write file x" when a
# checkout runs out of space); the file system says whether it is full.
_WRITE_FAILED = (
    "unable to write",
    "could not write",
    "failed to write",
    "short write",
    "write error",
    "unable to create",
    "unable to checkout working tree",
)
NEARLY_FULL_BYTES = 1024 * 1024


def disk_full_at(path: str, stderr: str) -> bool:
    """True if git says a write failed and the file system holding `path` is (nearly) full."""
    if not _has_any(stderr.lower(), _WRITE_FAILED):
        return False
    try:
        usage = os.statvfs(path)
    except OSError:
        return False
    out_of_inodes = usage.f_files > 0 and usage.f_favail == 0
    return usage.f_bavail * usage.f_frsize < NEARLY_FULL_BYTES or out_of_inodes


def classify_failure(stderr: str, *, returncode: int | None = None) -> JobFailure:
    """Turn git's stderr into a JobFailure with the protocol's error code."""
    text = stderr.lower()
    message = stderr.strip() or f"git exited with status {returncode}"
    for code, needles in _CLASSES:
        if _has_any(text, needles):
            return JobFailure(code, message)
    return JobFailure("git_error", message)
