"""Fixtures for the agent's tests: real git, real servers on 127.0.0.1, no Django in-process.

The control plane is the real Gitfleet server (uvicorn on a database of its own, started by
`tests/servers.py`), one per test module, with a node of its own for each test. `served` and
`git_daemon` come from `tests/e2e_fixtures.py`, shared with the end-to-end tests. Run them alone
with `pytest tests/agent`.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.client import AgentClient
from agent.config import AgentConfig
from agent.git import JobControl
from agent.operations import JobResult, perform
from agent.validation import Job, parse_job
from tests.agent.gitservers import (
    HttpGitServer,
    SilentServer,
    Upstream,
    start_http_git_server,
    start_silent_server,
)
from tests.e2e_fixtures import FAST_SERVER
from tests.servers import AgentProcess, ServerProcess, ServerSite, UserClient


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


def make_deep_folders(root: Path, levels: int, name: str, content: bytes) -> None:
    """`root/d/d/.../d/<name>`, `levels` folders deep, made relative to each folder's fd."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(file_fd, content)
        os.close(file_fd)
    finally:
        os.close(fd)


def read_deep_file(root: Path, levels: int, name: str) -> bytes:
    """The file that `make_deep_folders` made, read the same way."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            return os.read(file_fd, 1024)
        finally:
            os.close(file_fd)
    finally:
        os.close(fd)


def mount(*args: str) -> None:
    """`mount args...`; the test is skipped, saying why, where mounting is not permitted."""
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return
    refused = ("permission denied", "only root", "not permitted", "must be superuser")
    if os.geteuid() != 0 or any(word in done.stderr.lower() for word in refused):
        pytest.skip(f"mounting is not permitted here: {done.stderr.strip()}")
    raise AssertionError(f"mount {' '.join(args)} failed: {done.stderr}")


def unmount(target: Path) -> None:
    done = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0:  # still busy: detach it now, the kernel frees it when it can
        subprocess.run(["umount", "--lazy", str(target)], check=True)


def mount_tmpfs(target: Path, size: str) -> None:
    """A tmpfs of `size` (e.g. "2m") on `target`: a small disk that fills up for real."""
    mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target))


def worktree_snapshot(checkout: Path) -> dict[str, tuple[str, bytes | str]]:
    """A checkout's files and what HEAD and its branch point at (fetch may add objects)."""
    files = {k: v for k, v in snapshot(checkout).items() if not k.startswith(".git")}
    git_dir = checkout / ".git"
    files[".git/HEAD"] = ("ref", (git_dir / "HEAD").read_bytes())
    files[".git/index"] = ("index", (git_dir / "index").read_bytes())
    for ref in sorted((git_dir / "refs" / "heads").rglob("*")):
        files[str(ref.relative_to(checkout))] = ("ref", ref.read_bytes())
    return files


@dataclass(frozen=True)
class NodeCredentials:
    name: str
    token: str


class ControlPlane:
    """The real server for one test module: a database, uvicorn, a user, and nodes on demand."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.site = ServerSite(tmp_path, **{**FAST_SERVER, **settings})
        try:
            self.user_token = self.site.create_user_token("alice")
            self.server = ServerProcess(self.site)
        except BaseException:
            self.site.close()
            raise
        self.url = self.server.url
        self.user = UserClient(self.url, self.user_token)
        self._spare: list[NodeCredentials] = []

    def new_node(self, *, online: bool = True) -> NodeCredentials:
        """A node no other test uses; `online` (one heartbeat) so that clones may target it."""
        if not self._spare:
            self._spare = self._create_nodes(8)
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

    def _create_nodes(self, count: int) -> list[NodeCredentials]:
        # One management command for a batch: each process start costs most of a second.
        names = [f"node-{uuid.uuid4().hex[:10]}" for _ in range(count)]
        output = self.site.manage(
            "shell",
            "-c",
            "from nodes.services import create_node\n"
            f"for name in {names!r}:\n"
            "    print(name, create_node(name=name)[1])",
        )
        pairs = [line.split() for line in output.splitlines() if line.startswith("node-")]
        return [NodeCredentials(name, token) for name, token in pairs]

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


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    yield plane
    plane.close()
