"""Pull, delete, cancel and retry through the user API, and what status and events then say."""

import pytest

from projects.models import Event
from tests.support.api import AgentSession, assert_projections_match_log, clone_body, event_types

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(agent):
    return AgentSession(agent)


@pytest.fixture
def project(api, node):
    response = api.post("/api/v1/projects/clone", clone_body(), format="json")
    assert response.status_code == 202
    return response.json()["project"]


@pytest.fixture
def ready(project, session):
    lease = session.lease().json()
    assert session.succeed(lease["job"]["id"], lease["lease"]["token"]).status_code == 200
    return project


def run_next_job(session, commit="b" * 40):
    lease = session.lease().json()
    response = session.succeed(lease["job"]["id"], lease["lease"]["token"], commit=commit)
    assert response.status_code == 200
    return lease


def test_pull_of_a_pending_project_is_refused(api, project):
    response = api.post(f"/api/v1/projects/{project['id']}/pull")

    assert response.status_code == 409
    assert response.json()["code"] == "not_ready"
    assert event_types(project["id"]) == ["ProjectCreated", "JobQueued"]


def test_pull_queues_a_job_and_success_moves_the_commit(api, ready, session):
    response = api.post(f"/api/v1/projects/{ready['id']}/pull")
    assert response.status_code == 202
    assert response.json()["job"]["kind"] == "pull"

    run_next_job(session, commit="b" * 40)

    status = api.get(f"/api/v1/projects/{ready['id']}/status").json()
    assert status["status"] == "ready" and status["commit"] == "b" * 40
    assert_projections_match_log()


def test_a_second_queued_pull_is_refused(api, ready):
    assert api.post(f"/api/v1/projects/{ready['id']}/pull").status_code == 202

    response = api.post(f"/api/v1/projects/{ready['id']}/pull")

    assert response.status_code == 409
    assert response.json()["code"] == "pull_already_queued"


def test_delete_supersedes_queued_pulls_then_deleted_when_the_node_reports(api, ready, session):
    pull = api.post(f"/api/v1/projects/{ready['id']}/pull").json()["job"]

    response = api.delete(f"/api/v1/projects/{ready['id']}")

    assert response.status_code == 202
    assert response.json()["project"]["status"] == "deleting"
    lease = session.lease().json()
    assert lease["job"]["kind"] == "delete"
    assert (
        session.succeed(lease["job"]["id"], lease["lease"]["token"], commit="").status_code == 200
    )
    status = api.get(f"/api/v1/projects/{ready['id']}/status").json()
    assert status["status"] == "deleted"
    assert status["commit"] == ""
    assert event_types(ready["id"])[-4:] == [
        "JobCancelled",
        "JobQueued",
        "JobLeased",
        "JobSucceeded",
    ]
    assert Event.objects.get(project_id=ready["id"], type="JobCancelled").data == {
        "job_id": pull["id"],
        "reason": "superseded_by_delete",
    }
    assert api.post(f"/api/v1/projects/{ready['id']}/pull").status_code == 409
    assert_projections_match_log()


@pytest.mark.parametrize("body", [{"status": "ready"}, {"force": True, "node": "node-2"}])
def test_delete_with_a_body_that_tries_to_set_something_answers_400(api, project, body):
    events_before = Event.objects.count()

    response = api.delete(f"/api/v1/projects/{project['id']}", body, format="json")

    assert response.status_code == 400, response.content
    assert set(response.json()["fields"]) == set(body)
    assert all(
        r == ["Unknown field; it cannot be set."] for r in response.json()["fields"].values()
    )
    assert Event.objects.count() == events_before


def test_delete_with_an_empty_json_object_is_accepted(api, project):
    response = api.delete(f"/api/v1/projects/{project['id']}", {}, format="json")

    assert response.status_code == 202, response.content


def test_a_deleted_name_can_be_used_again(api, ready, session):
    api.delete(f"/api/v1/projects/{ready['id']}")
    lease = session.lease().json()
    assert (
        session.succeed(lease["job"]["id"], lease["lease"]["token"], commit="").status_code == 200
    )

    assert api.post("/api/v1/projects/clone", clone_body(), format="json").status_code == 202


