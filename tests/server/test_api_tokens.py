"""People's own API tokens over `/api/v1/tokens/`: list, issue (shown once), revoke, expire.

Everyone manages their own; staff see everyone's; nobody sees or revokes another person's
tokens without the right (404 when they cannot even see it).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import issue_api_token
from core import tokens
from tests.support.api import bearer_client

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens/"


def detail(token: ApiToken) -> str:
    return f"{TOKENS}{token.pk}"


def session_client(person) -> APIClient:
    client = APIClient()
    client.force_login(person)
    return client


def in_a(days: float) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()


def test_a_person_issues_a_token_shown_once_that_works(api, user):
    response = api.post(TOKENS, {"name": "laptop", "expires_at": in_a(30)}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["token"].startswith(f"{body['prefix']}_")
    assert body["user"] == user.username and body["name"] == "laptop" and body["active"]
    assert response["Cache-Control"] == "no-store"
    stored = ApiToken.objects.get(pk=body["id"])
    assert stored.digest == tokens.digest_of(body["token"])
    assert stored.expires_at is not None
    assert bearer_client(body["token"]).get("/api/v1/projects/").status_code == 200
    listing = api.get(TOKENS)
    assert body["token"] not in listing.content.decode()
    assert "digest" not in listing.json()["results"][0]


def test_session_login_works_too(user):
    client = session_client(user)

    issued = client.post(TOKENS, {"name": "from the browser"}, format="json")

    assert issued.status_code == 201 and issued.json()["expires_at"] is None
    assert [row["name"] for row in client.get(TOKENS).json()["results"]] == ["from the browser"]


def test_session_posts_need_the_csrf_token(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.post(TOKENS, {"name": "forged"}, format="json")

    assert response.status_code == 403
    assert not ApiToken.objects.filter(name="forged").exists()


def test_the_plaintext_is_never_logged(api, caplog):
    with caplog.at_level(logging.DEBUG):
        plaintext = api.post(TOKENS, {"name": "quiet"}, format="json").json()["token"]
        bearer_client(plaintext).get(TOKENS)

    assert caplog.records
    assert all(plaintext not in record.getMessage() for record in caplog.records)
    secret = plaintext.split("_", 2)[2]
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_people_see_only_their_own_tokens(make_user, api_for):
    alice, bob = make_user("alice"), make_user("bob")
    issue_api_token(user=bob, name="bob's")

    names = [row["name"] for row in api_for(alice).get(TOKENS).json()["results"]]
    filtered = api_for(alice).get(TOKENS, {"user": "bob"}).json()["results"]

    assert names == ["tests"]
    assert filtered == []


def test_staff_see_everyones_and_filter_by_user(make_user, api_for):
    alice, staff = make_user("alice"), make_user("root", staff=True)
    issue_api_token(user=alice, name="alice's")

    everyone = api_for(staff).get(TOKENS).json()["results"]
    only_alice = api_for(staff).get(TOKENS, {"user": "alice"}).json()["results"]

    assert {row["user"] for row in everyone} == {"alice", "root"}
    assert [row["name"] for row in only_alice] == ["alice's"]


def test_a_person_revokes_their_own_token(api, user):
    token, plaintext = issue_api_token(user=user, name="old")

    response = api.delete(detail(token))
    again = api.delete(detail(token))

    assert response.status_code == 200 and again.status_code == 200
    assert response.json()["revoked_at"] is not None and not response.json()["active"]
    assert again.json()["revoked_at"] == response.json()["revoked_at"]
    refused = bearer_client(plaintext).get(TOKENS)
    assert refused.status_code == 401
    assert refused.json()["fields"] == {"Authorization": ["Token has been revoked."]}


def test_another_persons_token_is_not_found(make_user, api_for):
    alice, bob = make_user("alice"), make_user("bob")
    token, plaintext = issue_api_token(user=bob, name="bob's")

    response = api_for(alice).delete(detail(token))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    token.refresh_from_db()
    assert token.revoked_at is None
    assert bearer_client(plaintext).get(TOKENS).status_code == 200


def test_staff_revoke_others_only_with_the_permission(make_user, api_for):
    alice, staff = make_user("alice"), make_user("root", staff=True)
    token, _ = issue_api_token(user=alice, name="alice's")

    refused = api_for(staff).delete(detail(token))
    staff.user_permissions.add(Permission.objects.get(codename="change_apitoken"))
    allowed = api_for(staff).delete(detail(token))

    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert allowed.status_code == 200 and allowed.json()["revoked_at"] is not None


def test_an_unknown_or_huge_id_is_not_found(api):
    assert api.delete(f"{TOKENS}999999").status_code == 404
    assert api.delete(f"{TOKENS}{'9' * 30}").status_code == 404


def test_revoking_takes_no_body(api, user):
    token, _ = issue_api_token(user=user, name="old")

    response = api.delete(detail(token), {"user": "bob"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["user"]
    token.refresh_from_db()
    assert token.revoked_at is None


def test_an_expired_token_is_refused_with_a_clear_message(user):
    token, plaintext = issue_api_token(user=user, name="short", expires_at=in_a_moment())
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = bearer_client(plaintext).get("/api/v1/projects/")

    assert response.status_code == 401
    [message] = response.json()["fields"]["Authorization"]
    assert message.startswith("Token expired at ") and "issue a new one" in message
    token.refresh_from_db()
    assert token.last_used_at is None


def test_a_token_works_until_it_expires(user):
    _, plaintext = issue_api_token(user=user, name="soon", expires_at=in_a_moment())

    assert bearer_client(plaintext).get("/api/v1/projects/").status_code == 200


def in_a_moment():
    return timezone.now() + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": "ok", "expires_at": "yesterday"}, "expires_at"),
        ({"name": "ok", "expires_at": 1893456000}, "expires_at"),
        ({"name": "ok", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "ok", "expires_at": "LATER"}, "expires_at"),
        ({"name": "ok", "owner": "bob"}, "owner"),
        ({"name": "ok", "user": 7}, "user"),
        ({"name": "ok", "user": "bob\x00"}, "user"),
        ({"name": "ok", "user": "x" * 151}, "user"),
        ({"name": "ok", "digest": "0" * 64}, "digest"),
    ],
)
def test_bad_input_is_refused_naming_the_field(api, user, body, field):
    response = api.post(TOKENS, body, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"]
    assert list(ApiToken.objects.filter(user=user).values_list("name", flat=True)) == ["tests"]


@pytest.mark.parametrize(("days", "accepted"), [(-1, False), (1, True), (364, True), (366, False)])
def test_expiry_must_be_in_the_future_and_within_a_year(api, days, accepted):
    response = api.post(TOKENS, {"name": "t", "expires_at": in_a(days)}, format="json")

    assert (response.status_code == 201) is accepted, response.json()
    if not accepted:
        assert list(response.json()["fields"]) == ["expires_at"]


def test_expiry_far_away_is_refused(api):
    response = api.post(TOKENS, {"name": "t", "expires_at": in_a(400)}, format="json")

    assert response.status_code == 400
    assert "365 days" in response.json()["fields"]["expires_at"][0]


@pytest.mark.parametrize("value", ["bob\x00", "x" * 151, "no spaces"])
def test_a_bad_user_filter_is_refused(api, value):
    response = api.get(TOKENS, {"user": value})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["user"]


def test_without_credentials_nothing_is_answered():
    response = APIClient().get(TOKENS)

    assert response.status_code == 401


def test_issuing_for_another_person_needs_the_permission(make_user, api_for):
    alice, sam = make_user("alice"), make_user("sam", staff=True)

    refused = api_for(sam).post(TOKENS, {"name": "for alice", "user": "alice"}, format="json")
    unknown_refused = api_for(sam).post(TOKENS, {"name": "x", "user": "nobody"}, format="json")

    assert refused.status_code == unknown_refused.status_code == 403
    assert refused.json()["fields"]["user"] == unknown_refused.json()["fields"]["user"]
    assert not ApiToken.objects.filter(user=alice, name="for alice").exists()


def test_with_the_permission_a_token_is_issued_for_another_person(make_user, api_for):
    make_user("alice")
    sam = make_user("sam", staff=True)
    sam.user_permissions.add(Permission.objects.get(codename="issue_token_for_others"))

    issued = api_for(sam).post(TOKENS, {"name": "for alice", "user": "alice"}, format="json")
    unknown = api_for(sam).post(TOKENS, {"name": "x", "user": "nobody"}, format="json")

    assert issued.status_code == 201 and issued.json()["user"] == "alice"
    token = issued.json()["token"]
    listing = bearer_client(token).get(TOKENS).json()["results"]
    assert {row["user"] for row in listing} == {"alice"}
    assert unknown.status_code == 400 and list(unknown.json()["fields"]) == ["user"]


def test_naming_yourself_is_the_same_as_naming_no_one(api, user):
    response = api.post(TOKENS, {"name": "mine", "user": user.username}, format="json")

    assert response.status_code == 201 and response.json()["user"] == user.username
