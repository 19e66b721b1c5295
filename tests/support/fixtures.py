"""Fixtures shared by the server, agent and end-to-end tests (a pytest plugin of the root
`conftest.py`): fleets of real processes and git served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fleet import Fleet
from tests.support.gitservers import GitDaemon, Upstream, start_git_daemon


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.close()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    path = tmp_path / "served"
    path.mkdir()
    return path


@pytest.fixture
def git_daemon(served: Path) -> Iterator[GitDaemon]:
    daemon = start_git_daemon(served)
    yield daemon
    daemon.stop()


@pytest.fixture
def make_upstream(served: Path) -> Callable[..., Upstream]:
    def make(name: str = "demo", branch: str = "main") -> Upstream:
        return Upstream(served, name, branch=branch)

    return make
