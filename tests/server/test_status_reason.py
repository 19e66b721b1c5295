"""Status always says why: the project answers and the admin's project list carry the current
job's error, with the time of its next attempt, and never an older job's error as the current."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.urls import reverse

from projects import services
from projects.models import Project
from tests.support.projects import MULTILINE_ERROR, clone, fail_head_job

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:projects_project_changelist")


def status_of(api, project: Project) -> dict:
    response = api.get(f"/api/v1/projects/{project.pk}/status")
    assert response.status_code == 200
    return response.json()


def test_a_retry_says_why_and_when_it_is_tried_again(api, user, node):
    project = fail_head_job(node, clone(user, node), retryable=True, message="timed out")
    job = project.jobs.get()

    body = status_of(api, project)

    assert body["status"] == "pending"
    assert body["reason"]["code"] == "git_error" and body["reason"]["message"] == "timed out"
    assert datetime.fromisoformat(body["reason"]["retry_at"]) == job.available_at
    assert body["last_error"]["message"] == "timed out"
    assert body["last_error"]["job_id"] == str(job.pk)
    assert body["last_error"]["retry_at"] == body["reason"]["retry_at"]


def test_a_failure_for_good_says_why_with_no_next_attempt(api, user, node):
    project = fail_head_job(node, clone(user, node), retryable=False)

    body = status_of(api, project)

    assert body["status"] == "failed"
    assert body["reason"] == {"code": "git_error", "message": MULTILINE_ERROR, "retry_at": None}
    assert body["last_error"]["message"] == MULTILINE_ERROR


def test_during_a_retry_the_error_is_the_current_job_s_not_an_older_cancel(api, user, node):
    project = clone(user, node)
    cancelled = project.jobs.get()
    services.cancel_job(project=project, job_id=str(cancelled.pk), actor=user)
    project.refresh_from_db()
    assert project.last_error["code"] == "cancelled"
    retried = services.retry_job(project=project, job_id=str(cancelled.pk), actor=user)

    # The retry is queued and has not failed yet: nothing is wrong with it now.
    assert status_of(api, project)["reason"] is None

    fail_head_job(node, project, retryable=True, message="could not resolve host")
    body = status_of(api, project)

    assert body["reason"]["message"] == "could not resolve host"
    assert body["reason"]["retry_at"] is not None
    assert body["last_error"]["code"] == "git_error"
    assert body["last_error"]["job_id"] == str(retried.pk)


def test_a_ready_project_has_no_reason(api, user, node):
    project = clone(user, node)

    assert status_of(api, project)["reason"] is None


def test_the_list_and_the_detail_carry_the_reason(api, user, node):
    project = fail_head_job(node, clone(user, node), retryable=True, message="timed out")

    detail = api.get(f"/api/v1/projects/{project.pk}").json()
    [listed] = api.get("/api/v1/projects/").json()["results"]

    assert detail["reason"]["message"] == "timed out" and detail["reason"]["retry_at"]
    assert listed["reason"] == detail["reason"]
    assert listed["last_error"] == detail["last_error"]


def test_the_admin_list_shows_why_with_line_breaks_and_the_next_attempt(admin_client, user, node):
    fail_head_job(node, clone(user, node, "broken"), retryable=False)
    fail_head_job(node, clone(user, node, "flaky"), retryable=True, message="timed out")
    clone(user, node, "fine")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    page = response.content.decode()
    assert "column-reason" in page
    assert "Connection refused" in page and "\\n" not in page
    assert "fatal: unable to access" in page
    assert "timed out" in page and "tried again at" in page


def test_the_admin_list_reads_open_jobs_once_for_the_page(
    admin_client, user, node, django_assert_max_num_queries
):
    for name in ("a", "b", "c"):
        fail_head_job(node, clone(user, node, name), retryable=True, message="timed out")
    with django_assert_max_num_queries(30) as few:
        admin_client.get(CHANGELIST)
    for name in ("d", "e", "f", "g", "h", "i"):
        fail_head_job(node, clone(user, node, name), retryable=True, message="timed out")

    with django_assert_max_num_queries(len(few.captured_queries)):
        assert admin_client.get(CHANGELIST).status_code == 200
