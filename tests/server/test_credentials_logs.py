"""No log line ever carries a credential's secret: not the request log, not Django's own
refusal lines, not the SQL debug log, whatever the answer was."""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.urls import reverse

from core.logging import JsonFormatter
from credentials.models import Credential
from tests.support.credentials import TOKEN, fernet_key, leaks, make_ssh_key

URL = "/api/v1/credentials/"
TEXT = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


@pytest.fixture
def every_log_line(caplog, settings):
    """Every record at every level, SQL included, formatted both ways the server can."""
    settings.CREDENTIAL_KEYS = [fernet_key()]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True
    try:

        def lines() -> bytes:
            formatted = []
            for record in caplog.records:
                formatted.append(TEXT.format(record))
                formatted.append(JsonFormatter().format(record))
                formatted.append(repr(record.args))
            return "\n".join(formatted).encode()

        yield lines
    finally:
        connection.force_debug_cursor = False


def test_no_log_line_carries_a_token(api, every_log_line, settings):
    body = {"name": "gh", "kind": "https-token", "host": "github.com", "secret": TOKEN}
    created = api.post(URL, body, format="json").json()
    api.post(URL, body, format="json")  # name taken
    api.post(URL, {**body, "name": "h", "host": "https://x"}, format="json")
    api.post(URL, {**body, "name": "h", "secret": TOKEN + " x"}, format="json")
    api.put(f"{URL}{created['id']}/secret", {"secret": TOKEN[::-1]}, format="json")
    api.get(URL)
    api.delete(f"{URL}{created['id']}")
    api.put(f"{URL}{created['id']}/secret", {"secret": TOKEN}, format="json")
    settings.CREDENTIAL_KEYS = []
    api.post(URL, {**body, "name": "nokeys"}, format="json")

    logged = every_log_line()

    assert b"gitfleet.request" in logged and b"credentials_credential" in logged
    assert b"Service Unavailable" in logged and b"Bad Request" in logged
    for secret in (TOKEN, TOKEN[::-1], TOKEN + " x"):
        assert not leaks(logged, secret)


def test_no_log_line_carries_an_ssh_key(api, every_log_line, tmp_path):
    key = make_ssh_key(tmp_path)
    locked = make_ssh_key(tmp_path, "rsa", passphrase="correct horse")
    body = {"name": "deploy", "kind": "ssh-key", "host": "git.example.com", "secret": key.private}
    api.post(URL, body, format="json")
    api.post(URL, {**body, "name": "locked", "secret": locked.private}, format="json")
    api.post(URL, {**body, "name": "public", "secret": key.public}, format="json")

    logged = every_log_line()

    assert Credential.objects.count() == 1
    for part in [*key.body_parts(), *locked.body_parts()]:
        assert not leaks(logged, part)


def test_no_log_line_carries_a_secret_given_in_the_admin(admin_client, every_log_line):
    add = reverse("admin:credentials_credential_add")
    body = {"name": "gh", "kind": "https-token", "host": "github.com", "secret": TOKEN}
    admin_client.post(add, {**body, "username": "", "known_hosts": ""})
    admin_client.post(add, {**body, "username": "", "known_hosts": "", "host": "a b"})

    assert not leaks(every_log_line(), TOKEN)
