"""Lease tokens and agent instance ids are kept out of everything a person can read: the
admin's event, job, project and node pages and the API's event lists. The stored events keep
them, since the lease protocol needs them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from projects.models import Event, Job
from tests.support.api import AgentSession, clone_body

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def leased(api, agent, node):
    """A clone leased by an agent instance: (project id, lease token, instance id)."""
    project_id = api.post("/api/v1/projects/clone", clone_body(), format="json").json()["project"][
        "id"
    ]
    session = AgentSession(agent)
    session.heartbeat()
    lease = session.lease().json()["lease"]
    return project_id, lease["token"], session.instance_id


def _secrets_absent(page: str, token: str, instance_id: str) -> None:
    assert token not in page
    assert instance_id not in page


def _leased_event(project_id) -> Event:
    return Event.objects.get(project_id=project_id, type="JobLeased")


def test_the_stored_event_keeps_token_and_instance(leased):
    project_id, token, instance_id = leased

    data = _leased_event(project_id).data

    assert (data["lease_token"], data["instance_id"]) == (token, instance_id)


def test_admin_pages_never_show_the_lease_token_or_the_instance(admin_client, leased, node):
    project_id, token, instance_id = leased
    event = _leased_event(project_id)
    job = Job.objects.get()
    pages = {
        "event list": reverse("admin:projects_event_changelist"),
        "event detail": reverse("admin:projects_event_change", args=[event.pk]),
        "project timeline": reverse("admin:projects_project_change", args=[project_id]),
        "job list": reverse("admin:projects_job_changelist"),
        "job detail": reverse("admin:projects_job_change", args=[job.pk]),
        "node detail": reverse("admin:nodes_node_change", args=[node.pk]),
        "node list": reverse("admin:nodes_node_changelist"),
    }

    for name, url in pages.items():
        response = admin_client.get(url)
        assert response.status_code == 200, name
        _secrets_absent(response.content.decode(), token, instance_id)
    detail = admin_client.get(pages["event detail"]).content.decode()
    assert "&quot;lease_token&quot;: &quot;(hidden)&quot;" in detail
    timeline = admin_client.get(pages["project timeline"]).content.decode()
    assert "(hidden)" in timeline and 'id="project-timeline"' in timeline


def test_the_event_log_needs_the_view_event_permission(client, make_user, leased):
    project_id, token, instance_id = leased
    staff = make_user("operator", staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_project"))
    client.force_login(staff)
    event = _leased_event(project_id)
    detail_url = reverse("admin:projects_event_change", args=[event.pk])

    assert client.get(reverse("admin:projects_event_changelist")).status_code == 403
    assert client.get(detail_url).status_code == 403
    project_page = client.get(reverse("admin:projects_project_change", args=[project_id]))
    assert project_page.status_code == 200
    assert 'id="project-timeline"' not in project_page.content.decode()

    staff.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(staff)  # permissions are cached per user object
    allowed = client.get(detail_url)
    assert allowed.status_code == 200
    _secrets_absent(allowed.content.decode(), token, instance_id)


def test_the_api_event_lists_leave_out_token_and_instance(api, leased, make_user, api_for):
    project_id, token, instance_id = leased
    staff_api = api_for(make_user("operator", staff=True))

    own = api.get(f"/api/v1/projects/{project_id}/events")
    feed = staff_api.get("/api/v1/events/")

    assert own.status_code == feed.status_code == 200
    for response in (own, feed):
        _secrets_absent(response.content.decode(), token, instance_id)
    [leased_event] = [e for e in own.json()["results"] if e["type"] == "JobLeased"]
    assert leased_event["data"]["lease_token"] == "(hidden)"
    assert "instance_id" not in leased_event["data"]
