"""Shapes of the credentials API. Requests carry the secret in; no response ever carries it out."""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from credentials import selectors, validation
from credentials.models import Credential, CredentialKind


class _StrictInput(serializers.Serializer):
    """Refuses unknown fields and anything but strings, so that nothing else can be set and a
    number never becomes a secret. (This app cannot reuse `projects`' strict base: projects
    will come to depend on credentials, not the other way round.)"""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {str(name): ["Unknown field; it cannot be set."] for name in unknown}
                )
            mistyped = {
                name: ["Not a string."]
                for name in self.fields
                if name in data and data[name] is not None and not isinstance(data[name], str)
            }
            if mistyped:
                raise serializers.ValidationError(mistyped)
        return super().to_internal_value(data)


def _secret_field(help_text: str) -> serializers.CharField:
    # Kept as given: the services check it and must see exactly what was sent.
    return serializers.CharField(
        write_only=True,
        max_length=validation.SSH_KEY_MAX_BYTES,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text=help_text,
    )


class CredentialCreateSerializer(_StrictInput):
    """A new credential; its secret is checked, then stored only encrypted."""

    name = serializers.CharField(
        max_length=64, help_text="Yours to choose; unique among your active credentials."
    )
    kind = serializers.ChoiceField(choices=CredentialKind.choices)
    host = serializers.CharField(
        max_length=260,
        help_text="The exact host, or host:port, the secret may be sent to (no scheme or path).",
    )
    username = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="The user name git sends with an HTTPS token, or the SSH user.",
    )
    secret = _secret_field(
        "An access token (https-token), or an unencrypted OpenSSH or PEM private key (ssh-key)."
        " Never shown again."
    )
    known_hosts = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        max_length=validation.KNOWN_HOSTS_MAX_BYTES,
        help_text="ssh-key only: known_hosts lines for the host, as ssh-keyscan prints them.",
    )


class SecretRotationSerializer(_StrictInput):
    """A replacement secret, checked like the first; the old one is gone at once."""

    secret = _secret_field("The new secret, checked like the first. Never shown again.")


class ProjectReferenceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class CredentialSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    fingerprint = serializers.CharField(
        read_only=True,
        help_text="SHA256 fingerprint of an SSH key (as ssh-keygen -l), or '…' and the last "
        "4 characters of a token of 16 characters or more.",
    )
    projects = serializers.SerializerMethodField(help_text="Projects that use this credential.")

    class Meta:
        model = Credential
        fields = [
            "id",
            "name",
            "kind",
            "host",
            "username",
            "known_hosts",
            "owner",
            "fingerprint",
            "created_at",
            "last_used_at",
            "rotated_at",
            "revoked_at",
            "projects",
        ]
        read_only_fields = fields

    @extend_schema_field(ProjectReferenceSerializer(many=True))
    def get_projects(self, credential: Credential) -> list[dict]:
        return ProjectReferenceSerializer(selectors.projects_using(credential), many=True).data
