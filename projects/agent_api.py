"""The agent-facing API: heartbeat, long-polled lease, renew, complete, release.

It lives in `projects` because it hands out and reports on jobs; it uses `nodes` for agent
authentication and presence (`nodes` never imports `projects`). The protocol is described in
`docs/agent-protocol.md`.

Every agent view is async and does its database work on `core.async_db` (a small pool that gives
its connection back after each step). A lease call that has to wait is held below Django by
`projects.lease_hold`, on the process's wake-up hub, so idle long polls cost a little memory
and no thread or connection.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from django.conf import settings
from django.db.models import BigIntegerField
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.async_db import run_db
from core.exceptions import Conflict, Invalid
from core.schema import errors
from core.serializers import rendered, validated
from credentials.models import CredentialKind
from nodes.authentication import AgentTokenAuthentication
from nodes.models import Node
from nodes.services import Heartbeat, record_presence
from projects import leases, progress
from projects.api.serializers import StrictSerializer, StrictUUIDField
from projects.delivery import Undeliverable, access_for
from projects.domain import JobKind, PullStrategy
from projects.lease_hold import Parked, hold_of
from projects.models import JOB_KIND_CHOICES, JOB_STATE_CHOICES
from projects.wakeups import hub

logger = logging.getLogger(__name__)

# A workspace summary lists at most 20 paths of at most a few KB each, plus small summaries.
MAX_WORKSPACE_BYTES = 65536

# --- Request and response shapes --------------------------------------------------------------


class HeartbeatRequestSerializer(StrictSerializer):
    instance_id = StrictUUIDField(help_text="Made fresh each time the agent starts.")
    # Not trimmed: trimming let 51 characters with a leading control character past the bound.
    agent_version = serializers.CharField(max_length=50, trim_whitespace=False)
    hostname = serializers.CharField(max_length=255)
    disk_free_bytes = serializers.IntegerField(
        min_value=0, max_value=BigIntegerField.MAX_BIGINT, allow_null=True, required=False
    )
    running_jobs = serializers.ListField(
        child=StrictUUIDField(), max_length=256, required=False, default=list
    )
    git_version = serializers.CharField(
        max_length=50,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="`git --version`'s number.",
    )
    git_lfs_version = serializers.CharField(
        max_length=50, required=False, allow_blank=True, trim_whitespace=False,
        help_text="Empty: no git-lfs.",
    )  # fmt: skip


class HeartbeatResponseSerializer(serializers.Serializer):
    server_time = serializers.DateTimeField()
    heartbeat_seconds = serializers.IntegerField()
    online_window_seconds = serializers.IntegerField()


class LeaseRequestSerializer(StrictSerializer):
    instance_id = StrictUUIDField(help_text="Made fresh each time the agent starts.")
    request_id = serializers.RegexField(
        r"^[A-Za-z0-9-]{8,64}$",
        help_text="Made per logical request; a retry after a lost response reuses it.",
    )
    wait = serializers.IntegerField(
        min_value=0,
        required=False,
        help_text="Seconds the server may hold the call (capped by LONG_POLL_MAX_WAIT).",
    )

    def validate_wait(self, value: int) -> int:
        if value > settings.LONG_POLL_MAX_WAIT:
            raise serializers.ValidationError(
                f"At most {settings.LONG_POLL_MAX_WAIT} seconds on this server."
            )
        return value


# The lease answer renders a `leases.Grant` (a job and its project as the leasing append left
# them); complete and release render the `domain.Job` they return. No docstrings on these
# classes: drf-spectacular would publish them as the schema's descriptions.


class JobCredentialSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=CredentialKind.choices)
    host = serializers.CharField()
    username = serializers.CharField(allow_blank=True)
    secret = serializers.CharField()
    known_hosts = serializers.CharField(allow_blank=True)


_STRATEGIES = [strategy.value for strategy in PullStrategy]


class LeasedJobSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="job.id")
    kind = serializers.ChoiceField(source="job.kind", choices=[kind.value for kind in JobKind])
    project_id = serializers.UUIDField(source="project.id")
    git_url = serializers.CharField(source="project.git_url")
    branch = serializers.CharField(
        source="project.branch", help_text="The ref the project is on: branch, tag or commit."
    )
    ref = serializers.SerializerMethodField(
        help_text="The ref to check out; differs from `branch` when a pull moves the checkout."
    )
    target_path = serializers.CharField(
        source="project.target_path", help_text="`{user_id}_{name}`, relative to projects root."
    )
    depth = serializers.IntegerField(source="project.depth", allow_null=True)
    lfs = serializers.BooleanField(source="project.lfs")
    submodules = serializers.CharField(source="project.submodules")
    filter = serializers.CharField(source="project.filter")
    sparse = serializers.ListField(source="project.sparse", child=serializers.CharField())
    timeout_seconds = serializers.IntegerField()
    credential = JobCredentialSerializer(
        source="access.credential",
        allow_null=True,
        help_text="The project's credential, secret included: only in this answer, only to the "
        "agent holding the lease.",
    )
    use_node_credentials = serializers.BooleanField(
        source="access.use_node_credentials",
        help_text="The owner may use the node's own credential helper and SSH keys.",
    )
    ssh_known_hosts = serializers.CharField(
        source="access.ssh_known_hosts",
        allow_blank=True,
        help_text="The operator's known_hosts lines (GIT_SSH_KNOWN_HOSTS) for SSH host checks.",
    )
    strategy = serializers.SerializerMethodField(help_text="How a pull treats local work.")
    force = serializers.SerializerMethodField(help_text="A delete that may lose local work.")

    @extend_schema_field(serializers.ChoiceField(choices=_STRATEGIES))
    def get_strategy(self, grant) -> str:
        return grant.job.options.get("strategy", PullStrategy.FF_ONLY.value)

    def get_force(self, grant) -> bool:
        return bool(grant.job.options.get("force", False))

    def get_ref(self, grant) -> str:
        return grant.job.options.get("ref") or grant.project.branch


class LeaseSerializer(serializers.Serializer):
    token = serializers.CharField(source="job.lease_token")
    attempt = serializers.IntegerField(source="job.attempt")
    expires_at = serializers.DateTimeField(source="job.lease_expires_at")
    renew_every_seconds = serializers.IntegerField()


class LeaseResponseSerializer(serializers.Serializer):
    job = LeasedJobSerializer(source="*")
    lease = LeaseSerializer(source="*")


class ProgressSerializer(StrictSerializer):
    phase = serializers.CharField(max_length=40, required=False)
    percent = serializers.IntegerField(min_value=0, max_value=100, required=False)
    objects = serializers.IntegerField(min_value=0, required=False)
    bytes = serializers.IntegerField(min_value=0, required=False)


class RenewRequestSerializer(StrictSerializer):
    lease_token = serializers.CharField(max_length=64)
    progress = ProgressSerializer(required=False)


class RenewResponseSerializer(serializers.Serializer):
    expires_at = serializers.DateTimeField()


class ProgressRequestSerializer(StrictSerializer):
    lease_token = serializers.CharField(max_length=64)
    progress = ProgressSerializer()


class ProgressResponseSerializer(serializers.Serializer):
    recorded_at = serializers.DateTimeField()


class ResultSerializer(StrictSerializer):
    commit = serializers.RegexField(
        r"^(?:[0-9a-f]{40}|[0-9a-f]{64})?$", allow_blank=True, help_text="Empty for delete."
    )
    branch = serializers.CharField(max_length=255, allow_blank=True)
    local_path = serializers.CharField(max_length=4096, allow_blank=True)
    duration_ms = serializers.IntegerField(min_value=0)
    size_bytes = serializers.IntegerField(min_value=0)
    ref = serializers.CharField(max_length=255, allow_blank=True, required=False)
    ref_kind = serializers.ChoiceField(
        choices=["", "branch", "tag", "commit"], required=False, help_text="Empty for delete."
    )
    submodules = serializers.IntegerField(min_value=0, required=False)
    submodules_skipped = serializers.IntegerField(min_value=0, required=False)
    lfs_files = serializers.IntegerField(min_value=0, required=False)
    workspace = serializers.JSONField(
        required=False, help_text="The checkout's state after the job (dirty, ahead, behind, ...)."
    )
    backup_ref = serializers.RegexField(
        r"^refs/gitfleet/backup/[0-9A-Za-z._-]{1,64}$",
        required=False,
        help_text="Where a `reset` pull saved the local work.",
    )

    def validate_workspace(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("An object.")
        if len(json.dumps(value)) > MAX_WORKSPACE_BYTES:
            raise serializers.ValidationError(f"At most {MAX_WORKSPACE_BYTES} bytes of JSON.")
        return value


class ErrorReportSerializer(StrictSerializer):
    code = serializers.RegexField(r"^[a-z][a-z0-9_]{0,63}$")
    message = serializers.CharField(max_length=2000, allow_blank=True)
    retryable = serializers.BooleanField()


class CompleteRequestSerializer(StrictSerializer):
    lease_token = serializers.CharField(max_length=64)
    outcome = serializers.ChoiceField(choices=["succeeded", "failed"])
    result = ResultSerializer(required=False)
    error = ErrorReportSerializer(required=False)

    def validate(self, attrs):
        if attrs["outcome"] == "succeeded" and ("result" not in attrs or "error" in attrs):
            raise serializers.ValidationError({"result": ["A success carries result, no error."]})
        if attrs["outcome"] == "failed" and ("error" not in attrs or "result" in attrs):
            raise serializers.ValidationError({"error": ["A failure carries error, no result."]})
        return attrs


class JobOutcomeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=JOB_KIND_CHOICES)
    state = serializers.ChoiceField(choices=JOB_STATE_CHOICES)
    attempt = serializers.IntegerField()
    result = serializers.JSONField(allow_null=True)
    error = serializers.JSONField(allow_null=True)


class CompleteResponseSerializer(serializers.Serializer):
    job = JobOutcomeSerializer()


class ReleaseRequestSerializer(StrictSerializer):
    lease_token = serializers.CharField(max_length=64)
    reason = serializers.RegexField(r"^[a-z][a-z0-9_]{0,63}$", default="agent_shutdown")


# --- Views ------------------------------------------------------------------------------------


class AgentView(APIView):
    """Agent token only, JSON only, no throttling (presence is written throttled instead)."""

    # Async to Django: the whole DRF request (authentication, validation, the service call) runs
    # as one step on `core.async_db`'s pool, whose threads keep their database connections
    # between requests. A sync view would get a fresh thread, and on SQLite a fresh connection,
    # for every request.

    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes: list = []
    renderer_classes = [JSONRenderer]
    view_is_async = True

    async def dispatch(self, request, *args, **kwargs):
        return await run_db(self._dispatch_rendered, request, *args, **kwargs)

    def _dispatch_rendered(self, request, *args, **kwargs) -> HttpResponse:
        """DRF's dispatch, and its answer rendered in the same step on the pool. Given DRF's
        `Response`, which renders late, Django's handler would hop to a thread of its own just to
        render it (BENCHMARKS.md, finding 22); a plain response with the same status, headers
        and body is sent as it is."""
        response = super().dispatch(request, *args, **kwargs)
        if not isinstance(response, Response):
            return response
        response.render()
        plain = HttpResponse(response.content, status=response.status_code)
        for header, value in response.items():
            plain[header] = value
        return plain

    @property
    def node(self) -> Node:
        return self.request.user.node


def _presence(node: Node, instance_id: str, heartbeat: Heartbeat | None = None) -> None:
    presence = record_presence(node=node, instance_id=instance_id, heartbeat=heartbeat)
    if presence.replaced_instance is not None:
        released = leases.release_other_instances(node=node, instance_id=str(instance_id))
        logger.info(
            "node %s: agent instance %s replaced %s; %d lease(s) released",
            node.name,
            instance_id,
            presence.replaced_instance,
            released,
        )


class HeartbeatView(AgentView):
    @extend_schema(
        request=HeartbeatRequestSerializer,
        responses={200: HeartbeatResponseSerializer, **errors(409)},
        summary="Report the agent's state; keeps the node online",
        tags=["agent"],
    )
    def post(self, request: Request) -> Response:
        data = validated(HeartbeatRequestSerializer, request.data)
        heartbeat = Heartbeat(
            agent_version=data["agent_version"],
            hostname=data["hostname"],
            disk_free_bytes=data.get("disk_free_bytes"),
            running_jobs=len(data["running_jobs"]),
            git_version=data.get("git_version"),
            git_lfs_version=data.get("git_lfs_version"),
        )
        _presence(self.node, str(data["instance_id"]), heartbeat)
        timing = {
            "server_time": timezone.now(),
            "heartbeat_seconds": settings.LEASE_RENEW_SECONDS,
            "online_window_seconds": settings.NODE_ONLINE_WINDOW,
        }
        return Response(rendered(HeartbeatResponseSerializer, timing))


class InstanceOverlap(Conflict):
    code = "instance_overlap"


class LeaseView(AgentView):
    """Long poll for the node's next job. Waiting costs no thread and no connection."""

    # Each pass through this view is one step on the database pool: authentication, parsing,
    # presence and a look for a job. When the look finds nothing and the agent asked to wait, the
    # view parks the call with `projects.lease_hold` and answers 204; that layer holds the call
    # below Django, sends it through again when woken (a look after a wake-up, which checks the
    # token again and goes straight to the claim), and sends the 204 when the wait runs out. A
    # job that appeared unannounced meanwhile is what the hub's periodic re-check wakes waiters
    # for, and the agent's next poll leases it.

    @extend_schema(
        request=LeaseRequestSerializer,
        responses={
            200: LeaseResponseSerializer,
            204: OpenApiResponse(description="The wait ended with no job for this node."),
            **errors(409),
        },
        summary="Long-poll for the node's next job and lease it",
        tags=["agent"],
    )
    def post(self, request: Request) -> Response:
        hold = hold_of(getattr(request._request, "scope", None))
        if hold is not None and hold.overlap:
            raise InstanceOverlap(
                "Another lease call of this agent instance took over; two agents share this "
                "node's token and instance id.",
                field="instance_id",
            )
        data = validated(LeaseRequestSerializer, request.data)
        woken = hold is not None and hold.woken
        node_id = str(self.node.pk)
        if not woken:
            _presence(self.node, str(data["instance_id"]))
        generation = hub.generation(node_id)
        grant = self._look(data, woken=woken)
        if grant is not None:
            return Response(rendered(LeaseResponseSerializer, grant))
        wait = data.get("wait", settings.LONG_POLL_DEFAULT_WAIT)
        if wait > 0 and hold is not None:
            hold.park(
                Parked(
                    node_id=node_id,
                    instance_id=str(data["instance_id"]),
                    request_id=data["request_id"],
                    wait=wait,
                    generation=generation,
                )
            )
        return Response(status=204)

    def _look(self, data: dict, *, woken: bool) -> leases.Grant | None:
        """The next job with what it needs (`projects.delivery`), or None. A job that cannot
        be handed over is failed at once, and the look goes on to the next one."""
        while True:
            grant = leases.lease(
                node=self.node,
                request_id=data["request_id"],
                instance_id=str(data["instance_id"]),
                woken=woken,
            )
            if grant is None:
                return None
            try:
                access = access_for(
                    kind=grant.job.kind,
                    owner_id=grant.project.owner_id,
                    credential_id=grant.project.credential_id,
                    secure=self.request.is_secure(),
                )
            except Undeliverable as refusal:
                logger.warning(
                    "node %s: job %s not handed over: %s", self.node.name, grant.job.id,
                    refusal.code,
                )  # fmt: skip
                leases.complete(
                    node=self.node,
                    job_id=grant.job.id,
                    lease_token=grant.job.lease_token,
                    result=None,
                    error=refusal.as_error(),
                )
                woken = True
                continue
            return dataclasses.replace(grant, access=access)


