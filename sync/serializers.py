"""What the sync API reads and answers."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from projects.api.serializers import ProjectSerializer, StrictSerializer
from projects.models import Project
from sync.models import DeliveryAttempt, Hook, Subscription
from sync.schedule import MAX_INTERVAL, MIN_INTERVAL, sync_interval


class ProjectWithScheduleSerializer(ProjectSerializer):
    """One project, with its scheduled sync (the listing leaves it out: a query per row)."""

    sync_interval = serializers.SerializerMethodField(
        help_text="Seconds between scheduled pulls; null when there are none."
    )

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "sync_interval"]
        read_only_fields = fields

    def get_sync_interval(self, project: Project) -> int | None:
        return sync_interval(project)


class HookCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class HookSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Paste this into the forge's webhook form.")

    class Meta:
        model = Hook
        fields = ["id", "name", "url", "created_at"]

    def get_url(self, hook: Hook) -> str:
        path = reverse("hook-deliveries", args=[hook.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class HookCreatedSerializer(HookSerializer):
    secret = serializers.CharField(help_text="The webhook secret; shown only now.")

    class Meta(HookSerializer.Meta):
        fields = [*HookSerializer.Meta.fields, "secret"]


class DeliveryAnswerSerializer(serializers.Serializer):
    forge = serializers.CharField()
    delivery_id = serializers.CharField()
    duplicate = serializers.BooleanField(help_text="Seen before: acknowledged and ignored.")
    ignored = serializers.CharField(help_text="Why nothing was done, when nothing was.")
    pulls = serializers.ListField(child=serializers.UUIDField(), help_text="Jobs queued.")


class SubscriptionCreateSerializer(StrictSerializer):
    url = serializers.CharField(max_length=2048, trim_whitespace=False)
    events = serializers.ListField(child=serializers.CharField(max_length=64), max_length=64)
    projects = serializers.ListField(
        child=serializers.CharField(max_length=36), required=False, max_length=1000, default=list
    )


class SubscriptionSerializer(serializers.ModelSerializer):
    failing = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = [
            "id",
            "url",
            "events",
            "projects",
            "state",
            "failing",
            "cursor",
            "failures",
            "failing_since",
            "last_error",
            "next_attempt_at",
            "created_at",
        ]

    def get_failing(self, subscription: Subscription) -> bool:
        return subscription.failing_since is not None


class SubscriptionCreatedSerializer(SubscriptionSerializer):
    secret = serializers.CharField(help_text="Signs every notification; shown only now.")

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "secret"]


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "id",
            "event_position",
            "attempted_at",
            "ok",
            "status_code",
            "duration_ms",
            "error",
        ]


class SyncIntervalSerializer(StrictSerializer):
    sync_interval = serializers.IntegerField(
        allow_null=True,
        min_value=MIN_INTERVAL,
        max_value=MAX_INTERVAL,
        help_text="Pull every this many seconds; null for no scheduled sync.",
    )
