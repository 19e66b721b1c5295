"""People's git credentials over the API: stored for their owner, shown without the secret,
rotated and revoked by the owner alone, refused field by field."""

from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519

from credentials import services
from credentials.models import Credential
from credentials.services import CredentialRevoked
from tests.support.credentials import TOKEN, fernet_key, make_ssh_key

URL = "/api/v1/credentials/"


@pytest.fixture(autouse=True)
def credential_keys(settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]


def token_body(**overrides) -> dict:
    body = {"name": "github", "kind": "https-token", "host": "github.com", "secret": TOKEN}
    body.update(overrides)
    return body


def test_a_token_is_stored_and_shown_without_its_secret(api, user):
    response = api.post(URL, token_body(username="x-access-token"), format="json")

    assert response.status_code == 201, response.json()
    shown = response.json()
    assert shown["name"] == "github"
    assert shown["kind"] == "https-token"
    assert shown["host"] == "github.com"
    assert shown["username"] == "x-access-token"
    assert shown["owner"] == "alice"
    assert shown["fingerprint"] == "…" + TOKEN[-4:]
    assert shown["projects"] == []
    assert shown["created_at"] and shown["last_used_at"] is None and shown["rotated_at"] is None
    assert "secret" not in shown and TOKEN not in response.content.decode()
    assert Credential.objects.get(pk=shown["id"]).owner == user


def test_an_ssh_key_is_fingerprinted_like_ssh_keygen(api, tmp_path):
    key = make_ssh_key(tmp_path)

    response = api.post(
        URL,
        {
            "name": "deploy",
            "kind": "ssh-key",
            "host": "git.example.com:2222",
            "secret": key.private,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["fingerprint"] == key.fingerprint
    assert key.body_parts()[1] not in response.content.decode()


@pytest.mark.parametrize(
    ("kind", "pem"), [("rsa", True), ("ecdsa", True), ("rsa", False), ("ed25519", False)]
)
def test_openssh_and_pem_private_keys_are_accepted(api, tmp_path, kind, pem):
    key = make_ssh_key(tmp_path, kind, pem=pem)

    response = api.post(
        URL,
        {"name": "k", "kind": "ssh-key", "host": "h.example", "secret": key.private},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["fingerprint"] == key.fingerprint


def test_a_stored_ssh_key_is_the_same_key_in_openssh_format(api, tmp_path):
    key = make_ssh_key(tmp_path, "rsa", pem=True)
    response = api.post(
        URL,
        {"name": "k", "kind": "ssh-key", "host": "h.example", "secret": key.private},
        format="json",
    )

    stored = services.secret_for(Credential.objects.get(pk=response.json()["id"]))

    assert stored.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n") and stored.endswith("\n")
    path = tmp_path / "stored"
    path.write_text(stored)
    path.chmod(0o600)
    assert make_public(path) == key.public.split()[:2]


def make_public(path) -> list[str]:
    out = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], check=True, capture_output=True)
    return out.stdout.decode().split()[:2]


def refused(response, field: str) -> str:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["fields"]) == [field], body
    return body["fields"][field][0]


def test_a_passphrase_protected_key_is_refused_naming_secret(api, tmp_path):
    key = make_ssh_key(tmp_path, passphrase="correct horse")

    response = api.post(URL, token_body(kind="ssh-key", secret=key.private), format="json")

    assert "passphrase" in refused(response, "secret")


def test_a_passphrase_protected_pem_key_is_refused_naming_secret(api, tmp_path):
    key = make_ssh_key(tmp_path, "rsa", passphrase="correct horse", pem=True)

    response = api.post(URL, token_body(kind="ssh-key", secret=key.private), format="json")

    assert "passphrase" in refused(response, "secret")


def test_a_public_key_is_refused_naming_secret(api, tmp_path):
    key = make_ssh_key(tmp_path)

    response = api.post(URL, token_body(kind="ssh-key", secret=key.public), format="json")

    assert "public key" in refused(response, "secret")


