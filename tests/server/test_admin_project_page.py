"""The admin's project page: where the project stands at the top (status, node, commit, progress,
why it failed), and the event timeline as a readable table with the data folded away."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import reverse

from projects import leases
from projects.timeline import summary
from tests.support.projects import MULTILINE_ERROR, clone, fail_head_job

pytestmark = pytest.mark.django_db

RESULT = {
    "commit": "c0ffee" * 6 + "abcd",
    "branch": "main",
    "local_path": "/data/projects/x",
    "duration_ms": 1500,
    "size_bytes": 2048,
}


def page_of(client, project):
    response = client.get(reverse("admin:projects_project_change", args=[project.pk]))
    assert response.status_code == 200
    return response


def top(response) -> str:
    page = response.content.decode()
    return page[page.index('id="project-summary"') : page.index('id="project-jobs"')]


def lease(node):
    grant = leases.lease(node=node, request_id=uuid.uuid4().hex, instance_id=str(uuid.uuid4()))
    assert grant is not None
    return grant


def test_the_top_shows_a_running_jobs_progress(admin_client, user, node):
    project = clone(user, node)
    grant = lease(node)
    progress = {"phase": "receiving", "percent": 42, "objects": 1200}
    leases.renew(
        node=node, job_id=grant.job.id, lease_token=grant.job.lease_token, progress=progress
    )

    summary_html = top(page_of(admin_client, project))

    assert "<strong>pending</strong>" in summary_html
    assert "clone job leased, attempt 1 of 3" in summary_html
    assert "node-1 (online)" in summary_html
    assert "receiving 42%, 1200 objects" in summary_html


def test_the_top_shows_why_a_retry_is_waiting(admin_client, user, node):
    project = fail_head_job(node, clone(user, node), retryable=True)

    summary_html = top(page_of(admin_client, project))

    assert "<strong>pending</strong>" in summary_html
    assert "<strong>git_error</strong>, tried again at" in summary_html
    # The message is text with its real line break, never a literal backslash-n.
    assert "unable to access &#x27;https://git.example.com/x.git/&#x27;\nConnection refused" in (
        summary_html
    )
    assert "\\n" not in summary_html


def test_the_top_shows_the_failure_and_the_commit_of_a_ready_project(admin_client, user, node):
    failed = fail_head_job(node, clone(user, node, "broken"), retryable=False)
    ready = clone(user, node, "fine")
    grant = lease(node)
    leases.complete(
        node=node, job_id=grant.job.id, lease_token=grant.job.lease_token, result=RESULT
    )

    failed_top = top(page_of(admin_client, failed))
    ready_top = top(page_of(admin_client, ready))

    assert "<strong>failed</strong>" in failed_top and "Connection refused" in failed_top
    assert "<strong>ready</strong>" in ready_top and RESULT["commit"] in ready_top
    assert 'id="project-reason">-' in ready_top.replace("\n", "").replace("  ", "")


def test_the_timeline_is_a_table_of_time_event_who_and_what(admin_client, user, node):
    project = clone(user, node)
    grant = lease(node)
    leases.complete(
        node=node, job_id=grant.job.id, lease_token=grant.job.lease_token, result=RESULT
    )

    response = page_of(admin_client, project)

    rows = response.context["timeline"]
    assert [(row["event"].type, row["who"]) for row in rows] == [
        ("ProjectCreated", "alice"),
        ("JobQueued", "alice"),
        ("JobLeased", "node node-1"),
        ("JobSucceeded", "node node-1"),
    ]
    assert rows[0]["summary"] == (
        "Project demo created from https://git.example.com/group/demo.git (branch main) "
        f"into {user.pk}_demo"
    )
    assert rows[1]["summary"] == "clone job queued (up to 3 attempts)"
    assert rows[2]["summary"].startswith("clone attempt 1 started by the node's agent")
    assert rows[3]["summary"] == "clone succeeded: commit c0ffeec0ffee on main in 1.5 s, 2.0 KB"
    page = response.content.decode()
    timeline = page[page.index('id="project-timeline"') :]
    assert timeline.count('<tr class="timeline-event">') == 4
    assert timeline.count("<details>") == 4 and "<summary>data</summary>" in timeline
    assert grant.job.lease_token not in page  # masked by projects.redaction
    assert "(hidden)" in timeline


def test_failures_in_the_timeline_read_as_text(admin_client, user, node):
    project = fail_head_job(node, clone(user, node), retryable=False)

    response = page_of(admin_client, project)

    failed = response.context["timeline"][-1]
    assert failed["event"].type == "JobFailed"
    assert failed["summary"] == (
        "clone failed for good after attempt 1: "
        "git_error: fatal: unable to access 'https://git.example.com/x.git/'"
    )
    assert failed["error_message"] == MULTILINE_ERROR
    errors = re.findall(
        r'<pre class="timeline-error"[^>]*>(.*?)</pre>', response.content.decode(), re.S
    )
    assert errors and all("\\n" not in text and "\n" in text for text in errors)


def test_an_event_without_a_summary_or_of_an_older_shape_still_gets_a_line():
    assert summary("SomethingNew", {"x": 1}) == "SomethingNew"
    assert summary("JobSucceeded", {"result": "not a mapping"}) == "JobSucceeded"
    assert summary("JobFailed", None, "pull") == "pull failed for good after attempt ?: error: "
