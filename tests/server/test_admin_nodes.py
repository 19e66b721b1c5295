"""The node admin: presence at a glance, registration with a token shown once, rotate, revoke."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from core import tokens
from nodes.authentication import authenticate_agent
from nodes.models import AgentToken, Node

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:nodes_node_changelist")
AGENT_TOKEN = re.compile(r"gfa_[0-9a-f]{12}_[A-Za-z0-9_-]{32,}")


def shown_tokens(response) -> list[str]:
    return AGENT_TOKEN.findall(response.content.decode())


def works(token: str) -> bool:
    try:
        authenticate_agent(f"Bearer {token}")
    except AuthenticationFailed:
        return False
    return True


def test_changelist_shows_presence_disk_and_duplicate_flag(admin_client, make_node):
    awake, _ = make_node("awake")
    make_node("sleepy", online=False)
    Node.objects.filter(pk=awake.pk).update(
        disk_free_bytes=5 * 1024**3,
        agent_version="0.1.0",
        hostname="box-1",
        running_jobs=2,
        duplicate_instance_at=timezone.now(),
    )

    response = admin_client.get(CHANGELIST)

    page = response.content.decode()
    assert response.status_code == 200
    assert ">online<" in page and ">offline<" in page
    assert "5.0\xa0GB" in page and "box-1" in page and "0.1.0" in page
    assert "Duplicate instance" in page
    # enabled: True, True; duplicate instance: True for awake, False for sleepy
    assert (page.count('alt="True"'), page.count('alt="False"')) == (3, 1)


def test_change_page_lists_tokens_by_prefix_without_digest(admin_client, node):
    token = node.tokens.get()

    response = admin_client.get(reverse("admin:nodes_node_change", args=[node.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert f"gfa_{token.key_id}…" in page
    assert token.digest not in page
    assert reverse("admin:nodes_node_revoke_token", args=[node.pk, token.pk]) in page


def test_add_form_asks_only_for_name_and_enabled(admin_client):
    response = admin_client.get(reverse("admin:nodes_node_add"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == ["name", "enabled"]


def test_adding_a_node_shows_its_first_token_once_and_stores_only_the_hash(admin_client):
    response = admin_client.post(
        reverse("admin:nodes_node_add"), {"name": "edge-1", "enabled": "on"}
    )

    assert response.status_code == 200
    [plaintext] = set(shown_tokens(response))
    assert "only time" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    node = Node.objects.get(name="edge-1")
    stored = AgentToken.objects.get(node=node)
    assert plaintext.startswith(f"gfa_{stored.key_id}_")
    assert stored.digest == tokens.digest_of(plaintext) != plaintext
    assert works(plaintext)
    again = admin_client.get(reverse("admin:nodes_node_change", args=[node.pk]))
    assert plaintext not in again.content.decode()
    assert shown_tokens(admin_client.get(CHANGELIST)) == []


def test_an_invalid_name_registers_nothing(admin_client):
    response = admin_client.post(reverse("admin:nodes_node_add"), {"name": "Not A Name"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"]
    assert Node.objects.count() == 0 and AgentToken.objects.count() == 0


def test_rotate_action_shows_a_new_token_and_revokes_the_old(admin_client, node_and_token):
    node, old = node_and_token

    response = admin_client.post(
        CHANGELIST, {"action": "rotate_token", "_selected_action": [str(node.pk)]}
    )

    assert response.status_code == 200
    [new] = set(shown_tokens(response))
    assert new != old
    assert works(new) and not works(old)
    assert node.tokens.filter(revoked_at__isnull=True).count() == 1


def test_rotate_button_on_the_node_page(admin_client, node_and_token):
    node, old = node_and_token
    url = reverse("admin:nodes_node_rotate_token", args=[node.pk])

    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url)

    [new] = set(shown_tokens(response))
    assert works(new) and not works(old)


def test_revoking_one_token(admin_client, node_and_token):
    node, plaintext = node_and_token
    token = node.tokens.get()
    url = reverse("admin:nodes_node_revoke_token", args=[node.pk, token.pk])

    response = admin_client.post(url)

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert not works(plaintext)


def test_enable_and_disable_actions(admin_client, node):
    admin_client.post(CHANGELIST, {"action": "disable", "_selected_action": [str(node.pk)]})
    node.refresh_from_db()
    assert not node.enabled and not node.accepts_work

    admin_client.post(CHANGELIST, {"action": "enable", "_selected_action": [str(node.pk)]})
    node.refresh_from_db()
    assert node.enabled and node.accepts_work


def test_token_views_need_the_change_permission(client, make_user, node_and_token):
    node, plaintext = node_and_token
    client.force_login(make_user("viewer", staff=True))
    token = node.tokens.get()

    rotate = client.post(reverse("admin:nodes_node_rotate_token", args=[node.pk]))
    revoke = client.post(reverse("admin:nodes_node_revoke_token", args=[node.pk, token.pk]))

    assert rotate.status_code == revoke.status_code == 403
    assert works(plaintext)


def test_changelist_and_page_show_git_and_git_lfs_versions(admin_client, make_node):
    node, _ = make_node("lfs-box")
    Node.objects.filter(pk=node.pk).update(git_version="2.39.5", git_lfs_version="3.3.0")

    listed = admin_client.get(CHANGELIST).content.decode()
    page = admin_client.get(reverse("admin:nodes_node_change", args=[node.pk])).content.decode()

    for html in (listed, page):
        assert "2.39.5" in html
        assert "3.3.0" in html
