"""The admin console for projects, jobs and the event log.

Everything here is read-only: projects and jobs are projections of the log, and the log is
append-only. What an operator may do — clone, pull, delete, cancel, retry — goes through
`projects.services`, exactly as the API does, so it is decided and recorded as events like any
other request. The Django change permission on projects means "may ask for work"; no field is
ever edited by hand. Events are shown as people may read them (`projects.redaction`), to
those with the `projects.view_event` permission.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.exceptions import Conflict, DomainError
from nodes.admin import presence_badge
from nodes.models import Node
from projects import domain, services, timeline
from projects import progress as live_progress
from projects.api.serializers import CloneRequestSerializer
from projects.models import Event, Job, Project
from projects.redaction import readable
from projects.selectors import FailureReason, active_job, failure_reason, last_error, with_open_jobs

admin.site.site_header = "Gitfleet"
admin.site.site_title = "Gitfleet admin"
admin.site.index_title = "Control plane"
admin.site.site_url = "/account/"  # "View site": the page every person has

TIMELINE_LIMIT = 200


def pretty_json(value: Any) -> str:
    if value in (None, {}, []):
        return "-"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre style="margin:0;white-space:pre-wrap;">{}</pre>', text)


def compact_json(value: Any) -> str:
    if value in (None, {}, []):
        return "-"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def error_text(error: dict[str, Any] | None) -> str:
    """An error as people read it: its code, then its message with real line breaks."""
    if not error:
        return "-"
    retryable = " (will be retried)" if error.get("retryable") else ""
    return format_html(
        '<strong>{}</strong>{}<pre style="margin:0;white-space:pre-wrap;">{}</pre>',
        error.get("code") or "error",
        retryable,
        error.get("message") or "",
    )


def reason_text(reason: FailureReason | None) -> str:
    """Why a project is not where it was asked to be, and when it is tried again, if it is."""
    if reason is None:
        return "-"
    retry = ""
    if reason.retry_at is not None:
        when = dateformat.format(timezone.localtime(reason.retry_at), "Y-m-d H:i:s e")
        retry = f", tried again at {when}"
    return format_html(
        '<strong>{}</strong>{}<pre style="margin:0;white-space:pre-wrap;">{}</pre>',
        reason.code,
        retry,
        reason.message,
    )


def _link(url_name: str, pk: Any, text: Any) -> SafeString:
    return format_html('<a href="{}">{}</a>', reverse(url_name, args=[pk]), text)


class ReadOnlyAdmin(admin.ModelAdmin):
    """A projection or the log: shown, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Operations: the same service calls as the API ---------------------------------------------


@dataclass(frozen=True)
class Operation:
    verb: str
    label: str
    run: Callable[[Project, HttpRequest], Job]


def _who(request: HttpRequest) -> dict[str, Any]:
    return {"actor": request.user, "request_id": getattr(request, "request_id", None)}


def _pull(project: Project, request: HttpRequest) -> Job:
    return services.request_pull(project=project, **_who(request))


def _pull_rebase(project: Project, request: HttpRequest) -> Job:
    return services.request_pull(project=project, strategy="rebase", **_who(request))


def _pull_reset(project: Project, request: HttpRequest) -> Job:
    return services.request_pull(project=project, strategy="reset", **_who(request))


def _inspect(project: Project, request: HttpRequest) -> Job:
    return services.request_inspect(project=project, **_who(request))


def _delete(project: Project, request: HttpRequest) -> Job:
    # Reached only from the confirmation page, which asks whether to lose local work.
    force = request.POST.get("force") == "true"
    return services.request_delete(project=project, force=force, **_who(request))


def _cancel(project: Project, request: HttpRequest) -> Job:
    job = active_job(project)
    if job is None:
        raise Conflict("It has no queued or running job to cancel.", code="no_open_job")
    return services.cancel_job(project=project, job_id=str(job.pk), **_who(request))


def _retry(project: Project, request: HttpRequest) -> Job:
    job = services.latest_retryable_job(project)
    if job is None:
        raise Conflict(
            "Nothing to retry: its latest job neither failed nor was cancelled.",
            code="nothing_to_retry",
        )
    return services.retry_job(project=project, job_id=str(job.pk), **_who(request))


