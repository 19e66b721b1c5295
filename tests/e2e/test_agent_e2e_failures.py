"""Jobs that fail for real, end to end: uvicorn server, `python -m agent`, git over 127.0.0.1.

One server (its own database) serves the module; each test has a node, a storage folder and git
servers of its own.

Each failure must reach the user as the protocol's error code, retried only when it is worth
it, and leave nothing behind on the node: no git process, no half-written folder. Then how an
agent stops on SIGTERM with a real server: idle, with a job that outlives the grace period, and
with one that finishes within it.

The disk and permission cases need real file systems: a 2 MB tmpfs as the node's storage, and a
read-only bind mount over its projects root. The tests run as root, which ignores file modes
(CAP_DAC_OVERRIDE), so `chmod` cannot make the root unwritable; running the agent as `nobody`
does not work on this machine either (the interpreter lives under /root, mode 0700, and so do
pytest's temporary folders). A read-only mount is refused by the kernel to root as well (EROFS).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.fleet import ControlPlane, NodeAgents
from tests.support.gitservers import (
    free_port,
    git_processes_mentioning,
    start_gated_relay,
    start_silent_server,
)
from tests.support.jobs import mount, mount_tmpfs, unmount
from tests.support.servers import ServerProcess, UserClient

pytestmark = pytest.mark.e2e

DATA_FOLDERS = ["datasets", "jobs", "outputs", "projects"]


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


def types(user: UserClient, project_id: str) -> list[str]:
    return [event["type"] for event in user.events(project_id)]


def events_of(user: UserClient, project_id: str, event_type: str) -> list[dict]:
    return [event for event in user.events(project_id) if event["type"] == event_type]


def wait_until_ended(user: UserClient, project_id: str, timeout: float = 60) -> dict:
    return user.wait_until(
        project_id,
        lambda s: s["status"] != "pending" and not s["active_job"],
        timeout=timeout,
        what="the job to end for good",
    )


def assert_nothing_left(storage: Path) -> None:
    assert sorted(os.listdir(storage)) == DATA_FOLDERS
    assert os.listdir(storage / "projects") == []


def wait_for_no_git(token: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while git_processes_mentioning(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert git_processes_mentioning(token) == []


# --- Git failures ------------------------------------------------------------------------------


def test_a_branch_that_does_not_exist_is_branch_not_found(plane, node, make_upstream, git_daemon):
    make_upstream("demo").commit({"README.md": "hello\n"})
    node.start_online_agent()

    project = node.clone("branchless", git_daemon.url("demo.git"), branch="nope")["project"]
    status = wait_until_ended(node.user, project["id"])

    assert status["status"] == "failed"
    error = status["last_error"]
    assert (error["code"], error["retryable"]) == ("branch_not_found", False)
    assert "nope" in error["message"] and ".tmp-" not in error["message"]
    assert types(node.user, project["id"]).count("JobLeased") == 1  # not worth a retry
    assert "JobAttemptFailed" not in types(node.user, project["id"])
    assert_nothing_left(node.storage)
    plane.site.manage("rebuild_projections", "--check")


def test_an_unreachable_git_server_is_a_network_error_retried_then_failed(plane, node):
    node.start_online_agent()
    url = f"git://127.0.0.1:{free_port()}/gone.git"  # nothing listens there

    project = node.clone("unreachable", url)["project"]
    status = wait_until_ended(node.user, project["id"])

    assert status["status"] == "failed"
    error = status["last_error"]
    assert (error["code"], error["retryable"]) == ("network_error", True)
    [queued] = events_of(node.user, project["id"], "JobQueued")
    attempts = queued["data"]["max_attempts"]
    assert attempts == 3  # LEASE_MAX_ATTEMPTS
    leased = events_of(node.user, project["id"], "JobLeased")
    assert [event["data"]["attempt"] for event in leased] == list(range(1, attempts + 1))
    retried = events_of(node.user, project["id"], "JobAttemptFailed")
    assert [event["data"]["error"]["code"] for event in retried] == ["network_error"] * (
        attempts - 1
    )
    assert all(event["data"]["error"]["retryable"] for event in retried)
    [failed] = events_of(node.user, project["id"], "JobFailed")
    assert (failed["data"]["attempt"], failed["data"]["error"]["code"]) == (
        attempts,
        "network_error",
    )
    assert_nothing_left(node.storage)
    plane.site.manage("rebuild_projections", "--check")


def test_a_git_server_that_hangs_is_a_timeout_with_no_git_left_behind(plane, node):
    # A server process of the same site that gives each job 3 seconds and one attempt.
    impatient = ServerProcess(plane.site, GIT_JOB_TIMEOUT="3", LEASE_MAX_ATTEMPTS="1")
    user = UserClient(impatient.url, plane.user_token)
    silent = start_silent_server()  # accepts the connection and never says a word
    try:
        node.start_online_agent(server_url=impatient.url)
        url = f"git://127.0.0.1:{silent.port}/hangs.git"

        project = user.clone("hangs", url, node=node.name)["project"]
        status = wait_until_ended(user, project["id"], timeout=30)

        assert status["status"] == "failed"
        error = status["last_error"]
        assert (error["code"], error["retryable"]) == ("timeout", True)
        [leased] = events_of(user, project["id"], "JobLeased")
        [failed] = events_of(user, project["id"], "JobFailed")
        took = datetime.fromisoformat(failed["recorded_at"]) - datetime.fromisoformat(
            leased["recorded_at"]
        )
        assert 3 <= took.total_seconds() <= 15, took
        assert "longer than 3 s" in failed["data"]["error"]["message"]
        wait_for_no_git(url)
        assert_nothing_left(node.storage)
    finally:
        silent.stop()
        node.close()
        user.http.close()
        impatient.stop()


# --- The node's disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(node: NodeAgents) -> Iterator[Path]:
    """The node's storage on a 2 MB tmpfs."""
    node.storage.mkdir()
    mount_tmpfs(node.storage, "2m")
    yield node.storage
    node.close()
    unmount(node.storage)


