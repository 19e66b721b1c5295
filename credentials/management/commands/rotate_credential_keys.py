"""`manage.py rotate_credential_keys`: re-encrypt every stored secret with the first key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.exceptions import DomainError
from credentials import services


class Command(BaseCommand):
    help = (
        "Re-encrypts every git credential's secret with the first key in CREDENTIAL_KEYS. "
        "Run it after putting a new key first; once it reports nothing left to do, the old "
        "keys can be removed. Running it again changes nothing."
    )

    def handle(self, *args, **options) -> None:
        try:
            result = services.rotate_keys()
        except DomainError as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            f"Re-encrypted {result.reencrypted} secret(s) with the first key; "
            f"{result.already_current} already used it; "
            f"{result.revoked} revoked credential(s) hold no secret."
        )