OPERATIONS = {
    op.verb: op
    for op in [
        Operation("pull", "Pull", _pull),
        Operation("pull-rebase", "Pull (rebase local work)", _pull_rebase),
        Operation("pull-reset", "Pull (reset, backing up local work)", _pull_reset),
        Operation("inspect", "Inspect workspace", _inspect),
        Operation("delete", "Delete checkout", _delete),
        Operation("cancel", "Cancel active job", _cancel),
        Operation("retry", "Retry last job", _retry),
    ]
}


# --- Requesting a clone ---------------------------------------------------------------------


def _api_help(field: str) -> str:
    return CloneRequestSerializer().fields[field].help_text or ""


class CloneForm(forms.Form):
    """Collects what the clone API takes; `services.request_clone` does the validating."""

    name = forms.CharField(strip=False, help_text=_api_help("name"))
    git_url = forms.CharField(label="Git URL", strip=False, help_text=_api_help("git_url"))
    branch = forms.CharField(strip=False, initial="main", help_text=_api_help("branch"))
    node = forms.ModelChoiceField(
        queryset=Node.objects.none(), help_text="Only nodes that are enabled and online."
    )
    depth = forms.IntegerField(required=False, help_text=_api_help("depth"))

    def __init__(self, *args: Any, nodes: Iterable[Node], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = Node.objects.filter(pk__in=[node.pk for node in nodes])

    def add_refusal(self, field: str | None, message: str) -> None:
        self.add_error(field if field in self.fields else None, message)


def nodes_accepting_work() -> list[Node]:
    return list(Node.objects.accepting_work())


# --- Projects -------------------------------------------------------------------------------


@admin.register(Project)
class ProjectAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "status",
        "reason",
        "node_presence",
        "owner",
        "short_commit",
        "updated_at",
    ]
    list_filter = ["status", "node"]
    list_select_related = ["node", "owner"]
    search_fields = ["name"]
    actions = ["pull", "inspect", "delete_checkout", "cancel", "retry"]
    fieldsets = [
        (None, {"fields": ["id", "name", "owner", "node_presence", "status", "version"]}),
        (
            "Source",
            {
                "fields": [
                    "git_url",
                    "branch",
                    "depth",
                    "lfs",
                    "submodules",
                    "filter",
                    "sparse",
                    "credential_used",
                ]
            },
        ),
        (
            "Checkout",
            {
                "fields": [
                    "target_path",
                    "commit",
                    "ref_kind",
                    "checkout_branch",
                    "submodules_skipped",
                    "local_path",
                    "error",
                ]
            },
        ),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]
    readonly_fields = [
        "id",
        "name",
        "owner",
        "node_presence",
        "status",
        "version",
        "git_url",
        "branch",
        "depth",
        "lfs",
        "submodules",
        "filter",
        "sparse",
        "credential_used",
        "target_path",
        "commit",
        "ref_kind",
        "checkout_branch",
        "submodules_skipped",
        "local_path",
        "error",
        "created_at",
        "updated_at",
    ]
    change_list_template = "admin/projects/project/change_list.html"
    change_form_template = "admin/projects/project/change_form.html"

    def get_queryset(self, request: HttpRequest):
        # The reason column reads each project's open jobs: fetch them for the page at once.
        return with_open_jobs(super().get_queryset(request))

    @admin.display(description="Credential")
    def credential_used(self, project: Project) -> str:
        """The credential's name and id, never more of it."""
        credential = project.credential
        if credential is None:
            return "none (anonymous)"
        return f"{credential.name} ({credential.pk})"

    def has_operate_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Adding a project means asking for its clone: `add_view` opens the clone form.
        return self.has_operate_permission(request)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        if not self.has_operate_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:projects_project_clone"))

    @admin.display(description="node", ordering="node__name")
    def node_presence(self, project: Project) -> SafeString:
        node = project.node
        return format_html(
            "{} {}", _link("admin:nodes_node_change", node.pk, node), presence_badge(node)
        )

    @admin.display(description="commit", ordering="commit")
    def short_commit(self, project: Project) -> str:
        return project.commit[:12] or "-"

    @admin.display(description="last error")
    def error(self, project: Project) -> str:
        return error_text(last_error(project))

    @admin.display(description="why")
    def reason(self, project: Project) -> str:
        return reason_text(failure_reason(project))

    # --- Actions: one service call per project, refusals reported --------------------------

    def _operate(self, request: HttpRequest, projects: Iterable[Project], verb: str) -> None:
        operation = OPERATIONS[verb]
        for project in projects:
            try:
                job = operation.run(project, request)
            except DomainError as exc:
                messages.error(
                    request, f"{operation.label} refused for {project.name}: {exc.message}"
                )
            else:
                messages.info(request, f"{project.name}: {job.kind} job {job.pk} is {job.state}.")

    @admin.action(description="Pull (fetch and fast-forward)", permissions=["operate"])
    def pull(self, request: HttpRequest, queryset) -> None:
        self._operate(request, queryset, "pull")

    @admin.action(description="Inspect the workspace on its node", permissions=["operate"])
    def inspect(self, request: HttpRequest, queryset) -> None:
        self._operate(request, queryset, "inspect")

    @admin.action(description="Delete the checkout on its node", permissions=["operate"])
    def delete_checkout(self, request: HttpRequest, queryset) -> HttpResponse | None:
        if request.POST.get("confirm") != "yes":
            return self._confirm_delete(request, list(queryset), bulk=True)
        self._operate(request, queryset, "delete")
        return None

    def _confirm_delete(
        self, request: HttpRequest, projects: list[Project], *, bulk: bool
    ) -> HttpResponse:
        """The question the API asks with `force`: keep local work (refuse) or lose it."""
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete checkouts?",
            "projects": projects,
            "bulk": bulk,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/projects/project/delete_confirmation.html", context)

    @admin.action(description="Cancel the active job", permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset) -> None:
        self._operate(request, queryset, "cancel")

    @admin.action(description="Retry the latest failed or cancelled job", permissions=["operate"])
    def retry(self, request: HttpRequest, queryset) -> None:
        self._operate(request, queryset, "retry")

    # --- Views: the detail page, per-project buttons, the clone form ------------------------

    def get_urls(self):
        own = [
            path(
                "clone/", self.admin_site.admin_view(self.clone_view), name="projects_project_clone"
            ),
            path(
                "<path:object_id>/operate/<str:verb>/",
                self.admin_site.admin_view(self.operate_view),
                name="projects_project_operate",
            ),
        ]
        return own + super().get_urls()

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        project = self.get_object(request, object_id)
        if project is not None:
            extra_context = {
                **(extra_context or {}),
                **self._detail_context(request, project),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def _detail_context(self, request: HttpRequest, project: Project) -> dict[str, Any]:
        events = Event.objects.filter(project_id=project.pk)
        total = events.count()
        latest = list(events.order_by("-version")[:TIMELINE_LIMIT])[::-1]
        jobs = list(project.jobs.order_by("seq"))
        can_operate = (
            self.has_operate_permission(request) and project.status != domain.ProjectStatus.DELETED
        )
        can_view_events = request.user.has_perm("projects.view_event")
        current = active_job(project)
        return {
            "summary": {
                "project": project,
                "job": current,
                "progress": timeline.progress_text(live_progress.current(current)[0])
                if current
                else "",
                "reason": failure_reason(project),
            },
            "jobs": [
                {
                    "job": job,
                    "progress": timeline.progress_text(job.progress),
                    "error": job.error or {},
                }
                for job in jobs
            ],
            "can_view_events": can_view_events,
            "timeline": [
                {
                    "event": row.event,
                    "who": row.who,
                    "summary": row.summary,
                    "error_message": row.error_message,
                    "data": pretty_json(readable(row.event.data)),
                    "meta": pretty_json(readable(row.event.meta)),
                }
                for row in timeline.rows(latest, jobs)
            ]
            if can_view_events
            else [],
            "timeline_total": total,
            "timeline_limit": TIMELINE_LIMIT,
            "events_url": reverse("admin:projects_event_changelist") + f"?project_id={project.pk}",
            "operations": list(OPERATIONS.values()) if can_operate else [],
        }

    def operate_view(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if verb not in OPERATIONS:
            raise Http404("No such operation.")
        if not self.has_operate_permission(request):
            raise PermissionDenied
        project = self.get_object(request, object_id)
        if project is None:
            raise Http404("No such project.")
        if verb == "delete" and request.POST.get("confirm") != "yes":
            return self._confirm_delete(request, [project], bulk=False)
        self._operate(request, [project], verb)
        return HttpResponseRedirect(reverse("admin:projects_project_change", args=[project.pk]))

    def clone_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_operate_permission(request):
            raise PermissionDenied
        nodes = nodes_accepting_work()
        form = CloneForm(request.POST or None, nodes=nodes)
        if request.method == "POST" and form.is_valid():
            project = self._request_clone(request, form)
            if project is not None:
                messages.info(request, f"{project.name}: clone queued on {project.node}.")
                return HttpResponseRedirect(
                    reverse("admin:projects_project_change", args=[project.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Request a clone",
            "form": form,
            "nodes": nodes,
            "online_window": settings.NODE_ONLINE_WINDOW,
        }
        return TemplateResponse(request, "admin/projects/project/clone.html", context)

    def _request_clone(self, request: HttpRequest, form: CloneForm) -> Project | None:
        """Asks for the clone; the service's refusals (invalid input included) become form
        errors on the field they name."""
        try:
            return services.request_clone(
                owner=request.user,
                request_id=getattr(request, "request_id", None),
                **form.cleaned_data,
            )
        except DomainError as exc:
            form.add_refusal(exc.field, exc.message)
            return None


# --- Jobs -----------------------------------------------------------------------------------


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "state",
        "attempt",
        "project_link",
        "node",
        "lease_expires_at",
        "progress_summary",
    ]
    list_filter = ["state", "kind", "node"]
    list_select_related = ["project", "node"]
    search_fields = ["project__name"]
    fields = [
        "id",
        "project_link",
        "node",
        "kind",
        "state",
        "seq",
        "attempt",
        "failures",
        "max_attempts",
        "queued_at",
        "available_at",
        "leased_at",
        "lease_expires_at",
        "progress_pretty",
        "result_pretty",
        "error_pretty",
        "finished_at",
        "updated_at",
    ]
    readonly_fields = fields  # the lease token stays out of sight

    @admin.display(description="project", ordering="project__name")
    def project_link(self, job: Job) -> SafeString:
        return _link("admin:projects_project_change", job.project_id, job.project.name)

    @admin.display(description="progress")
    def progress_summary(self, job: Job) -> str:
        return compact_json(job.progress)

    @admin.display(description="progress")
    def progress_pretty(self, job: Job) -> str:
        return pretty_json(job.progress)

    @admin.display(description="result")
    def result_pretty(self, job: Job) -> str:
        return pretty_json(job.result)

    @admin.display(description="error")
    def error_pretty(self, job: Job) -> str:
        return error_text(job.error)


# --- The event log --------------------------------------------------------------------------


class EventTypeFilter(admin.SimpleListFilter):
    """Types from the catalogue, so the filter does not scan the log for distinct values."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(event_type, event_type) for event_type in domain.EVENT_TYPES]

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """The log, for staff with `projects.view_event` to read, lease tokens masked and agent
    instances left out. No one — superusers included — adds, changes or deletes."""

    list_display = ["position", "type", "project_link", "version", "recorded_at"]
    list_filter = [EventTypeFilter]
    search_fields = ["=project_id"]
    ordering = ["-position"]
    show_full_result_count = False  # a count(*) of the whole log on every page is not free
    fields = [
        "position",
        "project_link",
        "version",
        "type",
        "recorded_at",
        "data_pretty",
        "meta_pretty",
    ]
    readonly_fields = fields

    @admin.display(description="project", ordering="project_id")
    def project_link(self, event: Event) -> SafeString:
        return _link("admin:projects_project_change", event.project_id, event.project_id)

    @admin.display(description="data")
    def data_pretty(self, event: Event) -> str:
        return pretty_json(readable(event.data))

    @admin.display(description="meta")
    def meta_pretty(self, event: Event) -> str:
        return pretty_json(readable(event.meta))
