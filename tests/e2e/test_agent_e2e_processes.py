"""Real `python -m agent` processes: what they leave behind, and what a killed one leaves to
the next.

A git that fails over http(s) exits without waiting for its remote helper (`git-remote-https`);
the agent, a child subreaper, adopts the helper and must reap it, or every failed attempt leaves
one zombie and anyone who can ask for clones can exhaust the node's process limit. An agent
killed with a job running is replaced by a new instance whose first call gives the old leases
back (`agent_restarted`) at once: the job is not left to expire, and no attempt is spent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet import ControlPlane, NodeAgents
from tests.support.gitservers import free_port, start_gated_relay, start_http_git_server

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


def test_a_killed_agents_lease_is_given_back_by_the_next_instance_without_spending_an_attempt(
    plane, node, make_upstream, git_daemon
):
    upstream = make_upstream("demo")
    head = upstream.commit({"README.md": "hello\n"})
    gate = start_gated_relay(git_daemon.port)
    try:
        first = node.start_online_agent()
        project = node.clone("restarted", gate.url("demo.git"))["project"]
        first.wait_for("job_started")
        gate.wait_for_connections(1)
        first.kill()  # no drain, no release: as an OOM kill or a power cut would

        gate.open(waiting=False)  # the killed agent's git stays stalled; new clones get through
        second = node.start_agent()
        status = node.user.wait_until(
            project["id"], lambda s: s["status"] == "ready", timeout=30, what="the new agent"
        )

        assert status["commit"] == head
        [released] = [e for e in node.user.events(project["id"]) if e["type"] == "JobLeaseReleased"]
        assert released["data"]["reason"] == "agent_restarted"
        types = [e["type"] for e in node.user.events(project["id"])]
        assert "JobLeaseExpired" not in types and "JobAttemptFailed" not in types
        assert second.stop() == 0
    finally:
        gate.stop()