def test_clone_and_pull_success_without_a_commit_is_refused(session, project):
    lease = session.lease().json()

    response = session.succeed(lease["job"]["id"], lease["lease"]["token"], commit="")

    assert response.status_code == 400
    assert "result.commit" in response.json()["fields"]


def test_cancel_a_queued_clone_fails_the_project_and_retry_queues_it_again(api, project):
    job_id = api.get(f"/api/v1/projects/{project['id']}/status").json()["active_job"]["id"]

    cancelled = api.post(f"/api/v1/projects/{project['id']}/jobs/{job_id}/cancel")

    assert cancelled.status_code == 202
    assert cancelled.json()["job"]["state"] == "cancelled"
    assert cancelled.json()["project"]["status"] == "failed"
    assert cancelled.json()["project"]["last_error"]["code"] == "cancelled"

    retried = api.post(f"/api/v1/projects/{project['id']}/jobs/{job_id}/retry")

    assert retried.status_code == 202
    assert retried.json()["job"]["kind"] == "clone"
    assert retried.json()["project"]["status"] == "pending"
    assert_projections_match_log()


def test_cancelling_a_finished_job_is_refused(api, ready):
    job_id = Event.objects.get(project_id=ready["id"], type="JobSucceeded").data["job_id"]

    response = api.post(f"/api/v1/projects/{ready['id']}/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert response.json()["code"] == "job_finished"


def test_unknown_job_answers_404(api, project):
    response = api.post(
        f"/api/v1/projects/{project['id']}/jobs/00000000-0000-0000-0000-000000000000/cancel"
    )
    assert response.status_code == 404


def test_events_are_the_timeline_oldest_first_and_paginated(api, ready):
    response = api.get(f"/api/v1/projects/{ready['id']}/events?limit=2")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    assert [e["type"] for e in body["results"]] == ["ProjectCreated", "JobQueued"]
    assert [e["version"] for e in body["results"]] == [1, 2]
    rest = api.get(body["next"]).json()["results"]
    assert [e["type"] for e in rest] == ["JobLeased", "JobSucceeded"]
    assert rest[1]["meta"]["node_id"]


def test_status_shows_the_node_online_and_the_running_job(api, project, session, node):
    lease = session.lease().json()
    session.renew(lease["job"]["id"], lease["lease"]["token"], {"phase": "receiving", "percent": 5})

    status = api.get(f"/api/v1/projects/{project['id']}/status").json()

    assert status["node"] == {"id": str(node.pk), "name": "node-1", "enabled": True, "online": True}
    assert status["active_job"]["state"] == "leased"
    assert status["active_job"]["attempt"] == 1
    assert status["active_job"]["progress"] == {"phase": "receiving", "percent": 5}
    assert status["last_error"] is None


def test_failed_pull_keeps_the_project_ready_with_the_error(api, ready, session):
    api.post(f"/api/v1/projects/{ready['id']}/pull")
    lease = session.lease().json()
    session.fail(lease["job"]["id"], lease["lease"]["token"], code="not_fast_forward")

    status = api.get(f"/api/v1/projects/{ready['id']}/status").json()

    assert status["status"] == "ready"
    assert status["last_error"]["code"] == "not_fast_forward"
    assert_projections_match_log()


def test_a_clone_finishing_under_a_queued_delete_leaves_the_project_deleting(api, project, session):
    clone = session.lease().json()
    assert api.delete(f"/api/v1/projects/{project['id']}").status_code == 202

    session.succeed(clone["job"]["id"], clone["lease"]["token"])

    status = api.get(f"/api/v1/projects/{project['id']}/status").json()
    assert status["status"] == "deleting"
    assert status["commit"] == "a" * 40
    assert api.post(f"/api/v1/projects/{project['id']}/pull").status_code == 409
    assert session.lease().json()["job"]["kind"] == "delete"
    assert_projections_match_log()


def test_the_timeline_hides_lease_tokens(api, project, session):
    session.lease()

    events = api.get(f"/api/v1/projects/{project['id']}/events").json()["results"]

    leased = next(e for e in events if e["type"] == "JobLeased")
    assert leased["data"]["lease_token"] == "(hidden)"
    assert leased["data"]["attempt"] == 1
