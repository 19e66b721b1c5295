"""The whole system for real: uvicorn server, `python -m agent`, git served by `git daemon`.

Each test drives Gitfleet as people do (the user API over HTTP) and checks what the node's disk
and the event log say afterwards.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.support.gitservers import git_processes_mentioning

pytestmark = pytest.mark.e2e


def types(user, project_id: str) -> list[str]:
    return [event["type"] for event in user.events(project_id)]


def test_clone_pull_delete_through_a_real_agent(fleet, make_upstream, git_daemon):
    upstream = make_upstream("demo")
    first = upstream.commit({"README.md": "hello\n", "src/model.py": "print(1)\n"}, "first")
    fleet.start_agent()

    project = fleet.user.clone("demo", git_daemon.url("demo.git"))["project"]
    status = fleet.user.wait_until(project["id"], lambda s: s["status"] != "pending", what="clone")

    assert status["status"] == "ready", status
    assert status["commit"] == first
    assert status["branch"] == "main"
    checkout = fleet.storage / "projects" / project["target_path"]
    assert status["local_path"] == str(checkout)
    assert (checkout / "src" / "model.py").read_text() == "print(1)\n"
    assert project["target_path"].endswith("_demo")
    assert sorted(p.name for p in fleet.storage.iterdir()) == [
        "datasets",
        "jobs",
        "outputs",
        "projects",
    ]

    second = upstream.commit({"README.md": "hello again\n"}, "second")
    assert fleet.user.http.post(f"/api/v1/projects/{project['id']}/pull").status_code == 202
    status = fleet.user.wait_until(project["id"], lambda s: s["commit"] == second, what="pull")
    assert (checkout / "README.md").read_text() == "hello again\n"

    assert fleet.user.http.delete(f"/api/v1/projects/{project['id']}").status_code == 202
    fleet.user.wait_until(project["id"], lambda s: s["status"] == "deleted", what="delete")
    assert not checkout.exists()
    assert os.listdir(fleet.storage / "projects") == []

    timeline = [t for t in types(fleet.user, project["id"]) if t != "JobLeaseRenewed"]
    assert timeline == [
        "ProjectCreated",
        "JobQueued",
        "JobLeased",
        "JobSucceeded",
        "JobQueued",
        "JobLeased",
        "JobSucceeded",
        "JobQueued",
        "JobLeased",
        "JobSucceeded",
    ]
    succeeded = [e for e in fleet.user.events(project["id"]) if e["type"] == "JobSucceeded"]
    assert [e["data"]["result"]["commit"] for e in succeeded] == [first, second, ""]
    assert all(e["meta"]["node_id"] for e in succeeded)
    fleet.site.manage("rebuild_projections", "--check")


def test_kill_9_mid_clone_then_lease_expiry_and_a_restarted_agent_finish_it_once(
    fleet, make_upstream, git_daemon
):
    upstream = make_upstream("big")
    for index in range(4):  # ~32 MB of incompressible history: a clone takes a moment
        upstream.commit({f"blob{index}.bin": os.urandom(8 * 1024 * 1024)}, f"blob {index}")
    agent = fleet.start_agent()

    project = fleet.user.clone("big", git_daemon.url("big.git"))["project"]
    agent.wait_for("job_started")
    agent.kill()

    status = fleet.user.wait_until(
        project["id"],
        lambda s: s["active_job"] and s["active_job"]["state"] == "queued",
        timeout=30,
        what="the lease to expire",
    )
    assert status["active_job"]["attempt"] == 1
    assert "JobLeaseExpired" in types(fleet.user, project["id"])

    restarted = fleet.start_agent()
    status = fleet.user.wait_until(
        project["id"], lambda s: s["status"] != "pending", timeout=90, what="the second attempt"
    )

    assert status["status"] == "ready", status
    assert status["commit"] == upstream.head()
    leased = [e for e in fleet.user.events(project["id"]) if e["type"] == "JobLeased"]
    assert [e["data"]["attempt"] for e in leased] == [1, 2]
    assert types(fleet.user, project["id"]).count("JobSucceeded") == 1
    projects = fleet.storage / "projects"
    assert sorted(os.listdir(projects)) == [project["target_path"]]  # no temp folder left
    restarted.stop()
    fleet.site.manage("rebuild_projections", "--check")


def test_the_agent_backs_off_while_the_server_is_down_and_recovers(
    fleet, make_upstream, git_daemon
):
    upstream = make_upstream("demo")
    head = upstream.commit({"a.txt": "a\n"})
    agent = fleet.start_agent()
    port = fleet.server.port

    fleet.server.stop()
    time.sleep(4)  # the agent's calls fail; it backs off
    fleet.server = fleet.start_server(port=port)
    project = fleet.user.clone("demo", git_daemon.url("demo.git"))["project"]

    status = fleet.user.wait_until(
        project["id"], lambda s: s["status"] == "ready", timeout=60, what="the agent to come back"
    )
    assert status["commit"] == head
    assert agent.process.poll() is None, "the agent restarted or died instead of recovering"
    warnings = [e for e in agent.events() if e.get("level") in ("WARNING", "warning")]
    assert warnings, "no sign of backing off in the agent's log"


def test_a_job_cancelled_while_running_is_stopped_at_the_next_renewal(fleet, tmp_path):
    from tests.support.gitservers import start_silent_server

    silent = start_silent_server()  # git connects and then waits forever
    try:
        agent = fleet.start_agent()
        url = f"git://127.0.0.1:{silent.port}/never.git"
        accepted = fleet.user.clone("stuck", url)
        project, job = accepted["project"], accepted["job"]
        agent.wait_for("job_started")
        assert git_processes_mentioning(url), "git should be running now"

        response = fleet.user.http.post(f"/api/v1/projects/{project['id']}/jobs/{job['id']}/cancel")
        assert response.status_code == 202

        agent.wait_for("job_lease_lost", timeout=20)
        agent.wait_for("job_stopped", timeout=20, reason="lease_lost")  # killed and cleaned up
        deadline = time.monotonic() + 10
        while git_processes_mentioning(url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert git_processes_mentioning(url) == []
        assert os.listdir(fleet.storage / "projects") == []
        status = fleet.user.status(project["id"])
        assert status["status"] == "failed" and status["last_error"]["code"] == "cancelled"
        assert "JobSucceeded" not in types(fleet.user, project["id"])
        assert "JobFailed" not in types(fleet.user, project["id"])
    finally:
        silent.stop()


def test_nodes_show_online_while_the_agent_runs(fleet):
    fleet.start_agent()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        nodes = httpx.get(
            f"{fleet.server.url}/api/v1/nodes/",
            headers={"Authorization": f"Bearer {fleet.user_token}"},
        ).json()
        if nodes["results"][0]["online"] and nodes["results"][0]["agent_version"]:
            break
        time.sleep(0.2)
    node = nodes["results"][0]
    assert node["online"] is True
    assert node["agent_version"] == "0.1.0"
    assert node["disk_free_bytes"] > 0
