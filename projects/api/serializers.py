"""Shapes of the user API: requests are parsed here (JSON types, required and unknown fields,
lengths); what they ask for is validated by `projects.services`. Responses are read-only views
of rows."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

import gitpolicy
from nodes.models import Node
from projects import progress
from projects.domain import PullStrategy
from projects.models import Event, Job, Project
from projects.redaction import readable
from projects.selectors import active_job, failure_reason, last_error
from projects.services import MAX_CLONE_DEPTH

# The JSON type each kind of field takes. DRF would take 5 for "5" in a CharField, "5" or 5.0
# for 5 in an IntegerField and "yes" or 1 for true in a BooleanField; the schema says otherwise.
_JSON_TYPES: tuple[tuple[type[serializers.Field], type], ...] = (
    (serializers.BooleanField, bool),
    (serializers.IntegerField, int),
    (serializers.CharField, str),
    (serializers.ChoiceField, str),
    (serializers.UUIDField, str),
)


def _json_type_mismatch(field: serializers.Field, value: object) -> str | None:
    """The field's own refusal if `value` is not of the JSON type it takes, else None (null is
    left to the field)."""
    if value is None:
        return None
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        reasons = (_json_type_mismatch(field.child, item) for item in value)
        return next((reason for reason in reasons if reason), None)
    json_type = next((t for kind, t in _JSON_TYPES if isinstance(field, kind)), None)
    # bool is an int in Python, not in JSON.
    if json_type is None or (
        isinstance(value, json_type) and (json_type is bool or not isinstance(value, bool))
    ):
        return None
    key = "invalid" if "invalid" in field.error_messages else "invalid_choice"
    try:
        field.fail(key, input=value, value=value)
    except serializers.ValidationError as exc:
        return str(exc.detail[0])
    return None


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so nobody can slip in an owner, a path or a status, and
    values of another JSON type than the field's, so that what is accepted is what the schema
    describes."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {str(name): ["Unknown field; it cannot be set."] for name in unknown}
                )
            mistyped = {
                name: [reason]
                for name, field in self.fields.items()
                if name in data and (reason := _json_type_mismatch(field, data[name]))
            }
            if mistyped:
                raise serializers.ValidationError(mistyped)
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUID as JSON carries it: a string in the 8-4-4-4-12 form. DRF's own field also takes a
    number (so `false` became UUID 0), a bare hex string and `urn:uuid:` or `{…}` forms."""

    _FORM = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\Z")

    def to_internal_value(self, data):
        if not isinstance(data, str) or not self._FORM.match(data):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictSerializerSchema(OpenApiSerializerExtension):
    """Says in the OpenAPI schema what `StrictSerializer` does: no properties but the declared."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


def canonical_uuid(text: str) -> uuid.UUID | None:
    """The UUID `text` spells in its canonical form (lower-case 8-4-4-4-12), else None: braces,
    `urn:uuid:`, upper case or missing hyphens name nothing, as in every URL of the API."""
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    return value if str(value) == text else None


@extend_schema_field(OpenApiTypes.STR)
class NodeField(serializers.Field):
    """A node given by name or id."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or not data or len(data) > 64:
            raise serializers.ValidationError("Give the node's name or id.")
        node_id = canonical_uuid(data)
        if node_id is not None:
            node = Node.objects.filter(pk=node_id).first()
        else:
            node = Node.objects.filter(name=data).first()
        if node is None:
            raise serializers.ValidationError(f"No node named {data!r}.")
        return node


