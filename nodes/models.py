import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from accounts.models import HashedToken

NODE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}\Z"


class NodeQuerySet(models.QuerySet):
    def online(self) -> "NodeQuerySet":
        since = timezone.now() - timedelta(seconds=settings.NODE_ONLINE_WINDOW)
        return self.filter(last_seen_at__gte=since)

    def accepting_work(self) -> "NodeQuerySet":
        """Enabled and online: the nodes a clone or pull may be asked of."""
        return self.online().filter(enabled=True)


class Node(models.Model):
    """A worker machine whose agent runs jobs. Presence fields are written by agent calls."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(
        max_length=63,
        unique=True,
        validators=[
            RegexValidator(NODE_NAME_PATTERN, "Lowercase letters, digits and '-', at most 63.")
        ],
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    agent_version = models.CharField(max_length=50, blank=True, editable=False)
    git_version = models.CharField(max_length=50, blank=True, editable=False)
    git_lfs_version = models.CharField(
        max_length=50, blank=True, editable=False, help_text="Empty when the node has no git-lfs."
    )
    hostname = models.CharField(max_length=255, blank=True, editable=False)
    disk_free_bytes = models.BigIntegerField(null=True, blank=True, editable=False)
    running_jobs = models.PositiveIntegerField(default=0, editable=False)
    instance_id = models.UUIDField(null=True, blank=True, editable=False)
    previous_instance_id = models.UUIDField(null=True, blank=True, editable=False)
    duplicate_instance_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When a superseded agent instance called again: two agents share one token.",
    )

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_online(self) -> bool:
        if self.last_seen_at is None:
            return False
        window = timedelta(seconds=settings.NODE_ONLINE_WINDOW)
        return timezone.now() - self.last_seen_at <= window

    @property
    def accepts_work(self) -> bool:
        return self.enabled and self.is_online

    @property
    def duplicate_instance(self) -> bool:
        """True while a second live instance was seen within the online window."""
        if self.duplicate_instance_at is None:
            return False
        window = timedelta(seconds=settings.NODE_ONLINE_WINDOW)
        return timezone.now() - self.duplicate_instance_at <= window


class AgentToken(HashedToken):
    """A node's agent token; a node may hold several while rotating."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="tokens")

    class Meta(HashedToken.Meta):
        pass

    def __str__(self) -> str:
        return f"gfa_{self.key_id}…"
