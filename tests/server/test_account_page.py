"""`/account/`: every signed-in person's own projects and API tokens, with forms to issue
(shown once) and revoke, for people who cannot use the admin."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken
from accounts.services import issue_api_token
from core import tokens
from tests.support.api import bearer_client
from tests.support.projects import MULTILINE_ERROR, clone, fail_head_job

pytestmark = pytest.mark.django_db

ACCOUNT = reverse("account")
ISSUE = reverse("account-token-issue")
USER_TOKEN = re.compile(r"gfu_[0-9a-f]{12}_[A-Za-z0-9_-]{32,}")


def revoke_url(token: ApiToken) -> str:
    return reverse("account-token-revoke", args=[token.pk])


@pytest.fixture
def signed_in(client, user) -> Client:
    client.force_login(user)
    return client


def test_signing_in_with_a_password_leads_to_the_account_page(client, make_user):
    person = make_user("bob")
    person.set_password("a-long-password-1")
    person.save()

    form = client.get(reverse("login"))
    response = client.post(
        reverse("login"), {"username": "bob", "password": "a-long-password-1"}, follow=True
    )

    assert form.status_code == 200 and 'name="csrfmiddlewaretoken"' in form.content.decode()
    assert response.redirect_chain[-1] == (ACCOUNT, 302)
    assert "Signed in as <strong>bob</strong>" in response.content.decode()


def test_a_wrong_password_is_refused_on_the_form(client, user):
    response = client.post(reverse("login"), {"username": user.username, "password": "nope"})

    assert response.status_code == 200
    assert response.context["form"].errors
    assert not response.wsgi_request.user.is_authenticated


def test_without_signing_in_the_page_sends_to_the_login(client):
    response = client.get(ACCOUNT)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={ACCOUNT}"


def test_the_page_shows_own_projects_with_status_node_and_why(signed_in, user, make_user, node):
    failed = fail_head_job(node, clone(user, node, "broken"), retryable=False)
    clone(user, node, "waiting")
    clone(make_user("bob"), node, "bobs")

    response = signed_in.get(ACCOUNT)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    rows = {row["project"].name: row for row in response.context["projects"]}
    assert set(rows) == {"broken", "waiting"}
    assert failed.status == "failed"
    assert rows["broken"]["reason"].message == MULTILINE_ERROR
    assert rows["waiting"]["reason"] is None
    page = response.content.decode()
    assert "node-1" in page and ">online<" in page and "failed" in page and "pending" in page
    # The error reads as text with its real line break, never a literal backslash-n.
    assert "Connection refused" in page and "\\n" not in page
    assert '<pre class="error-text">fatal: unable to access' in page


def test_a_retry_shows_the_current_error_and_when_it_is_tried_again(signed_in, user, node):
    fail_head_job(node, clone(user, node), retryable=True, message="timed out")

    response = signed_in.get(ACCOUNT)

    [row] = response.context["projects"]
    assert row["project"].status == "pending"
    assert row["reason"].message == "timed out" and row["reason"].retry_at is not None
    assert "tried again at" in response.content.decode()


def test_the_page_lists_own_tokens_only(signed_in, user, make_user):
    issue_api_token(user=user, name="laptop")
    issue_api_token(user=make_user("bob"), name="bobs-ci")

    page = signed_in.get(ACCOUNT).content.decode()

    assert "laptop" in page and "bobs-ci" not in page
    assert "Revoke" in page and 'name="csrfmiddlewaretoken"' in page


def test_issuing_shows_the_token_once_and_it_works(signed_in, user):
    response = signed_in.post(ISSUE, {"name": "laptop", "expires_on": ""})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [plaintext] = set(USER_TOKEN.findall(response.content.decode()))
    stored = ApiToken.objects.get(user=user, name="laptop")
    assert stored.digest == tokens.digest_of(plaintext) and stored.expires_at is None
    assert bearer_client(plaintext).get("/api/v1/projects/").status_code == 200
    assert plaintext not in signed_in.get(ACCOUNT).content.decode()


def test_issuing_with_an_expiry_day(signed_in, user):
    day = (timezone.localdate() + timedelta(days=30)).isoformat()

    response = signed_in.post(ISSUE, {"name": "month", "expires_on": day})

    assert response.status_code == 200
    token = ApiToken.objects.get(user=user, name="month")
    assert token.expires_at.date().isoformat() == day


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "expires_on": "not a day"}, "expires_on"),
        ({"name": "ok", "expires_on": "2001-01-01"}, "expires_on"),
        ({"name": "ok", "expires_on": "2999-01-01"}, "expires_on"),
    ],
)
def test_bad_input_is_shown_on_the_form(signed_in, user, data, field):
    response = signed_in.post(ISSUE, data)

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not ApiToken.objects.filter(user=user).exists()
    assert not USER_TOKEN.findall(response.content.decode())


def test_forms_need_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token, _ = issue_api_token(user=user, name="keep")

    issued = client.post(ISSUE, {"name": "forged"})
    revoked = client.post(revoke_url(token))

    assert issued.status_code == revoked.status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None and not ApiToken.objects.filter(name="forged").exists()


def test_revoking_own_token_stops_it(signed_in, user):
    token, plaintext = issue_api_token(user=user, name="old")

    response = signed_in.post(revoke_url(token), follow=True)

    assert response.redirect_chain == [(ACCOUNT, 302)]
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "revoked" in response.content.decode()
    assert bearer_client(plaintext).get("/api/v1/projects/").status_code == 401


def test_another_persons_token_is_not_found(signed_in, make_user):
    token, _ = issue_api_token(user=make_user("bob"), name="bobs")

    response = signed_in.post(revoke_url(token))

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_revoking_takes_a_post(signed_in, user):
    token, _ = issue_api_token(user=user, name="old")

    assert signed_in.get(revoke_url(token)).status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None


def test_staff_get_a_link_to_the_admin_and_the_admin_links_back(admin_client, signed_in):
    staff_page = admin_client.get(ACCOUNT).content.decode()
    person_page = signed_in.get(ACCOUNT).content.decode()
    admin_index = admin_client.get(reverse("admin:index")).content.decode()

    assert f'href="{reverse("admin:index")}"' in staff_page
    assert f'href="{reverse("admin:index")}"' not in person_page
    assert f'href="{ACCOUNT}"' in admin_index  # the admin's "View site"
