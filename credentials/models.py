"""People's git credentials: a token or an SSH key, stored only encrypted (see `keys`)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class CredentialKind(models.TextChoices):
    HTTPS_TOKEN = "https-token", "HTTPS token"
    SSH_KEY = "ssh-key", "SSH key"


class Credential(models.Model):
    """A secret its owner lets Gitfleet send to one git host on their behalf.

    The secret itself is kept only as Fernet ciphertext; revoking wipes even that.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="git_credentials"
    )
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=CredentialKind.choices)
    host = models.CharField(
        max_length=260, help_text="The exact host, or host:port, the secret may be sent to."
    )
    username = models.CharField(max_length=100, blank=True, default="")
    known_hosts = models.TextField(blank=True, default="")
    secret_ciphertext = models.TextField(blank=True, default="", editable=False)
    fingerprint = models.CharField(max_length=100, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A revoked credential frees its name, so a replacement can take it.
            models.UniqueConstraint(
                fields=["owner", "name"],
                condition=Q(revoked_at__isnull=True),
                name="credential_name_unique_per_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} for {self.host})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
