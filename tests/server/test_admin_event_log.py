"""The event log and the job projection in the admin: readable by staff, writable by no one."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from projects import services
from projects.models import Event, Job, Project

pytestmark = pytest.mark.django_db

EVENTS = reverse("admin:projects_event_changelist")
JOBS = reverse("admin:projects_job_changelist")


@pytest.fixture
def project(user, node) -> Project:
    return services.request_clone(
        owner=user,
        name="demo",
        git_url="https://git.example.com/g/demo.git",
        branch="main",
        node=node,
    )


def listed(response) -> list:
    return list(response.context["cl"].result_list)


def test_event_list_and_detail_render(admin_client, project):
    event = Event.objects.filter(project_id=project.pk).first()

    listing = admin_client.get(EVENTS)
    detail = admin_client.get(reverse("admin:projects_event_change", args=[event.pk]))

    assert listing.status_code == detail.status_code == 200
    assert [e.type for e in listed(listing)] == ["JobQueued", "ProjectCreated"]  # newest first
    page = detail.content.decode()
    assert "&quot;git_url&quot;: &quot;https://git.example.com/g/demo.git&quot;" in page
    assert 'name="_save"' not in page


def test_events_filter_by_type_and_find_by_project(admin_client, project, user, node):
    services.request_clone(
        owner=user,
        name="other",
        git_url="https://git.example.com/g/o.git",
        branch="main",
        node=node,
    )

    by_type = admin_client.get(EVENTS, {"type": "ProjectCreated"})
    by_search = admin_client.get(EVENTS, {"q": str(project.pk)})
    by_project = admin_client.get(EVENTS, {"project_id": str(project.pk)})

    assert len(listed(by_type)) == 2
    assert {e.type for e in listed(by_type)} == {"ProjectCreated"}
    for response in (by_search, by_project):
        assert {e.project_id for e in listed(response)} == {project.pk}
        assert len(listed(response)) == 2
    assert listed(admin_client.get(EVENTS, {"q": "not-a-uuid"})) == []


def test_superuser_cannot_add_change_or_delete_events(admin_client, project):
    event = Event.objects.filter(project_id=project.pk).first()
    before = list(Event.objects.values_list("position", "type", "data"))

    add = admin_client.get(reverse("admin:projects_event_add"))
    change = admin_client.post(
        reverse("admin:projects_event_change", args=[event.pk]), {"type": "Forged"}
    )
    delete = admin_client.post(
        reverse("admin:projects_event_delete", args=[event.pk]), {"post": "yes"}
    )
    bulk = admin_client.post(
        EVENTS, {"action": "delete_selected", "_selected_action": [str(event.pk)], "post": "yes"}
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert bulk.context["action_form"] is None  # no actions at all, delete_selected included
    assert list(Event.objects.values_list("position", "type", "data")) == before


def test_plain_staff_may_not_read_the_log(client, make_user, project):
    client.force_login(make_user("operator", staff=True))
    event = Event.objects.filter(project_id=project.pk).first()

    assert client.get(EVENTS).status_code == 403
    assert client.get(reverse("admin:projects_event_change", args=[event.pk])).status_code == 403


def test_staff_with_the_view_event_permission_may_read_the_log(client, make_user, project):
    reader = make_user("operator", staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(reader)
    event = Event.objects.filter(project_id=project.pk).first()

    assert client.get(EVENTS).status_code == 200
    assert client.get(reverse("admin:projects_event_change", args=[event.pk])).status_code == 200
    assert client.get(reverse("admin:projects_event_add")).status_code == 403


def test_non_staff_may_not_read_the_log(client, user, project):
    client.force_login(user)

    response = client.get(EVENTS)

    assert response.status_code == 302 and "/login/" in response.url


def test_job_list_and_detail_render_read_only(admin_client, project, node):
    job = Job.objects.get()

    listing = admin_client.get(JOBS)
    filtered = admin_client.get(
        JOBS, {"state": "queued", "kind": "clone", "node__id__exact": node.pk}
    )
    detail = admin_client.get(reverse("admin:projects_job_change", args=[job.pk]))

    assert listing.status_code == detail.status_code == 200
    assert listed(filtered) == [job]
    assert listed(admin_client.get(JOBS, {"state": "leased"})) == []
    assert 'name="_save"' not in detail.content.decode()


def test_jobs_cannot_be_added_changed_or_deleted(admin_client, project):
    job = Job.objects.get()

    assert admin_client.get(reverse("admin:projects_job_add")).status_code == 403
    change = admin_client.post(
        reverse("admin:projects_job_change", args=[job.pk]), {"state": "succeeded"}
    )
    delete = admin_client.post(reverse("admin:projects_job_delete", args=[job.pk]), {"post": "yes"})

    assert change.status_code == delete.status_code == 403
    assert Job.objects.get().state == "queued"
