"""People's API tokens in the admin: issued with the plaintext shown once, revoked, never edited."""

import re

import pytest
from django.urls import reverse

from accounts import tokens
from accounts.models import ApiToken
from accounts.services import issue_api_token
from tests.support.api import bearer_client

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:accounts_apitoken_changelist")
USER_TOKEN = re.compile(r"gfu_[0-9a-f]{12}_[A-Za-z0-9_-]{32,}")


def test_list_and_detail_render_without_the_digest(admin_client, user):
    token, _ = issue_api_token(user=user, name="laptop")

    listing = admin_client.get(CHANGELIST)
    detail = admin_client.get(reverse("admin:accounts_apitoken_change", args=[token.pk]))

    assert listing.status_code == detail.status_code == 200
    for response in (listing, detail):
        page = response.content.decode()
        assert f"gfu_{token.key_id}…" in page and "laptop" in page
        assert token.digest not in page
    assert 'name="_save"' not in detail.content.decode()


def test_issue_form_asks_only_for_user_and_name(admin_client):
    response = admin_client.get(reverse("admin:accounts_apitoken_add"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == ["user", "name"]


def test_issuing_shows_the_token_once_and_it_works(admin_client, user):
    response = admin_client.post(
        reverse("admin:accounts_apitoken_add"), {"user": str(user.pk), "name": "ci"}
    )

    assert response.status_code == 200
    [plaintext] = set(USER_TOKEN.findall(response.content.decode()))
    assert "no-store" in response["Cache-Control"]
    stored = ApiToken.objects.get(user=user, name="ci")
    assert stored.digest == tokens.digest_of(plaintext)
    assert bearer_client(plaintext).get("/api/v1/projects/").status_code == 200
    later = admin_client.get(reverse("admin:accounts_apitoken_change", args=[stored.pk]))
    assert plaintext not in later.content.decode()


def test_revoke_action_stops_the_token(admin_client, user):
    token, plaintext = issue_api_token(user=user, name="old")

    admin_client.post(CHANGELIST, {"action": "revoke", "_selected_action": [str(token.pk)]})

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer_client(plaintext).get("/api/v1/projects/").status_code == 401


def test_tokens_are_not_edited(admin_client, user):
    token, _ = issue_api_token(user=user, name="laptop")

    response = admin_client.post(
        reverse("admin:accounts_apitoken_change", args=[token.pk]), {"name": "renamed"}
    )

    assert response.status_code == 403
    token.refresh_from_db()
    assert token.name == "laptop"
