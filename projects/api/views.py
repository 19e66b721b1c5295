"""The user API. Views stay thin: parse, call a service or selector, serialize."""

from __future__ import annotations

import re

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import NotFound
from core.query import BIGINT_MAX, whole_number
from core.schema import errors
from nodes.models import NODE_NAME_PATTERN
from projects import selectors, services
from projects.api.serializers import (
    AcceptedJobSerializer,
    CloneRequestSchemaSerializer,
    CloneRequestSerializer,
    EmptyRequestSerializer,
    EventSerializer,
    ProjectChangedSerializer,
    ProjectChangeSerializer,
    ProjectSerializer,
    ProjectStatusSerializer,
    PullRequestSerializer,
    canonical_uuid,
)
from projects.domain import ProjectStatus
from projects.models import Event, Job, Project
from projects.project_credentials import change_credential
from sync import schedule
from sync.serializers import ProjectWithScheduleSerializer


def _accepted(project: Project, job: Job) -> Response:
    """The 202 of an action: the project as it is now, and the job queued (which an agent may
    have leased, or even finished, by now)."""
    project = selectors.with_open_jobs(Project.objects.select_related("node")).get(pk=project.pk)
    body = AcceptedJobSerializer({"project": project, "job": job}).data
    return Response(body, status=status.HTTP_202_ACCEPTED)


def _no_body(request: Request) -> None:
    """Actions take no parameters; a body that tries to set something is refused."""
    if request.stream is not None or request.data:
        EmptyRequestSerializer(data=request.data).is_valid(raise_exception=True)


class CloneView(APIView):
    @extend_schema(
        request=CloneRequestSchemaSerializer,
        responses={202: AcceptedJobSerializer, **errors(404, 409)},
        summary="Create a project and queue its clone on a node",
    )
    def post(self, request: Request) -> Response:
        serializer = CloneRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        sync_interval = serializer.validated_data.pop("sync_interval", None)
        project = services.request_clone(
            owner=request.user, request_id=request._request.request_id, **serializer.validated_data
        )
        if sync_interval is not None:
            schedule.set_sync_interval(project=project, interval=sync_interval)
        return _accepted(project, project.jobs.get())


_STATUSES = [status.value for status in ProjectStatus]


@extend_schema(
    parameters=[
        OpenApiParameter("status", enum=_STATUSES, description="Only this status."),
        OpenApiParameter("node", str, description="Only projects on this node (name or id)."),
    ],
    responses={200: ProjectSerializer, **errors(body=False)},
)
class ProjectListView(generics.ListAPIView):
    serializer_class = ProjectSerializer

    def get_queryset(self):
        projects = selectors.with_open_jobs(selectors.visible_projects(self.request.user))
        if "status" in self.request.query_params:
            projects = projects.filter(status=self.request.query_params["status"])
        node = self.request.query_params.get("node")
        if node:
            by_name = projects.filter(node__name__in=_node_name_or_nothing(node))
            by_id = projects.filter(node__id__in=_uuid_or_nothing(node))
            projects = by_name | by_id
        return projects

    def list(self, request, *args, **kwargs):
        wanted_status = request.query_params.get("status")
        if wanted_status is not None and wanted_status not in _STATUSES:
            raise ValidationError({"status": [f"Use one of: {', '.join(_STATUSES)}."]})
        return super().list(request, *args, **kwargs)


def _uuid_or_nothing(value: str) -> list:
    node_id = canonical_uuid(value)
    return [node_id] if node_id is not None else []


def _node_name_or_nothing(value: str) -> list[str]:
    # What no node can be called matches nothing, without reaching the database: PostgreSQL
    # refuses a NUL in a query parameter outright.
    return [value] if re.match(NODE_NAME_PATTERN, value) else []


class ProjectDetailView(APIView):
    @extend_schema(
        responses={200: ProjectWithScheduleSerializer, **errors(404, body=False)},
        summary="A project",
    )
    def get(self, request: Request, project_id) -> Response:
        project = selectors.project_with_open_jobs_for(request.user, project_id)
        return Response(ProjectWithScheduleSerializer(project).data)

    @extend_schema(
        request=ProjectChangeSerializer,
        responses={200: ProjectChangedSerializer, **errors(400, 404, 409)},
        summary="Change the project's scheduled sync or its credential",
    )
    def patch(self, request: Request, project_id) -> Response:
        serializer = ProjectChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = selectors.project_for(request.user, project_id)
        changed: dict = {}
        if "credential" in data:
            # A credential is the owner's own: staff who can see the project still cannot.
            if project.owner_id != request.user.pk:
                raise NotFound("No such project.")
            project = change_credential(
                project=project,
                credential_id=data["credential"],
                actor=request.user,
                request_id=request._request.request_id,
            )
            changed["credential"] = project.credential
        if "sync_interval" in data:
            changed["sync_interval"] = schedule.set_sync_interval(
                project=project, interval=data["sync_interval"]
            )
        return Response(ProjectChangedSerializer(changed).data)

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "force",
                bool,
                description="Delete even when the checkout holds uncommitted changes, "
                "untracked files or unpushed commits (without it such a delete fails with "
                "`local_changes` and the checkout is kept).",
            )
        ],
        responses={202: AcceptedJobSerializer, **errors(404, 409)},
        summary="Queue the deletion of the project's checkout",
    )
    def delete(self, request: Request, project_id) -> Response:
        _no_body(request)
        force = _flag(request.query_params, "force")
        project = selectors.project_for(request.user, project_id)
        job = services.request_delete(
            project=project,
            actor=request.user,
            force=force,
            request_id=request._request.request_id,
        )
        return _accepted(project, job)


