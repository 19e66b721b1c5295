"""The sync app in the admin: hooks and subscriptions, with their deliveries and attempts.

Secrets are never shown: they are displayed once, when the API creates them.
"""

from django.contrib import admin

from sync.models import DeliveryAttempt, Hook, HookDelivery, Subscription, SyncSchedule


class HookDeliveryInline(admin.TabularInline):
    model = HookDelivery
    extra = 0
    can_delete = False
    fields = ["delivery_id", "forge", "repository", "branch", "pulls", "received_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Hook)
class HookAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "created_at"]
    fields = ["id", "name", "owner", "created_at"]
    readonly_fields = ["id", "owner", "created_at"]
    inlines = [HookDeliveryInline]

    def has_add_permission(self, request) -> bool:
        return False  # a hook's secret is shown once, by the API that creates it


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["event_position", "attempted_at", "ok", "status_code", "duration_ms", "error"]
    readonly_fields = fields
    ordering = ["-attempted_at", "-id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["url", "owner", "state", "failures", "failing_since", "cursor"]
    list_filter = ["state"]
    fields = [
        "id",
        "owner",
        "url",
        "events",
        "projects",
        "state",
        "cursor",
        "failures",
        "failing_since",
        "last_error",
        "next_attempt_at",
        "created_at",
    ]
    readonly_fields = [
        "id",
        "owner",
        "url",
        "events",
        "projects",
        "cursor",
        "failures",
        "failing_since",
        "last_error",
        "next_attempt_at",
        "created_at",
    ]
    inlines = [DeliveryAttemptInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(SyncSchedule)
class SyncScheduleAdmin(admin.ModelAdmin):
    list_display = ["project", "interval", "next_due_at"]
    raw_id_fields = ["project"]
