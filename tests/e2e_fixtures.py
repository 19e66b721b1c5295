"""Fixtures for end-to-end tests: a real server, a real agent, real git served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent.gitservers import GitDaemon, Upstream, start_git_daemon
from tests.servers import AgentProcess, ServerProcess, ServerSite, UserClient

# Short leases and timers so that expiry and recovery happen within a test's time.
FAST_SERVER = {
    "LEASE_SECONDS": "6",
    "LEASE_RENEW_SECONDS": "1",
    "SWEEP_SECONDS": "1",
    "LONG_POLL_RECHECK_SECONDS": "1",
    "RETRY_BACKOFF_SECONDS": "0",
    "NODE_PRESENCE_WRITE_SECONDS": "1",
}


class Fleet:
    """One server site with a user, a node and the means to start servers and agents."""

    def __init__(self, tmp_path: Path, **server_settings: str):
        self.tmp_path = tmp_path
        self.site = ServerSite(tmp_path, **{**FAST_SERVER, **server_settings})
        self.user_token = self.site.create_user_token("alice")
        self.agent_token = self.site.create_node("node-1")
        self.storage = tmp_path / "node-storage"
        self.servers: list[ServerProcess] = []
        self.agents: list[AgentProcess] = []
        self.server = self.start_server()
        self.user = UserClient(self.server.url, self.user_token)

    def start_server(self, port: int | None = None) -> ServerProcess:
        server = ServerProcess(self.site, port=port)
        self.servers.append(server)
        return server

    def start_agent(self, **settings: str) -> AgentProcess:
        """Starts an agent and returns once the server has seen its node online, so that a
        clone asked for next is not refused as offline while the first heartbeat travels."""
        agent = AgentProcess(self.server.url, self.agent_token, self.storage, **settings)
        self.agents.append(agent)
        self.user.wait_for_node_online("node-1")
        return agent

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        for server in self.servers:
            server.stop()
        self.site.close()


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
