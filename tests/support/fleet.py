"""Whole systems of real processes: a server site with its servers, nodes and agents."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.client import AgentClient
from tests.support.servers import AgentProcess, ServerProcess, ServerSite, UserClient

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
        self.storage = tmp_path / "node-storage"
        self.servers: list[ServerProcess] = []
        self.agents: list[AgentProcess] = []
        # The server starts while the user and the node are made: each is a Django start-up.
        self.server = self.start_server(wait=False)
        try:
            accounts = self.site.create_accounts(users=["alice"], nodes=["node-1"])
            self.server.wait_ready()
        except BaseException:
            self.close()
            raise
        self.user_token = accounts.users["alice"]
        self.agent_token = accounts.nodes["node-1"]
        self.user = UserClient(self.server.url, self.user_token)

    def start_server(self, port: int | None = None, *, wait: bool = True) -> ServerProcess:
        server = ServerProcess(self.site, port=port, wait=wait)
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


@dataclass(frozen=True)
class NodeCredentials:
    name: str
    token: str


class ControlPlane:
    """The real server for one test module: a database, uvicorn, a user, and nodes on demand."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.site = ServerSite(tmp_path, **{**FAST_SERVER, **settings})
        server: ServerProcess | None = None
        try:
            # The server starts while the user and a first batch of nodes are made in one
            # process: each is a Django start-up, most of a second.
            server = ServerProcess(self.site, wait=False)
            accounts = self.site.create_accounts(users=["alice"], nodes=self._node_names(8))
            server.wait_ready()
        except BaseException:
            if server is not None:
                server.stop()
            self.site.close()
            raise
        self.server = server
        self.user_token = accounts.users["alice"]
        self._spare = [NodeCredentials(name, token) for name, token in accounts.nodes.items()]
        self.url = self.server.url
        self.user = UserClient(self.url, self.user_token)

    def new_node(self, *, online: bool = True) -> NodeCredentials:
        """A node no other test uses; `online` (one heartbeat) so that clones may target it."""
        if not self._spare:
            names = self._node_names(8)
            made = self.site.create_accounts(nodes=names).nodes
            self._spare = [NodeCredentials(name, made[name]) for name in names]
        node = self._spare.pop()
        if online:
            client = AgentClient(self.url, node.token)
            try:
                client.heartbeat(
                    instance_id=str(uuid.uuid4()), hostname="setup", disk_free_bytes=0,
                    running_jobs=[],
                )  # fmt: skip
            finally:
                client.close()
        return node

    @staticmethod
    def _node_names(count: int) -> list[str]:
        return [f"node-{uuid.uuid4().hex[:10]}" for _ in range(count)]

    def clone(self, node: NodeCredentials, git_url: str, **extra: Any) -> dict[str, Any]:
        """Ask for a clone onto `node` as the user would; returns the project and its job."""
        name = extra.pop("name", f"p-{uuid.uuid4().hex[:8]}")
        return self.user.clone(name, git_url, node=node.name, **extra)

    def event_types(self, project_id: str) -> list[str]:
        return [event["type"] for event in self.user.events(project_id)]

    def listed_node(self, name: str) -> dict[str, Any]:
        """The node as the user API lists it."""
        nodes = self.user.http.get("/api/v1/nodes/", params={"limit": 1000}).json()["results"]
        return next(node for node in nodes if node["name"] == name)

    def events_of(self, project_id: str, event_type: str) -> list[dict[str, Any]]:
        return [event for event in self.user.events(project_id) if event["type"] == event_type]

    def close(self) -> None:
        self.user.http.close()
        self.server.stop()
        self.site.close()


class NodeAgents:
    """A node of its own on a shared control plane: its storage and the `python -m agent`
    processes run for it (JSON logs, `wait_for(event)`), stopped at `close()`."""

    def __init__(self, plane: ControlPlane, tmp_path: Path) -> None:
        self.plane = plane
        self.user = plane.user
        self.credentials = plane.new_node(online=False)
        self.name = self.credentials.name
        self.storage = tmp_path / "node-storage"
        self.projects = self.storage / "projects"
        self.agents: list[AgentProcess] = []

    def start_agent(self, *, server_url: str | None = None, **settings: str) -> AgentProcess:
        agent = AgentProcess(
            server_url or self.plane.url, self.credentials.token, self.storage, **settings
        )
        self.agents.append(agent)
        return agent

    def start_online_agent(self, *, server_url: str | None = None, **settings: str) -> AgentProcess:
        """An agent the server already counts as online, so that clones onto its node are taken."""
        agent = self.start_agent(server_url=server_url, **settings)
        deadline = time.monotonic() + 15
        while not self.plane.listed_node(self.name)["online"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"the node never came online:\n{agent.log()}")
            time.sleep(0.1)
        return agent

    def clone(self, name: str, git_url: str, **extra: Any) -> dict[str, Any]:
        return self.user.clone(name, git_url, node=self.name, **extra)

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
