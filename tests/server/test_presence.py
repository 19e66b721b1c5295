"""Nodes go online with agent calls, offline with silence; offline work waits, then expires."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from nodes.models import Node
from projects import leases
from projects.models import Job
from tests.support.api import AgentSession, assert_projections_match_log, clone_body

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_heartbeat_brings_a_node_online_with_its_details(api, make_node):
    from tests.support.api import bearer_client

    node, token = make_node("fresh", online=False)
    assert api.get(f"/api/v1/nodes/{node.pk}").json()["online"] is False

    response = AgentSession(bearer_client(token)).heartbeat(
        agent_version="1.2.3", hostname="gpu-07", disk_free_bytes=123
    )

    assert response.status_code == 200
    assert response.json()["online_window_seconds"] == 90
    body = api.get(f"/api/v1/nodes/{node.pk}").json()
    assert body["online"] is True and body["accepts_work"] is True
    assert (body["agent_version"], body["hostname"], body["disk_free_bytes"]) == (
        "1.2.3",
        "gpu-07",
        123,
    )


def test_silence_longer_than_the_window_makes_a_node_offline(api, node, settings):
    Node.objects.filter(pk=node.pk).update(
        last_seen_at=timezone.now() - timedelta(seconds=settings.NODE_ONLINE_WINDOW + 1)
    )

    listed = {n["name"]: n for n in api.get("/api/v1/nodes/").json()["results"]}

    assert listed["node-1"]["online"] is False
    assert api.post("/api/v1/projects/clone", clone_body(), format="json").status_code == 409


def test_lease_calls_count_as_presence_but_write_it_throttled(agent, node):
    session = AgentSession(agent)
    session.lease()
    first = Node.objects.get(pk=node.pk).last_seen_at

    session.lease()

    assert Node.objects.get(pk=node.pk).last_seen_at == first


def test_queued_jobs_wait_for_an_offline_node_then_expire_with_a_reason(api, node, settings):
    project = api.post("/api/v1/projects/clone", clone_body(), format="json").json()["project"]
    gone = timezone.now() - timedelta(seconds=settings.QUEUED_JOB_TTL + 60)
    Node.objects.filter(pk=node.pk).update(last_seen_at=gone)

    assert leases.expire_queued() == 0  # not waited long enough yet
    settings.QUEUED_JOB_TTL = 0
    call_command("sweep_jobs")

    job = Job.objects.get(project_id=project["id"])
    assert job.state == "failed"
    assert job.error["code"] == "node_unavailable"
    assert "node-1 stayed offline" in job.error["message"]
    status = api.get(f"/api/v1/projects/{project['id']}/status").json()
    assert status["status"] == "failed"
    assert_projections_match_log()


def test_queued_jobs_of_an_online_node_never_expire(api, node, settings):
    api.post("/api/v1/projects/clone", clone_body(), format="json")
    settings.QUEUED_JOB_TTL = 0

    assert leases.expire_queued() == 0
    assert Job.objects.get().state == "queued"
