"""Requesting a clone from the admin: the API's validation, onto nodes that accept work only."""

import pytest
from django.urls import reverse

from nodes.models import Node
from projects.models import Event, Project
from tests.support.api import assert_projections_match_log, event_types

pytestmark = pytest.mark.django_db

CLONE = reverse("admin:projects_project_clone")
SUBMIT = '<input type="submit" class="default" value="Request clone">'


def form(node: Node, **overrides) -> dict:
    body = {
        "name": "demo",
        "git_url": "https://git.example.com/group/demo.git",
        "branch": "main",
        "node": str(node.pk),
        "depth": "",
    }
    body.update(overrides)
    return body


def test_changelist_links_to_the_clone_form(admin_client):
    page = admin_client.get(reverse("admin:projects_project_changelist")).content.decode()

    assert f'href="{CLONE}"' in page


def test_clone_creates_a_project_owned_by_the_admin_on_an_online_node(
    admin_client, admin_user, node
):
    response = admin_client.post(CLONE, form(node, depth="1"))

    project = Project.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:projects_project_change", args=[project.pk])
    assert (project.owner, project.node, project.depth) == (admin_user, node, 1)
    assert project.target_path == f"{admin_user.pk}_demo"
    assert event_types(project.pk) == ["ProjectCreated", "JobQueued"]
    assert Event.objects.filter(project_id=project.pk).first().meta["user_id"] == admin_user.pk
    assert_projections_match_log()


def test_form_offers_only_nodes_that_accept_work(admin_client, make_node):
    make_node("awake")
    make_node("sleepy", online=False)
    resting, _ = make_node("resting")
    Node.objects.filter(pk=resting.pk).update(enabled=False)

    response = admin_client.get(CLONE)

    page = response.content.decode()
    assert response.status_code == 200
    assert [n.name for n in response.context["form"].fields["node"].queryset] == ["awake"]
    assert "sleepy" not in page and "resting" not in page
    assert SUBMIT in page


def test_with_only_an_offline_node_the_page_says_so_and_offers_no_submit(admin_client, make_node):
    make_node("sleepy", online=False)

    page = admin_client.get(CLONE).content.decode()

    assert 'id="no-node-accepts-work"' in page
    assert SUBMIT not in page and 'name="node"' not in page
    assert "sleepy" not in page


def test_posting_an_offline_node_anyway_is_refused_and_records_nothing(admin_client, make_node):
    sleepy, _ = make_node("sleepy", online=False)

    response = admin_client.post(CLONE, form(sleepy))

    assert response.status_code == 200
    assert Project.objects.count() == 0 and Event.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("git_url", "file:///etc/passwd"),
        ("git_url", "https://user:secret@git.example.com/x.git"),
        ("branch", "bad..branch"),
        ("name", "../escape"),
        ("name", " demo"),
        ("depth", "0"),
    ],
)
def test_api_validation_refusals_show_on_the_field(admin_client, node, field, value):
    response = admin_client.post(CLONE, form(node, **{field: value}))

    assert response.status_code == 200
    assert response.context["form"].errors.get(field), response.context["form"].errors
    assert Project.objects.count() == 0 and Event.objects.count() == 0


def test_service_refusal_shows_as_a_form_error(admin_client, node):
    assert admin_client.post(CLONE, form(node)).status_code == 302
    events_before = Event.objects.count()

    response = admin_client.post(CLONE, form(node))

    assert response.status_code == 200
    assert response.context["form"].errors["name"] == ["You already have a project named 'demo'."]
    assert Event.objects.count() == events_before


def test_clone_needs_the_change_permission(client, make_user, node):
    client.force_login(make_user("viewer", staff=True))

    assert client.get(CLONE).status_code == 403
    assert client.post(CLONE, form(node)).status_code == 403
    assert Project.objects.count() == 0
