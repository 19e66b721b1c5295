"""Fixtures for the agent's tests: real git, real servers on 127.0.0.1, no Django.

Run them alone with `pytest tests/agent -p no:django --confcutdir=tests/agent`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.git import JobControl
from agent.operations import JobResult, perform
from agent.validation import Job, parse_job
from tests.agent.gitservers import (
    GitDaemon,
    HttpGitServer,
    SilentServer,
    Upstream,
    start_git_daemon,
    start_http_git_server,
    start_silent_server,
)


def config_env(storage: Path, **overrides: str) -> dict[str, str]:
    """Environment for an agent that may reach git servers on 127.0.0.1."""
    env = {
        "AGENT_SERVER_URL": "http://127.0.0.1:9",
        "AGENT_TOKEN": "gfa_test_token",
        "AGENT_STORAGE_PATH": str(storage),
        "AGENT_GIT_ALLOWED_SCHEMES": "git,http,file",
        "AGENT_GIT_ALLOW_PRIVATE_HOSTS": "true",
        "AGENT_GIT_TIMEOUT": "60",
    }
    env.update(overrides)
    return env


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., AgentConfig]:
    def make(**overrides: str) -> AgentConfig:
        config = AgentConfig.from_env(config_env(tmp_path / "data", **overrides))
        config.create_folders()
        return config

    return make


@pytest.fixture
def config(make_config: Callable[..., AgentConfig]) -> AgentConfig:
    return make_config()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """The folder the git servers serve repositories from."""
    path = tmp_path / "served"
    path.mkdir()
    return path


@pytest.fixture
def make_upstream(served: Path) -> Callable[..., Upstream]:
    def make(name: str = "repo", *, files: dict[str, str] | None = None) -> Upstream:
        upstream = Upstream(served, name)
        upstream.commit(files or {"README.md": "hello\n"}, "first")
        return upstream

    return make


@pytest.fixture
def upstream(make_upstream: Callable[..., Upstream]) -> Upstream:
    return make_upstream()


@pytest.fixture
def git_daemon(served: Path) -> Iterator[GitDaemon]:
    daemon = start_git_daemon(served)
    yield daemon
    daemon.stop()


@pytest.fixture
def http_git(served: Path) -> Iterator[HttpGitServer]:
    server = start_http_git_server(served)
    yield server
    server.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = start_silent_server()
    yield server
    server.stop()


def job_data(**overrides: Any) -> dict[str, Any]:
    """A job as the server would send it."""
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "kind": "clone",
        "project_id": str(uuid.uuid4()),
        "git_url": "https://example.com/group/repo.git",
        "branch": "main",
        "target_path": "42_my-project",
        "depth": None,
        "timeout_seconds": 60,
    }
    data.update(overrides)
    return data


def make_job(config: AgentConfig, **overrides: Any) -> Job:
    return parse_job(
        job_data(**overrides),
        allowed_schemes=config.git_allowed_schemes,
        allow_private_hosts=config.git_allow_private_hosts,
    )


def run_job(config: AgentConfig, control: JobControl | None = None, **overrides: Any) -> JobResult:
    """Validate and perform one job, as the runner would."""
    return perform(make_job(config, **overrides), config, control or JobControl())


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry below `root` (not following symlinks) with its content, for exact comparison."""
    entries: dict[str, tuple[str, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            entries[relative] = ("link", str(path.readlink()))
        elif path.is_dir():
            entries[relative] = ("dir", b"")
        else:
            entries[relative] = (oct(path.stat().st_mode), path.read_bytes())
    return entries


def worktree_snapshot(checkout: Path) -> dict[str, tuple[str, bytes | str]]:
    """A checkout's files and what HEAD and its branch point at (fetch may add objects)."""
    files = {k: v for k, v in snapshot(checkout).items() if not k.startswith(".git")}
    git_dir = checkout / ".git"
    files[".git/HEAD"] = ("ref", (git_dir / "HEAD").read_bytes())
    files[".git/index"] = ("index", (git_dir / "index").read_bytes())
    for ref in sorted((git_dir / "refs" / "heads").rglob("*")):
        files[str(ref.relative_to(checkout))] = ("ref", ref.read_bytes())
    return files
