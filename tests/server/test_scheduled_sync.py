"""Scheduled sync: `sync_interval` set at clone or by PATCH, and the sweepers queueing exactly
one pull per period, also with two server processes sweeping the same database."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from projects.models import Event, Job
from sync import schedule
from sync.models import SyncSchedule
from tests.support.api import clone_body
from tests.support.servers import ServerProcess, ServerSite
from tests.support.sync import HttpAgent, finish_head_job, ready_project


def make_due(project) -> None:
    SyncSchedule.objects.filter(project=project).update(
        next_due_at=timezone.now() - timedelta(seconds=1)
    )


def test_clone_takes_a_sync_interval(api, node):
    response = api.post("/api/v1/projects/clone", clone_body(sync_interval=300), format="json")
    assert response.status_code == 202, response.content
    assert SyncSchedule.objects.get().interval == 300


@pytest.mark.parametrize("bad", [59, 0, -1, "60", 1.5, True, 30 * 86400 + 1])
def test_a_bad_interval_is_400_naming_the_field(api, user, node, bad):
    project = ready_project(user, node, "a", "https://git.example.com/a.git")
    response = api.patch(f"/api/v1/projects/{project.pk}", {"sync_interval": bad}, format="json")
    assert response.status_code == 400, response.content
    assert "sync_interval" in response.json()["fields"]
    clone = api.post("/api/v1/projects/clone", clone_body(sync_interval=bad), format="json")
    assert clone.status_code == 400 and "sync_interval" in clone.json()["fields"]


def test_patch_sets_and_clears_the_interval(api, user, node):
    project = ready_project(user, node, "a", "https://git.example.com/a.git")
    url = f"/api/v1/projects/{project.pk}"
    assert api.get(url).json()["sync_interval"] is None
    assert api.patch(url, {"sync_interval": 60}, format="json").json() == {"sync_interval": 60}
    assert SyncSchedule.objects.get(project=project).interval == 60
    assert api.get(url).json()["sync_interval"] == 60
    assert api.patch(url, {"sync_interval": None}, format="json").json() == {"sync_interval": None}
    assert not SyncSchedule.objects.exists()


def test_someone_elses_project_is_404(api_for, make_user, user, node):
    project = ready_project(user, node, "a", "https://git.example.com/a.git")
    other = api_for(make_user("bob"))
    response = other.patch(f"/api/v1/projects/{project.pk}", {"sync_interval": 60}, format="json")
    assert response.status_code == 404


def test_a_due_project_gets_one_pull_per_period(user, node):
    project = ready_project(user, node, "a", "https://git.example.com/a.git")
    schedule.set_sync_interval(project=project, interval=60)
    assert schedule.queue_due_pulls() == 0  # not due yet
    make_due(project)
    now = timezone.now()
    assert schedule.queue_due_pulls(now) == 1
    finish_head_job(node, project)  # the pull ran: only the period now stops another
    assert schedule.queue_due_pulls(now) == 0
    assert schedule.queue_due_pulls(now + timedelta(seconds=61)) == 1
    queued = Event.objects.filter(project_id=project.pk, type="JobQueued", data__kind="pull")
    assert [event.meta["cause"] for event in queued] == [{"kind": "schedule"}] * 2


def test_no_pull_is_added_while_one_is_queued_or_running(user, node):
    project = ready_project(user, node, "a", "https://git.example.com/a.git")
    schedule.set_sync_interval(project=project, interval=60)
    make_due(project)
    assert schedule.queue_due_pulls() == 1
    make_due(project)
    assert schedule.queue_due_pulls() == 0
    assert Job.objects.filter(project=project, kind="pull").count() == 1


def test_projects_without_an_interval_are_never_pulled(user, node):
    ready_project(user, node, "a", "https://git.example.com/a.git")
    assert schedule.queue_due_pulls(timezone.now() + timedelta(days=365)) == 0


@pytest.mark.e2e
def test_two_server_processes_queue_exactly_one_pull_per_period(tmp_path):
    site = ServerSite(tmp_path)
    servers = []
    try:
        accounts = site.create_accounts(users=["alice"], nodes=["node-1"])
        token, agent_token = accounts.users["alice"], accounts.nodes["node-1"]
        servers = [ServerProcess(site, SWEEP_SECONDS="1") for _ in range(2)]
        person = httpx.Client(
            base_url=servers[0].url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        agent = HttpAgent(servers[1].url, agent_token)
        agent.heartbeat()
        body = {"name": "p", "git_url": "https://git.example.com/r.git", "branch": "main"}
        created = person.post("/api/v1/projects/clone", json={**body, "node": "node-1"})
        assert created.status_code == 202, created.text
        project_id = created.json()["project"]["id"]
        agent.succeed(agent.lease())
        assert person.patch(f"/api/v1/projects/{project_id}", json={"sync_interval": 60}).json()
        site.manage(
            "shell",
            "-c",
            "from datetime import timedelta; from django.utils import timezone; "
            "from sync.models import SyncSchedule; "
            "SyncSchedule.objects.update(next_due_at=timezone.now() - timedelta(seconds=1))",
        )
        # Both processes sweep every second; the pull they queue is run at once, so only the
        # claim of the period stops a second one.
        deadline = time.monotonic() + 8
        pulls = 0
        while time.monotonic() < deadline:
            leased = agent.lease(wait=1)
            if leased.get("job"):
                assert leased["job"]["kind"] == "pull"
                pulls += 1
                agent.succeed(leased)
        events = person.get(f"/api/v1/projects/{project_id}/events", params={"limit": 1000})
        queued = [e for e in events.json()["results"] if e["type"] == "JobQueued"]
        assert [e["data"]["kind"] for e in queued] == ["clone", "pull"]
        assert pulls == 1
    finally:
        for server in servers:
            server.stop()
        site.close()