def _flag(params, name: str) -> bool:
    """A true/false query parameter; anything else is refused naming it."""
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise ValidationError({name: ["true or false."]})
    return value == "true"


class ProjectStatusView(APIView):
    @extend_schema(
        responses={200: ProjectStatusSerializer, **errors(404, body=False)},
        summary="Where the project stands now",
    )
    def get(self, request: Request, project_id) -> Response:
        project = selectors.project_with_open_jobs_for(request.user, project_id)
        return Response(ProjectStatusSerializer(project).data)


_WAIT = OpenApiParameter(
    "wait",
    {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX},
    description="Hold the answer up to this many seconds (capped at the server's "
    "LONG_POLL_MAX_WAIT) until there is a newer event.",
)


@extend_schema(
    parameters=[
        OpenApiParameter(
            "after",
            {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX},
            description="Only events after this version.",
        ),
        _WAIT,
    ],
    responses={200: EventSerializer, **errors(404, body=False)},
)
class ProjectEventsView(generics.ListAPIView):
    """The project's event timeline, oldest first; with `wait`, a watch (see `sync.watch`)."""

    serializer_class = EventSerializer

    def get_queryset(self):
        project = selectors.project_for(self.request.user, self.kwargs["project_id"])
        after = whole_number(
            self.request.query_params, "after", default=0, message="A non-negative whole number."
        )
        return selectors.project_events(project).filter(version__gt=after)


class PullView(APIView):
    @extend_schema(
        request=PullRequestSerializer,
        responses={202: AcceptedJobSerializer, **errors(404, 409)},
        summary="Queue a pull (fetch, then fast-forward, rebase or reset; or move to a ref)",
    )
    def post(self, request: Request, project_id) -> Response:
        serializer = PullRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = selectors.project_for(request.user, project_id)
        job = services.request_pull(
            project=project,
            actor=request.user,
            strategy=serializer.validated_data["strategy"],
            ref=serializer.validated_data.get("ref"),
            request_id=request._request.request_id,
        )
        return _accepted(project, job)


class InspectView(APIView):
    @extend_schema(
        request=EmptyRequestSerializer,
        responses={202: AcceptedJobSerializer, **errors(404, 409)},
        summary="Queue a read-only look at the checkout (refreshes `workspace`)",
    )
    def post(self, request: Request, project_id) -> Response:
        _no_body(request)
        project = selectors.project_for(request.user, project_id)
        job = services.request_inspect(
            project=project, actor=request.user, request_id=request._request.request_id
        )
        return _accepted(project, job)


class _JobActionView(APIView):
    # An action on one job of a project; subclasses name the service that performs it.
    service = staticmethod(services.cancel_job)

    def post(self, request: Request, project_id, job_id) -> Response:
        _no_body(request)
        project = selectors.project_for(request.user, project_id)
        job = self.service(
            project=project,
            job_id=job_id,
            actor=request.user,
            request_id=request._request.request_id,
        )
        return _accepted(project, job)


@extend_schema_view(
    post=extend_schema(
        request=EmptyRequestSerializer,
        responses={202: AcceptedJobSerializer, **errors(404, 409)},
        summary="Cancel a queued or running job",
    )
)
class CancelJobView(_JobActionView):
    """Cancels a queued job, or stops a running one at its agent's next lease renewal."""

    service = staticmethod(services.cancel_job)


@extend_schema_view(
    post=extend_schema(
        request=EmptyRequestSerializer,
        responses={202: AcceptedJobSerializer, **errors(404, 409)},
        summary="Queue a new job like a failed or cancelled one",
    )
)
class RetryJobView(_JobActionView):
    """Queues a new job of the same kind as a failed or cancelled one."""

    service = staticmethod(services.retry_job)


@extend_schema(
    parameters=[
        OpenApiParameter(
            "after",
            {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX},
            description="Only events after this position.",
        ),
        _WAIT,
    ],
    responses={200: EventSerializer, **errors(body=False)},
)
class EventFeedView(generics.ListAPIView):
    """Every project's events in position order, for tools; staff only. Never skips an event
    that commits late (see `projects.eventstore`)."""

    serializer_class = EventSerializer
    permission_classes = [IsAdminUser]

    def get_queryset(self):
        after = whole_number(
            self.request.query_params, "after", default=0, message="A non-negative whole number."
        )
        return Event.objects.filter(position__gt=after).order_by("position")
