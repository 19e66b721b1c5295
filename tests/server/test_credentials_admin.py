"""Git credentials in the admin: added for oneself, the secret write-only on every page,
the fingerprint read-only, rotation by the owner, revocation as an action."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from credentials import services
from credentials.admin import WriteOnlyTextarea
from credentials.models import Credential
from tests.support.credentials import TOKEN, fernet_key, leaks, make_ssh_key

CHANGELIST = reverse("admin:credentials_credential_changelist")
ADD = reverse("admin:credentials_credential_add")


def change_url(credential: Credential) -> str:
    return reverse("admin:credentials_credential_change", args=[credential.pk])


@pytest.fixture(autouse=True)
def credential_keys(settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]


def assert_no_secret(html: bytes, *secrets: str) -> None:
    for secret in secrets:
        assert not leaks(html, secret), secret


def add_body(**overrides) -> dict:
    body = {
        "name": "github",
        "kind": "https-token",
        "host": "github.com",
        "username": "",
        "secret": TOKEN,
        "known_hosts": "",
    }
    body.update(overrides)
    return body


def test_adding_a_token_stores_it_for_the_person_adding_it(admin_client, admin_user):
    response = admin_client.post(ADD, add_body())

    assert response.status_code == 302, response.context["adminform"].form.errors
    credential = Credential.objects.get()
    assert credential.owner == admin_user
    assert services.secret_for(credential) == TOKEN
    assert credential.fingerprint == "…" + TOKEN[-4:]


def test_pages_never_render_the_token(admin_client, admin_user):
    credential = services.create_credential(
        owner=admin_user, name="github", kind="https-token", host="github.com", secret=TOKEN
    )

    pages = [
        admin_client.get(CHANGELIST),
        admin_client.get(change_url(credential)),
        admin_client.get(ADD),
        admin_client.get(CHANGELIST + "?q=github"),
    ]

    assert [page.status_code for page in pages] == [200] * 4
    for page in pages:
        assert_no_secret(page.content, TOKEN, TOKEN[:-4])
    assert "…" + TOKEN[-4:] in pages[1].content.decode()


def test_pages_never_render_the_ssh_key_or_its_body(admin_client, admin_user, tmp_path):
    key = make_ssh_key(tmp_path)
    credential = services.create_credential(
        owner=admin_user, name="deploy", kind="ssh-key", host="git.example.com", secret=key.private
    )
    stored = services.secret_for(credential).strip().splitlines()[1:-1]

    pages = [admin_client.get(CHANGELIST), admin_client.get(change_url(credential))]

    for page in pages:
        assert page.status_code == 200
        assert_no_secret(page.content, key.body, *key.body_parts(), *stored)
    assert key.fingerprint in pages[1].content.decode()


def test_a_refused_add_form_does_not_render_the_secret_back(admin_client, tmp_path):
    key = make_ssh_key(tmp_path, passphrase="correct horse")

    response = admin_client.post(ADD, add_body(kind="ssh-key", secret=key.private))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "passphrase" in form.errors["secret"][0]
    assert_no_secret(response.content, key.body, *key.body_parts())
    assert Credential.objects.count() == 0


def test_a_refused_token_is_not_rendered_back_either(admin_client):
    response = admin_client.post(ADD, add_body(host="https://github.com"))

    assert "scheme" in response.context["adminform"].form.errors["host"][0]
    assert_no_secret(response.content, TOKEN)
    assert b'name="secret"' in response.content


def test_error_reports_would_hide_the_posted_secret(admin_client):
    response = admin_client.post(ADD, add_body())

    request = response.wsgi_request
    assert request.sensitive_post_parameters == ("secret",)
    filtered = SafeExceptionReporterFilter().get_post_parameters(request)
    assert TOKEN not in str(filtered) and filtered["name"] == "github"


def test_the_secret_widget_renders_empty_even_when_given_a_value():
    html = WriteOnlyTextarea().render("secret", TOKEN)

    assert TOKEN not in html and html.endswith(">\n</textarea>")


def test_adding_without_keys_says_what_to_set(admin_client, settings):
    settings.CREDENTIAL_KEYS = []

    response = admin_client.post(ADD, add_body())

    assert response.status_code == 200
    assert "CREDENTIAL_KEYS" in response.content.decode()
    assert Credential.objects.count() == 0


def test_the_owner_rotates_the_secret_from_the_change_page(admin_client, admin_user):
    credential = services.create_credential(
        owner=admin_user, name="github", kind="https-token", host="github.com", secret=TOKEN
    )
    new_token = "glpat-" + "N3wS3cr3tT0k3nV4lu3AB"

    response = admin_client.post(change_url(credential), {"secret": new_token})
    kept = admin_client.post(change_url(credential), {"secret": ""})

    assert (response.status_code, kept.status_code) == (302, 302)
    credential.refresh_from_db()
    assert services.secret_for(credential) == new_token
    assert credential.rotated_at is not None
    assert_no_secret(admin_client.get(change_url(credential)).content, new_token)


def test_rotation_in_the_admin_checks_the_new_secret(admin_client, admin_user):
    credential = services.create_credential(
        owner=admin_user, name="github", kind="https-token", host="github.com", secret=TOKEN
    )

    response = admin_client.post(change_url(credential), {"secret": "bad token"})

    assert response.status_code == 200
    assert "without spaces" in response.context["adminform"].form.errors["secret"][0]
    assert services.secret_for(credential) == TOKEN


def test_staff_see_another_person_s_credential_read_only(admin_client, make_user):
    bob = make_user("bob")
    credential = services.create_credential(
        owner=bob, name="github", kind="https-token", host="github.com", secret=TOKEN
    )

    page = admin_client.get(change_url(credential))
    attempt = admin_client.post(change_url(credential), {"secret": "glpat-ABCDEFGHIJKLMNOPQ"})

    assert page.status_code == 200 and b'name="secret"' not in page.content
    assert attempt.status_code == 403
    assert services.secret_for(credential) == TOKEN


@pytest.fixture
def plain_staff(client, make_user):
    """A staff member granted no model permission at all."""
    staff = make_user("carol", staff=True)
    client.force_login(staff)
    return staff


def test_any_staff_member_adds_their_own_and_sees_all(client, plain_staff, make_user):
    bobs = services.create_credential(
        owner=make_user("bob"), name="bobs", kind="https-token", host="github.com", secret=TOKEN
    )

    response = client.post(ADD, add_body())
    listing = client.get(CHANGELIST)

    assert response.status_code == 302
    mine = Credential.objects.get(owner=plain_staff)
    assert listing.status_code == 200
    assert str(mine.pk) in listing.content.decode() and str(bobs.pk) in listing.content.decode()
    assert b"Git credentials" in client.get(reverse("admin:index")).content


def test_a_staff_member_rotates_their_own_but_not_another_s(client, plain_staff, make_user):
    mine = services.create_credential(
        owner=plain_staff, name="mine", kind="https-token", host="github.com", secret=TOKEN
    )
    bobs = services.create_credential(
        owner=make_user("bob"), name="bobs", kind="https-token", host="github.com", secret=TOKEN
    )
    new_token = "glpat-" + "N3wS3cr3tT0k3nV4lu3AB"

    own = client.post(change_url(mine), {"secret": new_token})
    other = client.post(change_url(bobs), {"secret": new_token})

    assert (own.status_code, other.status_code) == (302, 403)
    assert services.secret_for(mine) == new_token
    assert services.secret_for(bobs) == TOKEN


def test_without_the_change_permission_revoke_spares_other_people_s(client, plain_staff, make_user):
    mine = services.create_credential(
        owner=plain_staff, name="mine", kind="https-token", host="github.com", secret=TOKEN
    )
    bobs = services.create_credential(
        owner=make_user("bob"), name="bobs", kind="https-token", host="github.com", secret=TOKEN
    )

    response = client.post(
        CHANGELIST,
        {"action": "revoke", "_selected_action": [str(mine.pk), str(bobs.pk)]},
        follow=True,
    )

    mine.refresh_from_db()
    bobs.refresh_from_db()
    assert mine.revoked_at is not None and bobs.revoked_at is None
    assert "Left 1 credential(s) of other people active" in response.content.decode()


def test_non_staff_people_have_no_admin_pages(client, make_user):
    client.force_login(make_user("dave"))

    assert client.get(CHANGELIST).status_code == 302  # to the admin login
    assert client.post(ADD, add_body()).status_code == 302
    assert Credential.objects.count() == 0


def test_revoke_action_wipes_the_secret(admin_client, admin_user, make_user):
    mine = services.create_credential(
        owner=admin_user, name="github", kind="https-token", host="github.com", secret=TOKEN
    )
    bobs = services.create_credential(
        owner=make_user("bob"), name="x", kind="https-token", host="github.com", secret=TOKEN
    )

    admin_client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [str(mine.pk), str(bobs.pk)]}
    )

    for credential in (mine, bobs):
        credential.refresh_from_db()
        assert credential.revoked_at is not None and credential.secret_ciphertext == ""


def test_credentials_are_never_deleted_from_the_admin(admin_client, admin_user):
    credential = services.create_credential(
        owner=admin_user, name="github", kind="https-token", host="github.com", secret=TOKEN
    )

    response = admin_client.post(
        reverse("admin:credentials_credential_delete", args=[credential.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert Credential.objects.filter(pk=credential.pk).exists()
