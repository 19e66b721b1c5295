"""Live workspaces through the API: pull strategies and forced deletes reach the lease, the
workspace summary lands on the project, progress is shown without events, and a retrying job's
error is the one the project shows."""

import pytest
from django.urls import reverse

from projects.models import Event, Job
from tests.support.api import AgentSession, assert_projections_match_log, clone_body, event_types

pytestmark = pytest.mark.django_db(transaction=True)

WORKSPACE = {
    "dirty": {"count": 1, "paths": ["?? notes.txt"]},
    "ahead": 1,
    "behind": 0,
    "size_bytes": 2048,
}


@pytest.fixture
def session(agent):
    return AgentSession(agent)


@pytest.fixture
def ready(api, node, session):
    response = api.post("/api/v1/projects/clone", clone_body(), format="json")
    assert response.status_code == 202
    lease = session.lease().json()
    assert session.succeed(lease["job"]["id"], lease["lease"]["token"]).status_code == 200
    return response.json()["project"]


def complete(session, lease, **result):
    body = {
        "lease_token": lease["lease"]["token"],
        "outcome": "succeeded",
        "result": {
            "commit": "c" * 40,
            "branch": "main",
            "local_path": "/data/projects/x",
            "duration_ms": 5,
            "size_bytes": 2048,
            **result,
        },
    }
    return session.client.post(
        f"/api/v1/agent/jobs/{lease['job']['id']}/complete", body, format="json"
    )


@pytest.mark.parametrize("strategy", ["ff-only", "rebase", "reset"])
def test_the_pull_strategy_reaches_the_agent(api, ready, session, strategy):
    response = api.post(
        f"/api/v1/projects/{ready['id']}/pull", {"strategy": strategy}, format="json"
    )
    assert response.status_code == 202, response.content

    lease = session.lease().json()

    assert (lease["job"]["kind"], lease["job"]["strategy"]) == ("pull", strategy)
    assert lease["job"]["force"] is False
    assert_projections_match_log()


def test_a_pull_without_a_body_is_ff_only(api, ready, session):
    assert api.post(f"/api/v1/projects/{ready['id']}/pull").status_code == 202

    assert session.lease().json()["job"]["strategy"] == "ff-only"
    queued = Event.objects.filter(type="JobQueued").order_by("position").last()
    assert "options" not in queued.data  # stored as before strategies existed


@pytest.mark.parametrize("strategy", ["merge", "", None, 1, ["rebase"]])
def test_an_unknown_strategy_is_refused_naming_the_field(api, ready, strategy):
    response = api.post(
        f"/api/v1/projects/{ready['id']}/pull", {"strategy": strategy}, format="json"
    )

    assert response.status_code == 400
    assert "strategy" in response.json()["fields"]
    assert event_types(ready["id"]) == ["ProjectCreated", "JobQueued", "JobLeased", "JobSucceeded"]


def test_reset_names_its_backup_ref_in_the_success_event(api, ready, session):
    api.post(f"/api/v1/projects/{ready['id']}/pull", {"strategy": "reset"}, format="json")
    lease = session.lease().json()
    ref = "refs/gitfleet/backup/20261202T050000123456Z"

    assert complete(session, lease, workspace=WORKSPACE, backup_ref=ref).status_code == 200

    succeeded = Event.objects.filter(type="JobSucceeded").order_by("position").last()
    assert succeeded.data["result"]["backup_ref"] == ref
    assert_projections_match_log()


def test_delete_is_unforced_unless_asked_and_a_refusal_keeps_the_project_ready(api, ready, session):
    assert api.delete(f"/api/v1/projects/{ready['id']}").status_code == 202
    lease = session.lease().json()
    assert lease["job"]["force"] is False
    session.fail(lease["job"]["id"], lease["lease"]["token"], code="local_changes")

    status = api.get(f"/api/v1/projects/{ready['id']}/status").json()
    assert status["status"] == "ready"
    assert status["last_error"]["code"] == "local_changes"

    assert api.delete(f"/api/v1/projects/{ready['id']}?force=true").status_code == 202
    lease = session.lease().json()
    assert lease["job"]["force"] is True
    assert (
        session.succeed(lease["job"]["id"], lease["lease"]["token"], commit="").status_code == 200
    )
    assert api.get(f"/api/v1/projects/{ready['id']}/status").json()["status"] == "deleted"
    assert_projections_match_log()


@pytest.mark.parametrize("value", ["yes", "1", "True", ""])
def test_a_force_that_is_not_true_or_false_is_refused(api, ready, value):
    response = api.delete(f"/api/v1/projects/{ready['id']}?force={value}")

    assert response.status_code == 400
    assert "force" in response.json()["fields"]
    assert event_types(ready["id"])[-1] == "JobSucceeded"