def test_a_full_disk_is_disk_full_and_leaves_nothing_half_written(
    node, small_disk, make_upstream, git_daemon
):
    make_upstream("large").commit({"data.bin": os.urandom(8 * 1024 * 1024)}, "8 MB of noise")
    node.start_online_agent()

    project = node.clone("large", git_daemon.url("large.git"))["project"]
    status = wait_until_ended(node.user, project["id"])

    assert status["status"] == "failed"
    error = status["last_error"]
    assert (error["code"], error["retryable"]) == ("disk_full", False), error
    assert_nothing_left(small_disk)
    assert shutil.disk_usage(small_disk).used < 64 * 1024  # the partial clone is gone


@pytest.fixture
def read_only_projects(node: NodeAgents) -> Iterator[Path]:
    """The node's projects root mounted read-only over itself."""
    node.projects.mkdir(parents=True)
    mount("--bind", str(node.projects), str(node.projects))
    try:
        mount("-o", "remount,bind,ro", str(node.projects))
    except BaseException:
        unmount(node.projects)
        raise
    yield node.projects
    node.close()
    unmount(node.projects)


def test_a_read_only_projects_root_is_permission_denied(
    node, read_only_projects, make_upstream, git_daemon
):
    make_upstream("demo").commit({"README.md": "hello\n"})
    node.start_online_agent()

    project = node.clone("readonly", git_daemon.url("demo.git"))["project"]
    status = wait_until_ended(node.user, project["id"])

    assert status["status"] == "failed"
    error = status["last_error"]
    assert (error["code"], error["retryable"]) == ("permission_denied", False), error
    assert_nothing_left(node.storage)
    assert git_processes_mentioning(git_daemon.url("demo.git")) == []


# --- SIGTERM -----------------------------------------------------------------------------------


def test_sigterm_on_an_idle_agent_exits_0_with_json_logs(node):
    agent = node.start_online_agent()

    started = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - started < 10

    events = agent.events()
    assert events[0]["event"] == "agent_started"
    assert events[-1]["event"] == "agent_stopped"
    assert {"ts", "level", "event"} <= events[0].keys()
    assert "agent_draining" in [event["event"] for event in events]
    assert sorted(os.listdir(node.storage)) == DATA_FOLDERS


def test_sigterm_releases_a_job_still_running_after_the_grace_period_and_another_agent_ends_it(
    plane, node, make_upstream, git_daemon
):
    upstream = make_upstream("demo")
    head = upstream.commit({"README.md": "hello\n"})
    gate = start_gated_relay(git_daemon.port)  # git connects, and waits there
    try:
        url = gate.url("demo.git")
        # A grace period shorter than a long poll: when it ends, a poll for the free slot is
        # still open on the server, and must not be handed back the job being released.
        first = node.start_online_agent(AGENT_DRAIN_SECONDS="1", AGENT_LEASE_WAIT="5")
        project = node.clone("released", url)["project"]
        first.wait_for("job_started")
        gate.wait_for_connections(1)

        assert first.stop() == 0

        [released] = events_of(node.user, project["id"], "JobLeaseReleased")
        assert released["data"]["reason"] == "agent_shutdown"
        assert node.user.status(project["id"])["active_job"]["state"] == "queued"
        assert types(node.user, project["id"]).count("JobLeased") == 1
        assert not {"JobSucceeded", "JobFailed", "JobAttemptFailed"} & set(
            types(node.user, project["id"])
        )
        wait_for_no_git(url)
        assert_nothing_left(node.storage)
        names = [event["event"] for event in first.events()]
        assert names.index("job_started") < names.index("agent_draining")
        assert names.index("agent_draining") < names.index("job_released")
        assert "job_reported" not in names

        gate.open()
        second = node.start_agent()
        status = node.user.wait_until(
            project["id"], lambda s: s["status"] == "ready", timeout=30, what="the new agent"
        )
        assert status["commit"] == head
        assert types(node.user, project["id"]).count("JobSucceeded") == 1
        assert os.listdir(node.projects) == [project["target_path"]]
        assert second.stop() == 0
        plane.site.manage("rebuild_projections", "--check")
    finally:
        gate.stop()


def test_sigterm_lets_a_job_finish_within_the_grace_period(node, make_upstream, git_daemon):
    upstream = make_upstream("demo")
    head = upstream.commit({"README.md": "hello\n"})
    gate = start_gated_relay(git_daemon.port)
    try:
        agent = node.start_online_agent(AGENT_DRAIN_SECONDS="30")
        project = node.clone("drained", gate.url("demo.git"))["project"]
        gate.wait_for_connections(1)

        agent.process.send_signal(signal.SIGTERM)
        agent.wait_for("agent_draining")
        gate.open()  # the job can go on now, within the grace period

        assert agent.process.wait(timeout=30) == 0
        status = node.user.status(project["id"])
        assert (status["status"], status["commit"]) == ("ready", head)
        assert "JobLeaseReleased" not in types(node.user, project["id"])
        names = [event["event"] for event in agent.events()]
        assert names.index("agent_draining") < names.index("job_reported")
        assert names[-1] == "agent_stopped"
    finally:
        gate.stop()
