"""People's API tokens in the admin: issued with the plaintext shown once, revoked, never edited."""

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken
from accounts.services import issue_api_token
from core import tokens
from core.exceptions import Forbidden
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


def test_issue_form_asks_for_user_name_and_expiry(admin_client):
    response = admin_client.get(reverse("admin:accounts_apitoken_add"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == ["user", "name", "expires_at"]


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


def _staff_who_may_add_tokens(make_user, *extra_perms: str):
    staff = make_user("sam", staff=True)
    codenames = ["add_apitoken", "view_apitoken", *extra_perms]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return staff


def test_staff_without_the_permission_cannot_mint_a_token_for_a_superuser(client, make_user):
    root = get_user_model().objects.create_superuser("root", password="pw-root-123456")
    client.force_login(_staff_who_may_add_tokens(make_user))

    response = client.post(
        reverse("admin:accounts_apitoken_add"), {"user": str(root.pk), "name": "mine now"}
    )

    assert response.status_code == 200
    assert "user" in response.context["adminform"].form.errors
    assert not USER_TOKEN.findall(response.content.decode())
    assert not ApiToken.objects.filter(user=root).exists()


def test_staff_may_still_issue_a_token_for_themselves(client, make_user):
    staff = _staff_who_may_add_tokens(make_user)
    client.force_login(staff)

    response = client.post(
        reverse("admin:accounts_apitoken_add"), {"user": str(staff.pk), "name": "laptop"}
    )

    assert response.status_code == 200
    assert len(set(USER_TOKEN.findall(response.content.decode()))) == 1
    assert ApiToken.objects.filter(user=staff, name="laptop").exists()


def test_issuing_for_someone_else_needs_the_permission_and_is_recorded(
    client, make_user, user, caplog
):
    staff = _staff_who_may_add_tokens(make_user, "issue_token_for_others")
    client.force_login(staff)

    with caplog.at_level("INFO", logger="accounts.services"):
        response = client.post(
            reverse("admin:accounts_apitoken_add"), {"user": str(user.pk), "name": "ci"}
        )

    assert response.status_code == 200
    token = ApiToken.objects.get(user=user, name="ci")
    entry = LogEntry.objects.get(object_id=str(token.pk), action_flag=ADDITION)
    assert entry.user == staff
    assert entry.get_change_message() == "Issued for alice by sam."
    assert f"API token {token} issued for alice by sam" in caplog.text


def test_the_service_refuses_issuing_for_another_person_without_the_permission(make_user, user):
    staff = make_user("sam", staff=True)

    with pytest.raises(Forbidden) as refused:
        issue_api_token(user=user, name="x", issued_by=staff)

    assert refused.value.field == "user"
    assert not ApiToken.objects.filter(user=user).exists()
    issue_api_token(user=staff, name="own", issued_by=staff)  # for oneself: allowed


def test_staff_without_permissions_manage_their_own_tokens(client, make_user, user):
    staff = make_user("sam", staff=True)
    own, _ = issue_api_token(user=staff, name="own")
    others, _ = issue_api_token(user=user, name="alice's")
    client.force_login(staff)

    index = client.get(reverse("admin:index")).content.decode()
    listing = client.get(CHANGELIST)
    form = client.get(reverse("admin:accounts_apitoken_add"))
    hidden = client.get(reverse("admin:accounts_apitoken_change", args=[others.pk]))
    client.post(CHANGELIST, {"action": "revoke", "_selected_action": [str(own.pk), str(others.pk)]})

    assert CHANGELIST in index and "staff account" not in index
    assert [row.pk for row in listing.context["cl"].result_list] == [own.pk]
    assert list(form.context["adminform"].form.fields["user"].queryset) == [staff]
    assert hidden.status_code == 302  # the admin's answer to an object one may not see
    own.refresh_from_db()
    others.refresh_from_db()
    assert own.revoked_at is not None and others.revoked_at is None


def test_staff_revoke_others_tokens_only_with_the_permission(client, make_user, user):
    staff = _staff_who_may_add_tokens(make_user)
    token, _ = issue_api_token(user=user, name="alice's")
    client.force_login(staff)

    refused = client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [str(token.pk)]}, follow=True
    )
    token.refresh_from_db()
    assert token.revoked_at is None
    assert "Not revoked" in refused.content.decode()

    staff.user_permissions.add(Permission.objects.get(codename="change_apitoken"))
    client.post(CHANGELIST, {"action": "revoke", "_selected_action": [str(token.pk)]})
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_issuing_with_an_expiry_in_the_past_is_refused_on_the_form(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:accounts_apitoken_add"),
        {
            "user": str(admin_user.pk),
            "name": "old",
            "expires_at_0": "2001-01-01",
            "expires_at_1": "00:00:00",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["expires_at"] == ["Must be in the future."]
    assert not ApiToken.objects.filter(name="old").exists()


def test_issuing_with_an_expiry_stores_it(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:accounts_apitoken_add"),
        {
            "user": str(admin_user.pk),
            "name": "month",
            "expires_at_0": (timezone.now() + timedelta(days=30)).date().isoformat(),
            "expires_at_1": "12:00:00",
        },
    )

    assert response.status_code == 200
    assert len(set(USER_TOKEN.findall(response.content.decode()))) == 1
    token = ApiToken.objects.get(name="month")
    assert timedelta(days=29) < token.expires_at - timezone.now() < timedelta(days=31)
