"""Every write to a credential: create, rotate the secret, revoke, record a use, re-encrypt.

The API, the admin and the management command all come here, so they share one set of checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from core.exceptions import Conflict, Invalid
from credentials import keys, validation
from credentials.models import Credential, CredentialKind


class CredentialRevoked(Conflict):
    code = "credential_revoked"


def _name_taken(name: str) -> Invalid:
    return Invalid(f"You already have a credential called {name!r}.", field="name")


@sensitive_variables("secret", "checked")
def create_credential(
    *,
    owner: AbstractBaseUser,
    name: str,
    kind: str,
    host: str,
    secret: str,
    username: str = "",
    known_hosts: str = "",
) -> Credential:
    """Validates every field, encrypts the secret, and stores the credential for `owner`."""
    name = validation.validate_name(name)
    if kind not in CredentialKind.values:
        raise Invalid(f"Use one of: {', '.join(CredentialKind.values)}.", field="kind")
    host = validation.validate_host(host)
    username = validation.validate_username(username)
    known_hosts = validation.validate_known_hosts(kind, known_hosts)
    checked = validation.check_secret(kind, secret)
    if Credential.objects.filter(owner=owner, name=name, revoked_at__isnull=True).exists():
        raise _name_taken(name)
    ciphertext = keys.encrypt(checked.value)
    try:
        with transaction.atomic():
            return Credential.objects.create(
                owner=owner,
                name=name,
                kind=kind,
                host=host,
                username=username,
                known_hosts=known_hosts,
                secret_ciphertext=ciphertext,
                fingerprint=checked.fingerprint,
            )
    except IntegrityError:
        # Another request took the name between the check above and this insert.
        raise _name_taken(name) from None


@sensitive_variables("secret", "checked")
def rotate_secret(*, credential: Credential, secret: str) -> Credential:
    """Replaces the secret (same checks as at creation); the old one is gone at once."""
    if not credential.is_active:
        raise CredentialRevoked("This credential is revoked; create a new one.")
    checked = validation.check_secret(credential.kind, secret)
    ciphertext = keys.encrypt(checked.value)
    now = timezone.now()
    updated = Credential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
        secret_ciphertext=ciphertext, fingerprint=checked.fingerprint, rotated_at=now
    )
    if not updated:
        raise CredentialRevoked("This credential is revoked; create a new one.")
    credential.refresh_from_db()
    return credential


def revoke_credential(*, credential: Credential) -> Credential:
    """Soft-deletes: the row stays for the record, the ciphertext is wiped. Idempotent."""
    Credential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), secret_ciphertext=""
    )
    credential.refresh_from_db()
    return credential


def secret_for(credential: Credential) -> str:
    """The plaintext secret, for handing to the agent that holds a job's lease and nothing else.

    Records the use. Raises `CredentialRevoked` for a revoked credential, `KeysUnavailable` or
    `UndecryptableSecret` when the keys cannot open it.
    """
    current = Credential.objects.filter(pk=credential.pk).values_list(
        "secret_ciphertext", "revoked_at"
    )
    ciphertext, revoked_at = current.get()
    if revoked_at is not None or not ciphertext:
        raise CredentialRevoked(f"The credential {credential.name!r} is revoked.")
    plaintext = keys.decrypt(ciphertext)
    Credential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())
    return plaintext


@dataclass(frozen=True)
class KeyRotation:
    reencrypted: int
    already_current: int
    revoked: int


def rotate_keys() -> KeyRotation:
    """Re-encrypts every stored secret that the first key does not already open.

    Running it again finds nothing to do. Raises `UndecryptableSecret`, changing nothing, when
    any secret cannot be opened with the configured keys.
    """
    keys.require_keys()
    reencrypted = already_current = revoked = 0
    with transaction.atomic():
        for pk, ciphertext in (
            Credential.objects.select_for_update()
            .order_by("pk")
            .values_list("pk", "secret_ciphertext")
        ):
            if not ciphertext:
                revoked += 1
            elif keys.is_under_first_key(ciphertext):
                already_current += 1
            else:
                Credential.objects.filter(pk=pk).update(
                    secret_ciphertext=keys.reencrypt(ciphertext)
                )
                reencrypted += 1
    return KeyRotation(reencrypted=reencrypted, already_current=already_current, revoked=revoked)
