"""The agent-facing API: heartbeat, long-polled lease, renew, complete, release.

It lives in `projects` because it hands out and reports on jobs; it uses `nodes` for agent
authentication and presence (`nodes` never imports `projects`). The protocol is described in
`docs/agent-protocol.md`.

The lease call is an async view: while it waits it holds no thread and no database connection.
Its database work runs on `core.async_db` (a small pool that gives its connection back after
each step), and it waits on the process's wake-up hub, so idle long polls cost memory only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.db.models import BigIntegerField
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.async_db import run_db
from core.exceptions import Invalid
from core.schema import errors
from nodes.authentication import AgentTokenAuthentication
from nodes.models import Node
from nodes.services import Heartbeat, record_presence
from projects import leases
from projects.api.serializers import StrictSerializer, StrictUUIDField
from projects.domain import JobKind
from projects.wakeups import hub

logger = logging.getLogger(__name__)

# --- Request and response shapes --------------------------------------------------------------


class HeartbeatRequestSerializer(StrictSerializer):
    instance_id = StrictUUIDField(help_text="Made fresh each time the agent starts.")
    agent_version = serializers.CharField(max_length=50)
    hostname = serializers.CharField(max_length=255)
    disk_free_bytes = serializers.IntegerField(
        min_value=0, max_value=BigIntegerField.MAX_BIGINT, allow_null=True, required=False
    )
    running_jobs = serializers.ListField(
        child=StrictUUIDField(), max_length=256, required=False, default=list
    )


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
    slots = serializers.IntegerField(min_value=1, max_value=256, required=False, default=1)

    def validate_wait(self, value: int) -> int:
        if value > settings.LONG_POLL_MAX_WAIT:
            raise serializers.ValidationError(
                f"At most {settings.LONG_POLL_MAX_WAIT} seconds on this server."
            )
        return value


class LeasedJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=[kind.value for kind in JobKind])
    project_id = serializers.UUIDField()
    git_url = serializers.CharField()
    branch = serializers.CharField()
    target_path = serializers.CharField(help_text="`{user_id}_{name}`, relative to projects root.")
    depth = serializers.IntegerField(allow_null=True)
    timeout_seconds = serializers.IntegerField()


class LeaseSerializer(serializers.Serializer):
    token = serializers.CharField()
    attempt = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    renew_every_seconds = serializers.IntegerField()


class LeaseResponseSerializer(serializers.Serializer):
    job = LeasedJobSerializer()
    lease = LeaseSerializer()


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


class ResultSerializer(StrictSerializer):
    commit = serializers.RegexField(
        r"^(?:[0-9a-f]{40}|[0-9a-f]{64})?$", allow_blank=True, help_text="Empty for delete."
    )
    branch = serializers.CharField(max_length=255, allow_blank=True)
    local_path = serializers.CharField(max_length=4096, allow_blank=True)
    duration_ms = serializers.IntegerField(min_value=0)
    size_bytes = serializers.IntegerField(min_value=0)


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


class CompleteResponseSerializer(serializers.Serializer):
    job = serializers.DictField()


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
        return await run_db(super().dispatch, request, *args, **kwargs)

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


def _job_summary(job) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "kind": job.kind,
        "state": job.state,
        "attempt": job.attempt,
        "result": job.result,
        "error": job.error,
    }


class HeartbeatView(AgentView):
    @extend_schema(
        request=HeartbeatRequestSerializer,
        responses={200: HeartbeatResponseSerializer, **errors(409)},
        summary="Report the agent's state; keeps the node online",
        tags=["agent"],
    )
    def post(self, request: Request) -> Response:
        serializer = HeartbeatRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        heartbeat = Heartbeat(
            agent_version=data["agent_version"],
            hostname=data["hostname"],
            disk_free_bytes=data.get("disk_free_bytes"),
            running_jobs=len(data["running_jobs"]),
        )
        _presence(self.node, str(data["instance_id"]), heartbeat)
        return Response(
            {
                "server_time": timezone.now(),
                "heartbeat_seconds": settings.LEASE_RENEW_SECONDS,
                "online_window_seconds": settings.NODE_ONLINE_WINDOW,
            }
        )


class LeaseView(AgentView):
    """Long poll for the node's next job. Async: waiting costs no thread and no connection."""

    # The request's database work is one step on the pool (authentication, presence, the first
    # look for a job), then, only if woken, one more per look. A wait that runs out ends with 204
    # without looking again: a job that appeared unannounced meanwhile is what the hub's periodic
    # re-check wakes waiters for, and the agent's next poll leases it.

    async def dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            if request.method != "POST":
                await run_db(self.initial, request, *args, **kwargs)
                handler = getattr(self, request.method.lower(), self.http_method_not_allowed)
                response = handler(request, *args, **kwargs)
            else:
                response = await self.post(request)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

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
    async def post(self, request: Request) -> Response:
        data, generation, grant = await run_db(self._first_look, request)
        if grant is not None:
            return Response(grant.as_json())
        return await self._wait(data, generation)

    def _first_look(self, request: Request) -> tuple[dict, int, leases.Grant | None]:
        self.initial(request)
        serializer = LeaseRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        _presence(self.node, str(data["instance_id"]))
        generation = hub.generation(str(self.node.pk))
        return data, generation, self._look(data, woken=False)

    def _look(self, data: dict, *, woken: bool) -> leases.Grant | None:
        return leases.lease(
            node=self.node,
            request_id=data["request_id"],
            instance_id=str(data["instance_id"]),
            woken=woken,
        )

    async def _wait(self, data: dict, generation: int) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + data.get("wait", settings.LONG_POLL_DEFAULT_WAIT)
        node_id = str(self.node.pk)
        woken = hub.register(node_id)
        try:
            if hub.generation(node_id) != generation:
                woken.set()  # announced between the first look and registering
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return Response(status=204)
                try:
                    async with asyncio.timeout(remaining):  # no extra task, unlike wait_for
                        await woken.wait()
                except TimeoutError:
                    return Response(status=204)
                woken.clear()
                grant = await run_db(self._look, data, woken=True)
                if grant is not None:
                    return Response(grant.as_json())
        finally:
            hub.unregister(node_id, woken)


class RenewView(AgentView):
    @extend_schema(
        request=RenewRequestSerializer,
        responses={200: RenewResponseSerializer, **errors(404, 409)},
        summary="Extend a running job's lease and report progress",
        tags=["agent"],
    )
    def post(self, request: Request, job_id) -> Response:
        serializer = RenewRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        expires_at = leases.renew(
            node=self.node,
            job_id=job_id,
            lease_token=data["lease_token"],
            progress=data.get("progress"),
        )
        return Response({"expires_at": expires_at})


class CompleteView(AgentView):
    @extend_schema(
        request=CompleteRequestSerializer,
        responses={200: CompleteResponseSerializer, **errors(404, 409)},
        summary="Report a job's outcome (idempotent)",
        tags=["agent"],
    )
    def post(self, request: Request, job_id) -> Response:
        serializer = CompleteRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
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
        return Response({"job": _job_summary(job)})


class ReleaseView(AgentView):
    @extend_schema(
        request=ReleaseRequestSerializer,
        responses={200: CompleteResponseSerializer, **errors(404, 409)},
        summary="Give a running job back without spending an attempt",
        tags=["agent"],
    )
    def post(self, request: Request, job_id) -> Response:
        serializer = ReleaseRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = leases.release(
            node=self.node, job_id=job_id, lease_token=data["lease_token"], reason=data["reason"]
        )
        return Response({"job": _job_summary(job)})