@pytest.mark.parametrize(
    "secret",
    [
        "not a key at all",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n",
        "",
    ],
)
def test_an_unparsable_key_is_refused_naming_secret(api, secret):
    response = api.post(URL, token_body(kind="ssh-key", secret=secret), format="json")

    refused(response, "secret")


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        # A weak key on purpose: the refusal is what is tested.
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "2048 bits"),  # noqa: S505
        (lambda: ec.generate_private_key(ec.SECP256K1()), "P-256, P-384 or P-521"),
        (ed448.Ed448PrivateKey.generate, "Ed25519, RSA or ECDSA"),
        (x25519.X25519PrivateKey.generate, "Ed25519, RSA or ECDSA"),
    ],
)
def test_a_key_ssh_cannot_use_is_refused_naming_secret(api, key, reason):
    response = api.post(URL, token_body(kind="ssh-key", secret=pem(key())), format="json")

    assert reason in refused(response, "secret")


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("", "blank"),
        ("x" * 1025, "at most 1024 characters"),
        ("ghp_has space inside", "without spaces"),
        ("ghp_tab\there_and_more", "without spaces"),
        ("ghp_newline\nand_more", "without spaces"),
        ("ghp_control\x07character", "without spaces"),
        ("ghp_non_ascii_é_token", "without spaces"),
    ],
)
def test_a_malformed_token_is_refused_naming_secret(api, secret, reason):
    response = api.post(URL, token_body(secret=secret), format="json")

    assert reason in refused(response, "secret")
    assert Credential.objects.count() == 0


def test_a_short_token_shows_no_characters_of_itself(api):
    for name, secret in (("ten", "abcdefgh12"), ("one", "x")):
        response = api.post(URL, token_body(name=name, secret=secret), format="json")

        assert response.status_code == 201, response.json()
        assert response.json()["fingerprint"] == "…"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("https://github.com", "scheme"),
        ("github.com/org/repo", "path"),
        ("git@github.com", "user name"),
        ("github.com:0", "1 to 65535"),
        ("github.com:65536", "1 to 65535"),
        ("github.com:ssh", "1 to 65535"),
        ("github.com:", "1 to 65535"),
        ("", "blank"),
        ("under_score.example", "Not a host name"),
        ("-lead.example", "Not a host name"),
        ("a..b", "Not a host name"),
        ("example.123", "Not a host name"),
        ("2001:db8::1", "brackets"),
        ("[2001:db8::zz]", "IPv6"),
        ("[::1", "closing"),
        ("[::1]x", "port"),
        ("host name.example", "Not a host name"),
    ],
)
def test_a_bad_host_is_refused_naming_host(api, host, reason):
    response = api.post(URL, token_body(host=host), format="json")

    assert reason in refused(response, "host")


