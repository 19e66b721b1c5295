"""Secrets at rest: Fernet ciphertext only, under keys that rotate without losing a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from credentials import services
from credentials.checks import credential_keys_are_fernet_keys
from credentials.keys import UndecryptableSecret
from credentials.models import Credential
from tests.support.credentials import TOKEN, fernet_key, leaks, make_ssh_key


def store_token(user, name: str = "github", secret: str = TOKEN) -> Credential:
    return services.create_credential(
        owner=user, name=name, kind="https-token", host="github.com", secret=secret
    )


def database_bytes() -> bytes:
    """Everything the database holds, as a dump would: the SQLite files, or every row of the
    credentials table on PostgreSQL."""
    if connection.vendor == "sqlite":
        path = Path(connection.settings_dict["NAME"])
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    with connection.cursor() as cursor:
        cursor.execute("SELECT c::text FROM credentials_credential c")
        return "\n".join(row[0] for row in cursor.fetchall()).encode()


@pytest.mark.django_db(transaction=True)
def test_a_database_dump_reveals_no_secret(make_user, settings, tmp_path):
    settings.CREDENTIAL_KEYS = [fernet_key()]
    user = make_user()
    key = make_ssh_key(tmp_path)
    store_token(user)
    ssh = services.create_credential(
        owner=user, name="deploy", kind="ssh-key", host="git.example.com", secret=key.private
    )
    stored_key = services.secret_for(ssh)
    stored_body = "".join(stored_key.strip().splitlines()[1:-1])
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(FULL)")

    dump = database_bytes()

    assert Credential.objects.count() == 2 and b"github.com" in dump
    assert not leaks(dump, TOKEN)
    for part in [*key.body_parts(), *stored_key.strip().splitlines()[1:-1]]:
        assert not leaks(dump, part)
    assert not leaks(dump, stored_body)


def test_secrets_decrypt_after_rotating_to_a_new_key_and_dropping_the_old(
    make_user, settings, tmp_path
):
    old, new = fernet_key(), fernet_key()
    settings.CREDENTIAL_KEYS = [old]
    user = make_user()
    key = make_ssh_key(tmp_path)
    token = store_token(user)
    ssh = services.create_credential(
        owner=user, name="deploy", kind="ssh-key", host="git.example.com", secret=key.private
    )
    revoked = services.revoke_credential(credential=store_token(user, "old", TOKEN + "old"))
    expected_key = services.secret_for(ssh)

    settings.CREDENTIAL_KEYS = [new, old]
    first = services.rotate_keys()
    second = services.rotate_keys()
    settings.CREDENTIAL_KEYS = [new]

    assert (first.reencrypted, first.already_current, first.revoked) == (2, 0, 1)
    assert (second.reencrypted, second.already_current, second.revoked) == (0, 2, 1)
    assert services.secret_for(token) == TOKEN
    assert services.secret_for(ssh) == expected_key
    assert Credential.objects.get(pk=revoked.pk).secret_ciphertext == ""


def test_the_command_reports_counts_and_changes_nothing_when_run_again(make_user, settings, capsys):
    old = fernet_key()
    settings.CREDENTIAL_KEYS = [old]
    store_token(make_user())
    settings.CREDENTIAL_KEYS = [fernet_key(), old]

    call_command("rotate_credential_keys")
    rotated = Credential.objects.get().secret_ciphertext
    call_command("rotate_credential_keys")

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Re-encrypted 1 secret(s) with the first key; 0 already used it")
    assert out[1].startswith("Re-encrypted 0 secret(s) with the first key; 1 already used it")
    assert Credential.objects.get().secret_ciphertext == rotated


def test_rotation_refuses_and_changes_nothing_when_a_key_is_missing(make_user, settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]
    user = make_user()
    store_token(user, "first")
    settings.CREDENTIAL_KEYS = [fernet_key()]
    store_token(user, "second")
    before = dict(Credential.objects.values_list("name", "secret_ciphertext"))

    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_credential_keys")

    assert dict(Credential.objects.values_list("name", "secret_ciphertext")) == before


def test_rotation_without_keys_says_what_to_set(settings):
    settings.CREDENTIAL_KEYS = []

    with pytest.raises(CommandError, match="CREDENTIAL_KEYS"):
        call_command("rotate_credential_keys")


def test_a_secret_whose_key_was_dropped_is_refused_not_returned(make_user, settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]
    credential = store_token(make_user())
    settings.CREDENTIAL_KEYS = [fernet_key()]

    with pytest.raises(UndecryptableSecret):
        services.secret_for(credential)


def test_the_same_secret_is_never_stored_twice_alike(make_user, settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]
    user = make_user()

    first, second = store_token(user, "a"), store_token(user, "b")

    assert first.secret_ciphertext != second.secret_ciphertext


def test_the_system_check_names_a_malformed_key_by_position(settings):
    settings.CREDENTIAL_KEYS = [fernet_key(), "too-short"]

    [error] = credential_keys_are_fernet_keys(None)

    assert error.id == "credentials.E001"
    assert "entry 2" in error.msg and "too-short" not in error.msg


def test_the_system_check_accepts_no_keys_and_good_keys(settings):
    settings.CREDENTIAL_KEYS = []
    assert credential_keys_are_fernet_keys(None) == []
    settings.CREDENTIAL_KEYS = [fernet_key(), fernet_key()]
    assert credential_keys_are_fernet_keys(None) == []
