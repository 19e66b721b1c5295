"""Fixtures for the agent's tests: real git, real servers on 127.0.0.1, no Django in-process.

The control plane is the real Gitfleet server (uvicorn on a database of its own, started by
`tests/support/servers.py`), one per test module, with a node of its own for each test. `served`
and `git_daemon` come from `tests/support/fixtures.py`, shared with the end-to-end tests. Run
them alone with `pytest tests/agent`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from tests.support.fleet import ControlPlane
from tests.support.gitservers import (
    HttpGitServer,
    SilentServer,
    Upstream,
    start_http_git_server,
    start_silent_server,
)
from tests.support.jobs import config_env
from tests.support.lfsserver import LfsServer, start_lfs_server


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
def http_git(served: Path) -> Iterator[HttpGitServer]:
    server = start_http_git_server(served)
    yield server
    server.stop()


@pytest.fixture
def lfs_server(tmp_path: Path) -> Iterator[LfsServer]:
    """A real Git LFS server (giftless) with local storage."""
    server = start_lfs_server(tmp_path / "lfs-storage")
    yield server
    server.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = start_silent_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    yield plane
    plane.close()