class CloneRequestSerializer(StrictSerializer):
    name = serializers.CharField(
        max_length=gitpolicy.MAX_PROJECT_NAME_LENGTH,
        trim_whitespace=False,
        help_text="Project name: 1-100 of A-Z a-z 0-9 . _ -, starting with a letter or digit. "
        "The checkout lands at `{user_id}_{name}` under the node's projects root.",
    )
    git_url = serializers.CharField(
        max_length=gitpolicy.MAX_URL_LENGTH,
        trim_whitespace=False,
        help_text="Repository URL; schemes from GIT_ALLOWED_SCHEMES, no credentials.",
    )
    ref = serializers.CharField(
        required=False,
        max_length=gitpolicy.MAX_BRANCH_LENGTH,
        trim_whitespace=False,
        help_text="What to check out: a branch, a tag, or a full 40-hex commit id (a branch wins "
        "over a tag of the same name). Required unless `branch` is given.",
    )
    branch = serializers.CharField(
        required=False,
        max_length=gitpolicy.MAX_BRANCH_LENGTH,
        trim_whitespace=False,
        help_text="The older name of `ref`, for a branch only (rules of `git check-ref-format "
        "--branch`); kept so that existing clients keep working.",
    )
    node = NodeField(help_text="Name or id of the node to clone onto.")
    depth = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_CLONE_DEPTH,
        help_text="Shallow clone with this many commits of history.",
    )
    sync_interval = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=60,
        max_value=30 * 86400,
        help_text="Pull every this many seconds once ready; null or absent for no scheduled sync.",
    )
    lfs = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Download Git LFS objects. Default: true when the node has git-lfs; true on a "
        "node without it is refused (409).",
    )
    submodules = serializers.ChoiceField(
        choices=list(gitpolicy.SUBMODULE_MODES),
        required=False,
        default="none",
        help_text="`none` (default; the status counts the skipped ones) or `recursive`.",
    )
    filter = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=64,
        trim_whitespace=False,
        help_text="Partial clone: `blob:none`, `tree:0` or `blob:limit=<n>[k|m|g]`. Default: none.",
    )
    sparse = serializers.ListField(
        child=serializers.CharField(max_length=255, trim_whitespace=False),
        required=False,
        default=list,
        max_length=gitpolicy.MAX_SPARSE_PATHS,
        help_text="Sparse checkout (cone mode): the folders to check out, relative to the "
        "repository. Default: all.",
    )
    credential = StrictUUIDField(
        required=False,
        allow_null=True,
        help_text="Id of one of your credentials for the git_url's host[:port]; its jobs then "
        "authenticate with it.",
    )

    def to_internal_value(self, data):
        # `ref` (or `branch`) is required; named with the other missing fields in one answer.
        missing = isinstance(data, dict) and data.get("ref") is None and "branch" not in data
        try:
            values = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if missing and isinstance(exc.detail, dict):
                exc.detail.setdefault("ref", [self._ref_required()])
            raise
        if missing:
            raise serializers.ValidationError({"ref": [self._ref_required()]})
        return values

    @staticmethod
    def _ref_required() -> str:
        return "A branch, tag or full commit id is required (ref, or branch for a branch)."


@extend_schema_serializer(component_name="CloneRequest")
class CloneRequestSchemaSerializer(CloneRequestSerializer):
    """The clone request as the schema states it: `ref` required. `branch` alone is still
    accepted, as the older name of `ref` for a branch, so that existing clients keep working."""

    ref = serializers.CharField(
        max_length=gitpolicy.MAX_BRANCH_LENGTH,
        trim_whitespace=False,
        help_text="What to check out: a branch, a tag, or a full 40-hex commit id (a branch wins "
        "over a tag of the same name). A body with `branch` instead is accepted too.",
    )


class CredentialSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class ProjectChangeSerializer(StrictSerializer):
    credential = StrictUUIDField(
        required=False,
        allow_null=True,
        help_text="Id of one of your credentials for the project's host[:port], or null for none.",
    )
    sync_interval = serializers.IntegerField(
        required=False,
        allow_null=True,
        # sync.schedule's MIN_INTERVAL and MAX_INTERVAL, which check it again.
        min_value=60,
        max_value=30 * 86400,
        help_text="Pull every this many seconds; null for no scheduled sync.",
    )

    def validate(self, attrs):
        if not attrs:
            message = ["Give credential, sync_interval or both."]
            raise serializers.ValidationError({"credential": message, "sync_interval": message})
        return attrs


# What a PATCH changed: the fields it was given, as they are now.
class ProjectChangedSerializer(serializers.Serializer):
    credential = CredentialSummarySerializer(required=False, allow_null=True)
    sync_interval = serializers.IntegerField(required=False, allow_null=True)

    def to_representation(self, instance):
        data = {}
        if "credential" in instance:
            credential = instance["credential"]
            data["credential"] = (
                None if credential is None else CredentialSummarySerializer(credential).data
            )
        if "sync_interval" in instance:
            data["sync_interval"] = instance["sync_interval"]
        return data


class EmptyRequestSerializer(StrictSerializer):
    """Actions that take no parameters still refuse a body that tries to set something."""


class PullRequestSerializer(StrictSerializer):
    strategy = serializers.ChoiceField(
        choices=[strategy.value for strategy in PullStrategy],
        default=PullStrategy.FF_ONLY.value,
        help_text="`ff-only` (default) fast-forwards and refuses a dirty or diverged checkout; "
        "`rebase` replays local commits and changes on the new upstream and, on a conflict, "
        "leaves the checkout as it was; `reset` saves all local work under "
        "`refs/gitfleet/backup/<timestamp>`, then makes the checkout equal upstream.",
    )
    ref = serializers.CharField(
        required=False,
        max_length=gitpolicy.MAX_BRANCH_LENGTH,
        trim_whitespace=False,
        help_text="Move the checkout to this branch, tag or full commit id. Default: the branch "
        "it is on (a tag or commit is checked out again).",
    )


