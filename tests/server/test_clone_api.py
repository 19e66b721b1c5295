"""POST /api/v1/projects/clone: creates the project and queues its clone."""

import pytest

from projects.models import Event, Job, Project
from tests.support.api import (
    assert_projections_match_log,
    clone_body,
    event_types,
    other_uuid_spellings,
)

pytestmark = pytest.mark.django_db


def test_clone_answers_202_with_pending_project_and_queued_job(api, node, user):
    response = api.post("/api/v1/projects/clone", clone_body(), format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["project"]["status"] == "pending"
    assert body["project"]["target_path"] == f"{user.pk}_demo"
    assert body["project"]["node"] == {
        "id": str(node.pk),
        "name": "node-1",
        "enabled": True,
        "online": True,
    }
    assert body["job"]["kind"] == "clone"
    assert body["job"]["state"] == "queued"
    assert body["job"]["attempt"] == 0
    assert event_types(body["project"]["id"]) == ["ProjectCreated", "JobQueued"]
    assert_projections_match_log()


def test_clone_accepts_node_by_id_and_depth(api, node):
    response = api.post(
        "/api/v1/projects/clone", clone_body(node=str(node.pk), depth=1), format="json"
    )

    assert response.status_code == 202, response.content
    assert response.json()["project"]["depth"] == 1


def test_duplicate_live_name_answers_409_and_records_nothing(api, node):
    assert api.post("/api/v1/projects/clone", clone_body(), format="json").status_code == 202
    events_before = Event.objects.count()

    response = api.post("/api/v1/projects/clone", clone_body(), format="json")

    assert response.status_code == 409
    assert response.json()["fields"] == {"name": ["You already have a project named 'demo'."]}
    assert Event.objects.count() == events_before
    assert Project.objects.count() == 1


def test_same_name_is_fine_for_another_user(api, api_for, make_user, node):
    assert api.post("/api/v1/projects/clone", clone_body(), format="json").status_code == 202
    bob = api_for(make_user("bob"))

    assert bob.post("/api/v1/projects/clone", clone_body(), format="json").status_code == 202


def test_offline_node_answers_409_naming_the_node(api, make_node):
    make_node("sleepy", online=False)

    response = api.post("/api/v1/projects/clone", clone_body(node="sleepy"), format="json")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "node_offline"
    assert "sleepy" in body["error"] and "offline" in body["error"]
    assert body["fields"]["node"]
    assert not Event.objects.exists() and not Job.objects.exists()


def test_disabled_node_answers_409(api, node):
    node.enabled = False
    node.save()

    response = api.post("/api/v1/projects/clone", clone_body(), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "node_disabled"
    assert not Event.objects.exists()


def test_unknown_node_answers_400_naming_the_field(api, node):
    response = api.post("/api/v1/projects/clone", clone_body(node="nope"), format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"node": ["No node named 'nope'."]}


def test_node_id_spelled_other_than_canonically_is_an_unknown_node(api, node):
    for spelling in other_uuid_spellings(node.pk):
        response = api.post("/api/v1/projects/clone", clone_body(node=spelling), format="json")

        assert response.status_code == 400, (spelling, response.content)
        assert response.json()["fields"] == {"node": [f"No node named {spelling!r}."]}
    assert Project.objects.count() == 0 and Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # the agent's calls run on the pool's own connections
def test_the_202_stands_when_an_agent_finished_the_clone_before_it_was_written(
    api, agent, node, monkeypatch
):
    # A waiting agent is woken at the commit and may lease and finish the job before the
    # request that queued it has built its answer.
    from projects.api import views
    from tests.support.api import AgentSession

    queue_clone = views.services.request_clone

    def and_an_agent_is_quick(**kwargs):
        project = queue_clone(**kwargs)
        session = AgentSession(agent)
        leased = session.lease().json()
        assert session.succeed(leased["job"]["id"], leased["lease"]["token"]).status_code == 200
        return project

    monkeypatch.setattr(views.services, "request_clone", and_an_agent_is_quick)
    response = api.post("/api/v1/projects/clone", clone_body(), format="json")

    assert response.status_code == 202, response.content
    assert response.json()["job"]["state"] == "succeeded"
    assert response.json()["project"]["status"] == "ready"
