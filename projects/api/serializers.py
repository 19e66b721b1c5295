"""Shapes of the user API: requests are validated here, responses are read-only views of rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from nodes.models import Node
from projects import validation
from projects.models import Event, Job, Project
from projects.selectors import active_job


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so nobody can slip in an owner, a path or a status."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {str(name): ["Unknown field; it cannot be set."] for name in unknown}
                )
        return super().to_internal_value(data)


def url_policy() -> validation.UrlPolicy:
    return validation.UrlPolicy(
        allowed_schemes=frozenset(s.lower() for s in settings.GIT_ALLOWED_SCHEMES),
        allow_private_hosts=settings.GIT_ALLOW_PRIVATE_HOSTS,
    )


def _checked(rule, *args):
    try:
        return rule(*args)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from exc


@extend_schema_field(OpenApiTypes.STR)
class NodeField(serializers.Field):
    """A node given by name or id."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or not data or len(data) > 64:
            raise serializers.ValidationError("Give the node's name or id.")
        value = data
        try:
            node = Node.objects.filter(pk=uuid.UUID(value)).first()
        except ValueError:
            node = Node.objects.filter(name=value).first()
        if node is None:
            raise serializers.ValidationError(f"No node named {value!r}.")
        return node


class CloneRequestSerializer(StrictSerializer):
    name = serializers.CharField(
        max_length=100,
        trim_whitespace=False,
        help_text="Project name: 1-100 of A-Z a-z 0-9 . _ -, starting with a letter or digit. "
        "The checkout lands at `{user_id}_{name}` under the node's projects root.",
    )
    git_url = serializers.CharField(
        max_length=validation.MAX_URL_LENGTH,
        trim_whitespace=False,
        help_text="Repository URL; schemes from GIT_ALLOWED_SCHEMES, no credentials.",
    )
    branch = serializers.CharField(
        max_length=validation.MAX_BRANCH_LENGTH,
        trim_whitespace=False,
        help_text="Branch to check out (rules of `git check-ref-format --branch`).",
    )
    node = NodeField(help_text="Name or id of the node to clone onto.")
    depth = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=1_000_000,
        help_text="Shallow clone with this many commits of history.",
    )

    def validate_name(self, value: str) -> str:
        return _checked(validation.validate_project_name, value)

    def validate_git_url(self, value: str) -> str:
        return _checked(validation.validate_git_url, value, url_policy())

    def validate_branch(self, value: str) -> str:
        return _checked(validation.validate_branch, value)


class EmptyRequestSerializer(StrictSerializer):
    """Actions that take no parameters still refuse a body that tries to set something."""


class NodeSummarySerializer(serializers.ModelSerializer):
    online = serializers.BooleanField(source="is_online", read_only=True)

    class Meta:
        model = Node
        fields = ["id", "name", "enabled", "online"]


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "state",
            "attempt",
            "max_attempts",
            "queued_at",
            "available_at",
            "leased_at",
            "lease_expires_at",
            "progress",
            "result",
            "error",
            "finished_at",
        ]
        read_only_fields = fields


@extend_schema_field(JobSerializer(allow_null=True))
class ActiveJobField(serializers.Field):
    """The job running now or next for the project, if any."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, project: Project):
        job = active_job(project)
        return JobSerializer(job).data if job else None


class ProjectSerializer(serializers.ModelSerializer):
    owner = serializers.IntegerField(source="owner_id", read_only=True)
    node = NodeSummarySerializer(read_only=True)
    active_job = ActiveJobField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "owner",
            "node",
            "git_url",
            "branch",
            "depth",
            "target_path",
            "status",
            "commit",
            "checkout_branch",
            "local_path",
            "last_error",
            "active_job",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ProjectStatusSerializer(serializers.ModelSerializer):
    node = NodeSummarySerializer(read_only=True)
    branch = serializers.CharField(source="checkout_branch", read_only=True)
    active_job = ActiveJobField()

    class Meta:
        model = Project
        fields = [
            "id",
            "status",
            "node",
            "commit",
            "branch",
            "local_path",
            "active_job",
            "last_error",
            "version",
            "updated_at",
        ]
        read_only_fields = fields


class AcceptedJobSerializer(serializers.Serializer):
    """The answer to an action: the project as it is now and the job that was queued."""

    project = ProjectSerializer()
    job = JobSerializer()


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["position", "project_id", "version", "type", "data", "meta", "recorded_at"]
        read_only_fields = fields