class NodeSummarySerializer(serializers.ModelSerializer):
    online = serializers.BooleanField(source="is_online", read_only=True)

    class Meta:
        model = Node
        fields = ["id", "name", "enabled", "online"]


class JobSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField(
        help_text="Latest progress of git (phase, percent, objects, bytes), updated every few "
        "seconds while the job runs."
    )
    progress_at = serializers.SerializerMethodField(
        help_text="When the agent last reported progress."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "state",
            "options",
            "attempt",
            "max_attempts",
            "queued_at",
            "available_at",
            "leased_at",
            "lease_expires_at",
            "progress",
            "progress_at",
            "result",
            "error",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_progress(self, job: Job) -> dict:
        return progress.current(job)[0]

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_progress_at(self, job: Job) -> str | None:
        moment = progress.current(job)[1]
        return serializers.DateTimeField().to_representation(moment) if moment else None


@extend_schema_field(JobSerializer(allow_null=True))
class ActiveJobField(serializers.Field):
    """The job running now or next for the project, if any."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, project: Project):
        job = active_job(project)
        return JobSerializer(job).data if job else None


class FailureReasonSerializer(serializers.Serializer):
    """Why the project is not where it was asked to be (`projects.selectors.failure_reason`)."""

    code = serializers.CharField(read_only=True)
    message = serializers.CharField(read_only=True)
    retry_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When the failed attempt is tried again; null when it will not be.",
    )


@extend_schema_field(FailureReasonSerializer(allow_null=True))
class ReasonField(serializers.Field):
    """The current job's error, or a failed project's last one; null when nothing is wrong."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, project: Project):
        reason = failure_reason(project)
        return FailureReasonSerializer(reason).data if reason else None


@extend_schema_field({"type": "object", "additionalProperties": {}, "nullable": True})
class LastErrorField(serializers.Field):
    """The latest error: the current job's while it waits to be retried, never an older job's
    then (`projects.selectors.last_error`)."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, project: Project):
        return last_error(project)


class ProjectSerializer(serializers.ModelSerializer):
    owner = serializers.IntegerField(source="owner_id", read_only=True)
    ref = serializers.CharField(
        source="branch", read_only=True, help_text="The branch, tag or commit asked for."
    )
    branch = serializers.CharField(read_only=True, help_text="The same as `ref` (older name).")
    sparse = serializers.ListField(child=serializers.CharField(), read_only=True)
    node = NodeSummarySerializer(read_only=True)
    active_job = ActiveJobField()
    # Id and name only: nothing of a credential's secret ever leaves through the project API.
    credential = CredentialSummarySerializer(read_only=True, allow_null=True)
    last_error = LastErrorField()
    reason = ReasonField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "owner",
            "node",
            "git_url",
            "ref",
            "branch",
            "ref_kind",
            "depth",
            "lfs",
            "submodules",
            "filter",
            "sparse",
            "credential",
            "target_path",
            "status",
            "commit",
            "checkout_branch",
            "submodules_skipped",
            "local_path",
            "last_error",
            "reason",
            "workspace",
            "active_job",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ProjectStatusSerializer(serializers.ModelSerializer):
    node = NodeSummarySerializer(read_only=True)
    branch = serializers.CharField(source="checkout_branch", read_only=True)
    ref = serializers.CharField(
        source="branch", read_only=True, help_text="The branch, tag or commit asked for."
    )
    active_job = ActiveJobField()
    last_error = LastErrorField()
    reason = ReasonField()

    class Meta:
        model = Project
        fields = [
            "id",
            "status",
            "node",
            "ref",
            "ref_kind",
            "commit",
            "branch",
            "submodules_skipped",
            "local_path",
            "active_job",
            "last_error",
            "reason",
            "workspace",
            "version",
            "updated_at",
        ]
        read_only_fields = fields


class AcceptedJobSerializer(serializers.Serializer):
    """The answer to an action: the project as it is now and the job that was queued."""

    project = ProjectSerializer()
    job = JobSerializer()


class EventSerializer(serializers.ModelSerializer):
    """An event as people see it (`projects.redaction`): no lease token, no agent instance."""

    class Meta:
        model = Event
        fields = ["position", "project_id", "version", "type", "data", "meta", "recorded_at"]
        read_only_fields = fields

    def to_representation(self, instance: Event):
        body = super().to_representation(instance)
        body["data"], body["meta"] = readable(body["data"]), readable(body["meta"])
        return body
