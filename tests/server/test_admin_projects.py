"""The project admin: read-only pages, and actions that go through the services like the API."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import constants
from django.urls import reverse

from projects import leases, services
from projects.models import Event, Project
from tests.support.api import assert_projections_match_log, event_types

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:projects_project_changelist")


def clone(owner, node, name: str = "demo") -> Project:
    return services.request_clone(
        owner=owner,
        name=name,
        git_url=f"https://git.example.com/group/{name}.git",
        branch="main",
        node=node,
    )


def finish_head_job(node, project: Project) -> Project:
    """Leases the project's next job as the node's agent and reports success."""
    grant = leases.lease(node=node, request_id=uuid.uuid4().hex, instance_id=str(uuid.uuid4()))
    assert grant is not None and grant.project.id == str(project.pk)
    leases.complete(
        node=node,
        job_id=grant.job.id,
        lease_token=grant.job.lease_token,
        result={
            "commit": "c0ffee" * 6 + "abcd",
            "branch": "main",
            "local_path": "/data/projects/x",
            "duration_ms": 5,
            "size_bytes": 10,
        },
    )
    project.refresh_from_db()
    return project


@pytest.fixture
def pending(user, node) -> Project:
    return clone(user, node)


@pytest.fixture
def ready(user, node) -> Project:
    project = finish_head_job(node, clone(user, node))
    assert project.status == "ready"
    return project


def run_action(client, action: str, *projects: Project, **extra: str):
    """Runs a changelist action and follows to the page that shows its messages."""
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(p.pk) for p in projects], **extra},
        follow=True,
    )


def shown(response) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in response.context["messages"]]


def test_changelist_shows_status_node_presence_owner_and_short_commit(admin_client, ready):
    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    page = response.content.decode()
    assert "demo" in page and "ready" in page and "alice" in page
    assert ready.commit[:12] in page and ready.commit not in page
    assert ">online<" in page
    assert "Add project (request a clone)" in page


def test_changelist_filters_by_status_and_node_and_searches_by_name(admin_client, user, node):
    finish_head_job(node, clone(user, node, "beta"))
    clone(user, node, "alpha")

    by_status = admin_client.get(CHANGELIST, {"status": "ready"})
    by_node = admin_client.get(CHANGELIST, {"node__id__exact": str(node.pk)})
    by_name = admin_client.get(CHANGELIST, {"q": "alp"})

    assert [p.name for p in by_status.context["cl"].result_list] == ["beta"]
    assert {p.name for p in by_node.context["cl"].result_list} == {"alpha", "beta"}
    assert [p.name for p in by_name.context["cl"].result_list] == ["alpha"]


def test_detail_page_is_read_only_with_jobs_and_event_timeline(admin_client, ready):
    response = admin_client.get(reverse("admin:projects_project_change", args=[ready.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="_save"' not in page
    assert 'name="git_url"' not in page  # shown, not editable
    assert [row["event"].type for row in response.context["timeline"]] == event_types(ready.pk)
    assert "&quot;target_path&quot;" in page  # data rendered as pretty JSON
    assert [row["job"].kind for row in response.context["jobs"]] == ["clone"]
    assert [op.verb for op in response.context["operations"]] == [
        "pull",
        "pull-rebase",
        "pull-reset",
        "inspect",
        "delete",
        "cancel",
        "retry",
    ]


def test_add_opens_the_clone_form(admin_client):
    response = admin_client.get(reverse("admin:projects_project_add"))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:projects_project_clone")
    assert admin_client.get(response["Location"]).status_code == 200


def test_add_without_the_operate_permission_is_refused(client, make_user):
    viewer = make_user("viewer", staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_project"))
    client.force_login(viewer)

    listing = client.get(CHANGELIST).content.decode()

    assert client.get(reverse("admin:projects_project_add")).status_code == 403
    assert reverse("admin:projects_project_clone") not in listing


def test_change_and_delete_are_refused(admin_client, pending):
    change_url = reverse("admin:projects_project_change", args=[pending.pk])
    before = Event.objects.count()

    assert admin_client.post(change_url, {"name": "renamed"}).status_code == 403
    delete_url = reverse("admin:projects_project_delete", args=[pending.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Event.objects.count() == before
    assert Project.objects.get(pk=pending.pk).name == "demo"


def test_pull_action_queues_a_pull(admin_client, admin_user, ready):
    response = run_action(admin_client, "pull", ready)

    assert response.redirect_chain == [(CHANGELIST, 302)]
    assert event_types(ready.pk)[-1] == "JobQueued"
    last = Event.objects.filter(project_id=ready.pk).latest("version")
    assert last.data["kind"] == "pull"
    assert last.meta["user_id"] == admin_user.pk
    [(level, message)] = shown(response)
    assert level == constants.INFO and "pull job" in message and "queued" in message
    assert_projections_match_log()


def test_refused_pull_shows_the_reason_and_appends_nothing(admin_client, pending):
    before = Event.objects.count()

    response = run_action(admin_client, "pull", pending)

    [(level, message)] = shown(response)
    assert level == constants.ERROR
    assert "Only a ready project can be pulled; this one is pending." in message
    assert Event.objects.count() == before
    assert_projections_match_log()


def test_delete_action_asks_whether_to_keep_local_work_first(admin_client, pending):
    before = Event.objects.count()

    response = run_action(admin_client, "delete_checkout", pending)

    page = response.content.decode()
    assert 'name="force" value="false" checked' in page
    assert 'name="force" value="true"' in page
    assert Event.objects.count() == before


@pytest.mark.parametrize("force", ["false", "true"])
def test_the_confirmed_delete_passes_the_force_choice_on(admin_client, pending, force):
    run_action(admin_client, "delete_checkout", pending, confirm="yes", force=force)

    queued = Event.objects.filter(project_id=pending.pk, type="JobQueued").last()
    assert queued.data.get("options", {}).get("force", False) is (force == "true")


def test_the_detail_page_delete_button_asks_first(admin_client, pending):
    url = reverse("admin:projects_project_operate", args=[pending.pk, "delete"])
    before = Event.objects.count()

    asked = admin_client.post(url)
    assert asked.status_code == 200 and 'name="force"' in asked.content.decode()
    assert Event.objects.count() == before

    admin_client.post(url, {"confirm": "yes", "force": "true"})
    queued = Event.objects.filter(project_id=pending.pk, type="JobQueued").last()
    assert queued.data["options"] == {"force": True}


def test_delete_action_cancels_queued_work_and_queues_the_delete(admin_client, pending):
    run_action(admin_client, "delete_checkout", pending, confirm="yes", force="false")

    assert event_types(pending.pk) == ["ProjectCreated", "JobQueued", "JobCancelled", "JobQueued"]
    pending.refresh_from_db()
    assert pending.status == "deleting"
    assert_projections_match_log()


def test_cancel_then_retry_requeues_the_clone(admin_client, pending):
    cancelled = run_action(admin_client, "cancel", pending)
    pending.refresh_from_db()
    assert pending.status == "failed"

    retried = run_action(admin_client, "retry", pending)

    assert event_types(pending.pk) == ["ProjectCreated", "JobQueued", "JobCancelled", "JobQueued"]
    assert shown(cancelled)[0][0] == constants.INFO
    assert shown(retried)[0][0] == constants.INFO
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert [j.state for j in pending.jobs.order_by("seq")] == ["cancelled", "queued"]
    assert_projections_match_log()


def test_cancel_and_retry_without_a_job_to_act_on_are_refused(admin_client, ready):
    before = Event.objects.count()

    cancel = run_action(admin_client, "cancel", ready)
    retry = run_action(admin_client, "retry", ready)

    assert [level for level, _ in shown(cancel)] == [constants.ERROR]
    assert "no queued or running job" in shown(cancel)[0][1]
    assert [level for level, _ in shown(retry)] == [constants.ERROR]
    assert "Nothing to retry" in shown(retry)[0][1]
    assert Event.objects.count() == before


def test_action_on_several_projects_reports_each(admin_client, user, node, ready):
    other = clone(user, node, "other")

    response = run_action(admin_client, "pull", ready, other)

    levels = sorted(level for level, _ in shown(response))
    assert levels == [constants.INFO, constants.ERROR]
    assert event_types(other.pk) == ["ProjectCreated", "JobQueued"]
    assert_projections_match_log()


def test_detail_page_buttons_run_the_same_operations(admin_client, ready):
    url = reverse("admin:projects_project_operate", args=[ready.pk, "pull"])

    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url, follow=True)

    change_url = reverse("admin:projects_project_change", args=[ready.pk])
    assert response.redirect_chain == [(change_url, 302)]
    assert event_types(ready.pk)[-1] == "JobQueued"
    assert shown(response)[0][0] == constants.INFO
    bogus = reverse("admin:projects_project_operate", args=[ready.pk, "explode"])
    assert admin_client.post(bogus).status_code == 404
    assert_projections_match_log()


def test_operations_need_the_change_permission(client, make_user, ready):
    viewer = make_user("viewer", staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_project"))
    client.force_login(viewer)
    before = Event.objects.count()

    page = client.get(reverse("admin:projects_project_change", args=[ready.pk]))
    button = client.post(reverse("admin:projects_project_operate", args=[ready.pk, "pull"]))
    action = run_action(client, "pull", ready)

    assert page.status_code == 200 and page.context["operations"] == []
    assert button.status_code == 403
    assert action.redirect_chain == []  # the action is not offered, so nothing runs
    assert client.get(reverse("admin:projects_project_clone")).status_code == 403
    assert Event.objects.count() == before