@pytest.mark.parametrize(
    ("host", "stored"),
    [
        ("GitHub.com", "github.com"),
        ("git.example.com:8443", "git.example.com:8443"),
        ("192.0.2.7:22", "192.0.2.7:22"),
        ("[2001:DB8:0::1]:2222", "[2001:db8::1]:2222"),
        ("localhost", "localhost"),
    ],
)
def test_a_host_is_stored_in_one_canonical_form(api, host, stored):
    response = api.post(URL, token_body(host=host), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["host"] == stored


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (token_body(name=""), "name"),
        (token_body(name="has space"), "name"),
        (token_body(name="x" * 65), "name"),
        (token_body(kind="password"), "kind"),
        (token_body(username="has space"), "username"),
        (token_body(username="user:pass"), "username"),
        (token_body(secret=12345678), "secret"),
        (token_body(owner=2), "owner"),
        (token_body(fingerprint="…abcd"), "fingerprint"),
        (token_body(known_hosts="github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), "known_hosts"),
    ],
)
def test_other_bad_fields_are_refused_by_name(api, body, field):
    refused(api.post(URL, body, format="json"), field)
    assert Credential.objects.count() == 0


def test_known_hosts_lines_are_checked_and_kept(api, tmp_path):
    key = make_ssh_key(tmp_path)
    host_key = make_ssh_key(tmp_path, "ecdsa").public.split()
    lines = (
        "# from ssh-keyscan\n\n"
        f"git.example.com,192.0.2.7 {host_key[0]} {host_key[1]}\n"
        f"[git.example.com]:2222 {host_key[0]} {host_key[1]} comment\r\n"
    )

    response = api.post(
        URL,
        token_body(kind="ssh-key", secret=key.private, known_hosts=lines),
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["known_hosts"] == (
        f"git.example.com,192.0.2.7 {host_key[0]} {host_key[1]}\n"
        f"[git.example.com]:2222 {host_key[0]} {host_key[1]} comment\n"
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("git.example.com ssh-ed25519", "HOSTS KEYTYPE BASE64KEY"),
        ("git.example.com ssh-foo AAAA", "unknown key type"),
        ("git.example.com ssh-ed25519 not*base64", "base64"),
        ("git.example.com ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA==", "do not match"),
        ("git/example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==", "host pattern"),
        ("git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\x1b[2J", "control"),
    ],
)
def test_a_bad_known_hosts_line_is_refused_naming_known_hosts(api, tmp_path, line, reason):
    key = make_ssh_key(tmp_path)

    response = api.post(
        URL, token_body(kind="ssh-key", secret=key.private, known_hosts=line), format="json"
    )

    message = refused(response, "known_hosts")
    assert reason in message and message.startswith("Line 1:")


def test_known_hosts_is_bounded(api, tmp_path):
    key = make_ssh_key(tmp_path)
    line = "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n"

    response = api.post(
        URL, token_body(kind="ssh-key", secret=key.private, known_hosts=line * 101), format="json"
    )

    assert "At most 100" in refused(response, "known_hosts")


def test_names_are_unique_per_owner_but_not_across_people(api, api_for, make_user):
    assert api.post(URL, token_body(), format="json").status_code == 201

    again = api.post(URL, token_body(host="gitlab.com"), format="json")
    someone_else = api_for(make_user("bob")).post(URL, token_body(), format="json")

    assert "already have" in refused(again, "name")
    assert someone_else.status_code == 201


def test_a_revoked_credential_frees_its_name(api):
    first = api.post(URL, token_body(), format="json").json()
    assert api.delete(f"{URL}{first['id']}").status_code == 204

    assert api.post(URL, token_body(), format="json").status_code == 201


def test_people_see_only_their_own_and_staff_see_all(api, api_for, make_user):
    mine = api.post(URL, token_body(), format="json").json()
    bob = api_for(make_user("bob"))
    bobs = bob.post(URL, token_body(name="bobs"), format="json").json()
    staff = api_for(make_user("root", staff=True))

    assert [c["id"] for c in api.get(URL).json()["results"]] == [mine["id"]]
    assert [c["id"] for c in bob.get(URL).json()["results"]] == [bobs["id"]]
    assert {c["id"] for c in staff.get(URL).json()["results"]} == {mine["id"], bobs["id"]}
    assert api.get(f"{URL}{mine['id']}").json() == mine
    assert staff.get(f"{URL}{mine['id']}").status_code == 200


def test_another_person_s_credential_answers_404_to_every_verb(api, api_for, make_user):
    mine = api.post(URL, token_body(), format="json").json()
    bob = api_for(make_user("bob"))
    detail = f"{URL}{mine['id']}"

    answers = [
        bob.get(detail),
        bob.put(f"{detail}/secret", {"secret": TOKEN + "x"}, format="json"),
        bob.delete(detail),
    ]

    assert [(a.status_code, a.json()["code"]) for a in answers] == [(404, "not_found")] * 3
    assert Credential.objects.get(pk=mine["id"]).revoked_at is None
    assert services.secret_for(Credential.objects.get(pk=mine["id"])) == TOKEN


def test_staff_see_but_do_not_change_another_person_s_credential(api, api_for, make_user):
    mine = api.post(URL, token_body(), format="json").json()
    staff = api_for(make_user("root", staff=True))

    rotate = staff.put(f"{URL}{mine['id']}/secret", {"secret": TOKEN + "x"}, format="json")
    revoke = staff.delete(f"{URL}{mine['id']}")

    assert (rotate.status_code, revoke.status_code) == (404, 404)


def test_rotating_replaces_the_secret_and_keeps_the_rest(api):
    created = api.post(URL, token_body(), format="json").json()
    new_token = "glpat-" + "N3wS3cr3tT0k3nV4lu3AB"

    response = api.put(f"{URL}{created['id']}/secret", {"secret": new_token}, format="json")

    assert response.status_code == 200, response.json()
    rotated = response.json()
    assert rotated["fingerprint"] == "…" + new_token[-4:]
    assert rotated["rotated_at"] is not None
    assert {k: v for k, v in rotated.items() if k not in ("fingerprint", "rotated_at")} == {
        k: v for k, v in created.items() if k not in ("fingerprint", "rotated_at")
    }
    assert services.secret_for(Credential.objects.get(pk=created["id"])) == new_token
    assert new_token not in response.content.decode()


def test_rotating_checks_the_new_secret_like_the_first(api, tmp_path):
    key = make_ssh_key(tmp_path)
    created = api.post(URL, token_body(kind="ssh-key", secret=key.private), format="json").json()
    secret_url = f"{URL}{created['id']}/secret"

    assert "public key" in refused(
        api.put(secret_url, {"secret": key.public}, format="json"), "secret"
    )
    assert refused(api.put(secret_url, {"secret": TOKEN}, format="json"), "secret")
    refused(api.put(secret_url, {}, format="json"), "secret")
    refused(
        api.put(secret_url, {"secret": key.private, "host": "x.example"}, format="json"), "host"
    )
    assert services.secret_for(Credential.objects.get(pk=created["id"])).startswith(
        "-----BEGIN OPENSSH PRIVATE KEY-----"
    )


def test_revoking_wipes_the_secret_and_it_can_no_longer_be_used(api):
    created = api.post(URL, token_body(), format="json").json()

    response = api.delete(f"{URL}{created['id']}")

    assert response.status_code == 204
    credential = Credential.objects.get(pk=created["id"])
    assert credential.revoked_at is not None and credential.secret_ciphertext == ""
    assert api.get(f"{URL}{created['id']}").json()["revoked_at"] is not None
    with pytest.raises(CredentialRevoked):
        services.secret_for(credential)
    rotate = api.put(f"{URL}{created['id']}/secret", {"secret": TOKEN}, format="json")
    assert (rotate.status_code, rotate.json()["code"]) == (409, "credential_revoked")
    assert api.delete(f"{URL}{created['id']}").status_code == 204


def test_using_a_secret_records_when(api):
    created = api.post(URL, token_body(), format="json").json()

    assert services.secret_for(Credential.objects.get(pk=created["id"])) == TOKEN

    assert api.get(f"{URL}{created['id']}").json()["last_used_at"] is not None


def test_without_keys_the_server_answers_503_saying_what_to_set(api, settings):
    settings.CREDENTIAL_KEYS = []

    response = api.post(URL, token_body(), format="json")

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "credential_keys_missing"
    assert "CREDENTIAL_KEYS" in body["error"] and "Fernet.generate_key()" in body["error"]
    assert Credential.objects.count() == 0
    assert api.get(URL).status_code == 200


def test_without_keys_rotation_answers_503_and_keeps_the_secret(api, settings):
    created = api.post(URL, token_body(), format="json").json()
    keys = settings.CREDENTIAL_KEYS
    settings.CREDENTIAL_KEYS = []

    response = api.put(f"{URL}{created['id']}/secret", {"secret": TOKEN + "x"}, format="json")

    assert (response.status_code, response.json()["code"]) == (503, "credential_keys_missing")
    settings.CREDENTIAL_KEYS = keys
    assert services.secret_for(Credential.objects.get(pk=created["id"])) == TOKEN


def test_a_malformed_key_answers_503_naming_its_position_not_its_value(api, settings):
    settings.CREDENTIAL_KEYS = [fernet_key(), "not-a-fernet-key"]

    response = api.post(URL, token_body(), format="json")

    assert response.status_code == 503
    assert "entry 2" in response.json()["error"]
    assert "not-a-fernet-key" not in response.json()["error"]


def test_the_api_needs_a_login(client, db):
    assert client.get(URL).status_code == 401
    assert client.post(URL, token_body(), content_type="application/json").status_code == 401


def test_the_browsable_api_never_shows_the_secret(api, tmp_path):
    html = {"format": "json", "HTTP_ACCEPT": "text/html"}
    created = api.post(URL, token_body(), **html)
    locked = make_ssh_key(tmp_path, passphrase="correct horse")
    refused_key = api.post(URL, token_body(name="k", kind="ssh-key", secret=locked.private), **html)
    credential_id = Credential.objects.get().pk
    rotated = api.put(f"{URL}{credential_id}/secret", {"secret": TOKEN[::-1]}, **html)
    pages = [created, refused_key, rotated, api.get(URL, HTTP_ACCEPT="text/html")]

    assert [page.status_code for page in pages] == [201, 400, 200, 200]
    assert all(page["Content-Type"].startswith("text/html") for page in pages)
    for page in pages:
        content = page.content.decode()
        assert TOKEN not in content and TOKEN[::-1] not in content
        assert not any(part in content for part in locked.body_parts())