def test_inspect_refreshes_the_workspace_on_the_project(api, ready, session):
    response = api.post(f"/api/v1/projects/{ready['id']}/inspect")
    assert response.status_code == 202, response.content
    assert response.json()["job"]["kind"] == "inspect"
    assert api.post(f"/api/v1/projects/{ready['id']}/inspect").status_code == 409
    lease = session.lease().json()
    assert lease["job"]["kind"] == "inspect"

    assert complete(session, lease, workspace=WORKSPACE).status_code == 200

    status = api.get(f"/api/v1/projects/{ready['id']}/status").json()
    workspace = status["workspace"]
    assert {k: v for k, v in workspace.items() if k != "inspected_at"} == WORKSPACE
    assert workspace["inspected_at"]
    assert status["status"] == "ready"
    detail = api.get(f"/api/v1/projects/{ready['id']}").json()
    assert detail["workspace"] == workspace
    assert_projections_match_log()


def test_inspect_of_a_project_that_is_not_ready_is_refused(api, node):
    project = api.post("/api/v1/projects/clone", clone_body(), format="json").json()["project"]

    response = api.post(f"/api/v1/projects/{project['id']}/inspect")

    assert response.status_code == 409
    assert response.json()["code"] == "not_ready"


def test_a_workspace_that_is_not_an_object_is_refused(ready, api, session):
    api.post(f"/api/v1/projects/{ready['id']}/inspect")
    lease = session.lease().json()

    response = complete(session, lease, workspace=["not", "an", "object"])

    assert response.status_code == 400
    assert "result" in response.json()["fields"] or "workspace" in str(response.json())


def test_progress_is_shown_live_and_writes_no_event(api, ready, session):
    api.post(f"/api/v1/projects/{ready['id']}/pull")
    lease = session.lease().json()
    job_id, token = lease["job"]["id"], lease["lease"]["token"]
    before = Event.objects.count()
    url = f"/api/v1/agent/jobs/{job_id}/progress"

    for percent in (10, 40, 70):
        body = {"lease_token": token, "progress": {"phase": "receiving", "percent": percent}}
        assert session.client.post(url, body, format="json").status_code == 200
        status = api.get(f"/api/v1/projects/{ready['id']}/status").json()
        assert status["active_job"]["progress"] == {"phase": "receiving", "percent": percent}
        assert status["active_job"]["progress_at"]

    assert Event.objects.count() == before
    assert_projections_match_log()  # the live columns are not projection: no drift
    stale = {"lease_token": "x" * 40, "progress": {"percent": 1}}
    assert session.client.post(url, stale, format="json").status_code == 409
    bad = {"lease_token": token, "progress": {"percent": 101}}
    response = session.client.post(url, bad, format="json")
    assert response.status_code == 400 and "progress.percent" in response.json()["fields"]


def test_progress_of_an_earlier_attempt_is_not_shown(api, ready, session):
    api.post(f"/api/v1/projects/{ready['id']}/pull")
    lease = session.lease().json()
    job_id, token = lease["job"]["id"], lease["lease"]["token"]
    body = {"lease_token": token, "progress": {"percent": 90}}
    session.client.post(f"/api/v1/agent/jobs/{job_id}/progress", body, format="json")
    session.fail(job_id, token, code="network_error", retryable=True)
    Job.objects.filter(pk=job_id).update(available_at=Job.objects.get(pk=job_id).queued_at)

    again = session.lease().json()

    assert again["lease"]["attempt"] == 2
    status = api.get(f"/api/v1/projects/{ready['id']}/status").json()
    assert status["active_job"]["progress"] == {}


def test_a_retrying_job_shows_its_own_error_not_an_older_one(api, ready, session):
    api.post(f"/api/v1/projects/{ready['id']}/pull")
    lease = session.lease().json()
    session.fail(lease["job"]["id"], lease["lease"]["token"], code="git_error")
    assert api.get(f"/api/v1/projects/{ready['id']}/status").json()["last_error"]["code"] == (
        "git_error"
    )
    api.post(f"/api/v1/projects/{ready['id']}/pull")
    lease = session.lease().json()

    session.fail(lease["job"]["id"], lease["lease"]["token"], code="network_error", retryable=True)

    error = api.get(f"/api/v1/projects/{ready['id']}/status").json()["last_error"]
    assert (error["code"], error["job_id"]) == ("network_error", lease["job"]["id"])
    assert error["retry_at"]
    assert_projections_match_log()


def test_the_admin_project_page_shows_the_live_progress(api, ready, session, admin_client):
    api.post(f"/api/v1/projects/{ready['id']}/pull")
    lease = session.lease().json()
    body = {
        "lease_token": lease["lease"]["token"],
        "progress": {"phase": "receiving", "percent": 37},
    }
    session.client.post(f"/api/v1/agent/jobs/{lease['job']['id']}/progress", body, format="json")

    page = admin_client.get(reverse("admin:projects_project_change", args=[ready["id"]]))

    assert page.context["summary"]["progress"] == "receiving 37%"