class RenewView(AgentView):
    @extend_schema(
        request=RenewRequestSerializer,
        responses={200: RenewResponseSerializer, **errors(404, 409)},
        summary="Extend a running job's lease and report progress",
        tags=["agent"],
    )
    def post(self, request: Request, job_id) -> Response:
        data = validated(RenewRequestSerializer, request.data)
        expires_at = leases.renew(
            node=self.node,
            job_id=job_id,
            lease_token=data["lease_token"],
            progress=data.get("progress"),
        )
        return Response(rendered(RenewResponseSerializer, {"expires_at": expires_at}))


class ProgressView(AgentView):
    @extend_schema(
        request=ProgressRequestSerializer,
        responses={200: ProgressResponseSerializer, **errors(404, 409)},
        summary="Report a running job's progress (kept outside the event log)",
        tags=["agent"],
    )
    def post(self, request: Request, job_id) -> Response:
        data = validated(ProgressRequestSerializer, request.data)
        recorded_at = progress.record_progress(
            node=self.node,
            job_id=job_id,
            lease_token=data["lease_token"],
            progress=dict(data["progress"]),
        )
        return Response(rendered(ProgressResponseSerializer, {"recorded_at": recorded_at}))


class CompleteView(AgentView):
    @extend_schema(
        request=CompleteRequestSerializer,
        responses={200: CompleteResponseSerializer, **errors(404, 409)},
        summary="Report a job's outcome (idempotent)",
        tags=["agent"],
    )
    def post(self, request: Request, job_id) -> Response:
        data = validated(CompleteRequestSerializer, request.data)
        result = dict(data["result"]) if "result" in data else None
        if result is not None and not result["commit"]:
            kind = leases.job_kind(node=self.node, job_id=job_id)
            if kind != JobKind.DELETE:
                raise Invalid(
                    "A clone or pull reports the commit it checked out.", field="result.commit"
                )
        job = leases.complete(
            node=self.node,
            job_id=job_id,
            lease_token=data["lease_token"],
            result=result,
            error=dict(data["error"]) if "error" in data else None,
        )
        return Response(rendered(CompleteResponseSerializer, {"job": job}))


class ReleaseView(AgentView):
    @extend_schema(
        request=ReleaseRequestSerializer,
        responses={200: CompleteResponseSerializer, **errors(404, 409)},
        summary="Give a running job back without spending an attempt",
        tags=["agent"],
    )
    def post(self, request: Request, job_id) -> Response:
        data = validated(ReleaseRequestSerializer, request.data)
        job = leases.release(
            node=self.node, job_id=job_id, lease_token=data["lease_token"], reason=data["reason"]
        )
        return Response(rendered(CompleteResponseSerializer, {"job": job}))
