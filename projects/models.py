"""The event log and its projections.

`Event` is the only source of truth and is append-only in the database (see migration 0002).
`Project` and `Job` are projections written only by `projects.eventstore.append`, and can be
rebuilt from the log with `manage.py rebuild_projections`.
"""

import uuid
from enum import StrEnum

from django.conf import settings
from django.db import models
from django.db.models import Q

from projects.domain import JobKind, JobState, ProjectStatus


def _choices(enum: type[StrEnum]) -> list[tuple[str, str]]:
    return [(member.value, member.value) for member in enum]


# The columns' choices, named here so that the API schema can name their enums
# (`ENUM_NAME_OVERRIDES` in the settings).
PROJECT_STATUS_CHOICES = _choices(ProjectStatus)
JOB_KIND_CHOICES = _choices(JobKind)
JOB_STATE_CHOICES = _choices(JobState)


class Event(models.Model):
    """One fact about one project. Never updated, never deleted."""

    position = models.BigAutoField(primary_key=True)
    project_id = models.UUIDField(db_index=False)
    version = models.PositiveIntegerField()
    type = models.CharField(max_length=64)
    data = models.JSONField()
    meta = models.JSONField(default=dict)
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["project_id", "version"], name="event_stream_version")
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.type} v{self.version} of {self.project_id}"


class Project(models.Model):
    """Projection: a project as its events say it is now."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    version = models.PositiveIntegerField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=100)
    node = models.ForeignKey("nodes.Node", on_delete=models.PROTECT, related_name="projects")
    git_url = models.CharField(max_length=2048)
    branch = models.CharField(max_length=255)
    depth = models.PositiveIntegerField(null=True, blank=True)
    target_path = models.CharField(max_length=128)
    # The owner's credential its jobs use; only its id is ever in an event.
    credential = models.ForeignKey(
        "credentials.Credential",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="projects",
    )
    status = models.CharField(max_length=16, choices=PROJECT_STATUS_CHOICES)
    commit = models.CharField(max_length=64, blank=True)
    checkout_branch = models.CharField(max_length=255, blank=True)
    ref_kind = models.CharField(
        max_length=16,
        blank=True,
        help_text="What `branch` named when checked out: branch, tag or commit.",
    )
    lfs = models.BooleanField(default=False)
    submodules = models.CharField(max_length=16, default="none")
    filter = models.CharField(max_length=64, blank=True)
    sparse = models.JSONField(default=list, blank=True)
    submodules_skipped = models.PositiveIntegerField(default=0)
    local_path = models.CharField(max_length=4096, blank=True)
    last_error = models.JSONField(null=True, blank=True)
    workspace = models.JSONField(
        null=True, blank=True, help_text="The checkout as the last clone, pull or inspect found it."
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"],
                condition=~Q(status=ProjectStatus.DELETED),
                name="one_live_project_per_owner_and_name",
            )
        ]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["node", "status"])]
        permissions = [
            (
                "use_node_credentials",
                "Can have jobs use the node's own git credential helper and SSH keys",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.node}"


class Job(models.Model):
    """Projection: one clone, pull or delete of one project, and its lease."""

    id = models.UUIDField(primary_key=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="jobs")
    node = models.ForeignKey("nodes.Node", on_delete=models.PROTECT, related_name="jobs")
    seq = models.PositiveIntegerField(help_text="The project version that queued the job.")
    kind = models.CharField(max_length=16, choices=JOB_KIND_CHOICES)
    state = models.CharField(max_length=16, choices=JOB_STATE_CHOICES)
    attempt = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    timeouts = models.PositiveIntegerField(
        default=0, help_text="Failed attempts that ran out of time; only the first is retried."
    )
    max_attempts = models.PositiveIntegerField()
    queued_at = models.DateTimeField()
    available_at = models.DateTimeField()
    lease_token = models.CharField(max_length=64, blank=True)
    lease_request_id = models.CharField(max_length=64, blank=True)
    lease_instance_id = models.CharField(max_length=64, blank=True)
    leased_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()
    options = models.JSONField(
        default=dict, blank=True, help_text="A pull's strategy, a delete's force."
    )
    # Not projection: the agent's latest progress, posted every few seconds while git runs and
    # written here by `projects.progress` alone. It is ephemeral telemetry, not a fact about the
    # project: an event per update would swell the log, so it stays outside it, and
    # `rebuild_projections` neither compares nor rewrites these two columns.
    live_progress = models.JSONField(null=True, blank=True, editable=False)
    live_progress_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["queued_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "seq"], name="job_project_seq"),
        ]
        indexes = [
            # The claim walks a node's queued jobs oldest first and stops at the first it may
            # lease; `available_at` is checked in the index, without visiting the row.
            models.Index(fields=["node", "state", "queued_at", "available_at"], name="job_claim"),
            models.Index(fields=["state", "lease_expires_at"], name="job_lease_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.state})"
