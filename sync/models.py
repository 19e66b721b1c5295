"""Push hooks in, scheduled pulls, and subscriptions out: configuration beside the event log.

None of these rows is a fact about a project, so none is an event: a hook or a subscription
belongs to a person, and a schedule is a setting read by the sweepers. The pulls they cause are
ordinary events whose `meta.cause` names the hook delivery or the schedule.
"""

import uuid

from django.conf import settings
from django.db import models


class Hook(models.Model):
    """A URL a forge posts push events to, with the shared secret that signs them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100, blank=True)
    secret_ciphertext = models.TextField(help_text="Fernet-encrypted with CREDENTIAL_KEYS.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or str(self.id)


class HookDelivery(models.Model):
    """One signed push a forge delivered; its id is remembered so a redelivery is ignored."""

    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=128)
    forge = models.CharField(max_length=16)
    repository = models.CharField(max_length=2048, blank=True)
    branch = models.CharField(max_length=255, blank=True)
    pulls = models.JSONField(default=list, help_text="The jobs this delivery queued.")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["hook", "delivery_id"], name="hook_delivery_once")
        ]
        indexes = [models.Index(fields=["hook", "received_at"], name="hook_delivery_recent")]

    def __str__(self) -> str:
        return f"{self.forge} {self.delivery_id}"


class SyncSchedule(models.Model):
    """A project pulled every `interval` seconds; `next_due_at` is claimed by one sweeper."""

    project = models.OneToOneField(
        "projects.Project", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    interval = models.PositiveIntegerField()
    next_due_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"every {self.interval} s"


class SubscriptionState(models.TextChoices):
    ACTIVE = "active"
    PAUSED = "paused"


class Subscription(models.Model):
    """A URL told about a person's project events; `cursor` is the last event position sent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    url = models.CharField(max_length=2048)
    events = models.JSONField(help_text="Event types to send.")
    projects = models.JSONField(default=list, help_text="Project ids; empty means all yours.")
    secret_ciphertext = models.TextField(help_text="Fernet-encrypted with CREDENTIAL_KEYS.")
    state = models.CharField(
        max_length=8, choices=SubscriptionState.choices, default=SubscriptionState.ACTIVE
    )
    cursor = models.BigIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0, help_text="Failed attempts in a row.")
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="subscription_due")]

    def __str__(self) -> str:
        return self.url


class DeliveryAttempt(models.Model):
    """One POST of one event to a subscription's URL, and how it went."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="attempts"
    )
    event_position = models.BigIntegerField()
    attempted_at = models.DateTimeField(auto_now_add=True)
    ok = models.BooleanField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField()
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return (
            f"event #{self.event_position}: {'ok' if self.ok else self.error or self.status_code}"
        )
