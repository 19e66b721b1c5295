"""The processes a real `python -m agent` leaves behind: none, whatever git did.

A git that fails over http(s) exits without waiting for its remote helper (`git-remote-https`);
the agent, a child subreaper, adopts the helper and must reap it, or every failed attempt leaves
one zombie and anyone who can ask for clones can exhaust the node's process limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet import ControlPlane, NodeAgents
from tests.support.gitservers import free_port, start_http_git_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    yield plane
    plane.close()


@pytest.fixture
def node(plane: ControlPlane, tmp_path: Path) -> Iterator[NodeAgents]:
    node = NodeAgents(plane, tmp_path)
    yield node
    node.close()


def children_of(pid: int) -> dict[int, str]:
    """The children of `pid` and their states (`Z` for a zombie), read from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid:
            found[int(stat.parent.name)] = state
    return found


def zombies_of(pid: int) -> list[int]:
    return [child for child, state in children_of(pid).items() if state == "Z"]


def test_failed_http_clones_leave_no_zombie_children_of_the_agent(plane, node, tmp_path):
    not_found = start_http_git_server(tmp_path)  # answers 404 to any repository
    refused = free_port()  # nothing listens there
    try:
        agent = node.start_online_agent(AGENT_GIT_ALLOWED_SCHEMES="https,http")
        urls = [
            f"https://127.0.0.1:{refused}/a.git",
            f"http://127.0.0.1:{refused}/b.git",
            f"{not_found.base_url}/missing/c.git",
            f"{not_found.base_url.replace('http:', 'https:')}/missing/d.git",  # TLS to plain HTTP
        ]
        projects = [node.clone(f"gone-{n}", url)["project"] for n, url in enumerate(urls)]
        for project in projects:
            status = node.user.wait_until(
                project["id"],
                lambda s: s["status"] != "pending" and not s["active_job"],
                timeout=60,
                what="the clone to fail for good",
            )
            assert status["status"] == "failed"

        attempts = sum(1 for e in agent.events() if e.get("event") == "job_started")
        assert attempts >= len(urls)
        deadline = time.monotonic() + 8  # longer than the reaper's period
        while zombies_of(agent.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert zombies_of(agent.process.pid) == []
        assert agent.process.poll() is None
    finally:
        not_found.stop()
