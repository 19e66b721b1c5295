"""The admin console for nodes: presence at a glance, registration, and agent tokens.

A token is shown once, on the page that answers the request that issued it
(`core.admin.ShowOnceAdminMixin`); only its hash is stored.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.admin import ShowOnceAdminMixin
from nodes import services
from nodes.models import AgentToken, Node

_BADGE = (
    '<span style="display:inline-block;padding:0 6px;border-radius:8px;font-size:0.85em;'
    'color:#fff;background:{};">{}</span>'
)


def presence_badge(node: Node) -> SafeString:
    """A coloured online/offline badge, with a second one when the node is disabled."""
    badge = format_html(_BADGE, "#2e7d32" if node.is_online else "#b71c1c", _presence(node))
    if not node.enabled:
        badge = format_html("{} {}", badge, format_html(_BADGE, "#616161", "disabled"))
    return badge


def _presence(node: Node) -> str:
    return "online" if node.is_online else "offline"


@admin.register(Node)
class NodeAdmin(ShowOnceAdminMixin, admin.ModelAdmin):
    """Adding a node issues its first agent token. Presence fields are written by agents only."""

    shown_once_usage = (
        "Give it to the node's agent as AGENT_TOKEN (or in the file AGENT_TOKEN_FILE)."
    )

    list_display = [
        "name",
        "enabled",
        "online",
        "last_seen_at",
        "agent_version",
        "git_version",
        "git_lfs_version",
        "hostname",
        "free_disk",
        "running_jobs",
        "duplicate_instance",
    ]
    list_filter = ["enabled"]
    search_fields = ["name", "hostname"]
    actions = ["rotate_token", "enable", "disable"]
    readonly_fields = [
        "online",
        "created_at",
        "last_seen_at",
        "agent_version",
        "git_version",
        "git_lfs_version",
        "hostname",
        "free_disk",
        "running_jobs",
        "duplicate_instance",
    ]
    # The agent instance id stays out of sight: whoever knows it could run a second agent
    # behind it without raising the duplicate-instance alarm.
    change_form_template = "admin/nodes/node/change_form.html"

    def get_fields(self, request: HttpRequest, obj: Node | None = None) -> list[str]:
        if obj is None:
            return ["name", "enabled"]
        return ["name", "enabled", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Node | None = None) -> list[str]:
        if obj is None:
            return []
        return ["name", *self.readonly_fields]  # agents and projects know a node by its id

    @admin.display(description="presence")
    def online(self, node: Node) -> SafeString:
        return presence_badge(node)

    @admin.display(description="free disk", ordering="disk_free_bytes")
    def free_disk(self, node: Node) -> str:
        if node.disk_free_bytes is None:
            return "-"
        return filesizeformat(node.disk_free_bytes)

    @admin.display(description="duplicate instance", boolean=True)
    def duplicate_instance(self, node: Node) -> bool:
        return node.duplicate_instance

    # --- Registration: the first token ------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Node, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        node, plaintext = services.create_node(name=obj.name, enabled=obj.enabled)
        obj.pk, obj.created_at = node.pk, node.created_at
        obj._state.adding, obj._state.db = False, node._state.db
        self.issued_on_add(request, plaintext)

    def shown_once_add(self, request: HttpRequest, obj: Node, plaintext: str) -> HttpResponse:
        messages.success(request, f"Node {obj.name} was registered with its first agent token.")
        return self._show_tokens(
            request,
            title=f"Agent token for {obj.name}",
            issued=[(obj, plaintext)],
            continue_url=reverse("admin:nodes_node_change", args=[obj.pk]),
        )

    def _show_tokens(
        self, request: HttpRequest, *, title: str, issued: list[tuple[Node, str]], continue_url: str
    ) -> TemplateResponse:
        labelled = [(f"Node {node.name}", plaintext) for node, plaintext in issued]
        return self.show_once(request, title=title, issued=labelled, continue_url=continue_url)

    # --- Actions ----------------------------------------------------------------------------

    @admin.action(
        description="Rotate agent token (revokes the current ones)", permissions=["change"]
    )
    def rotate_token(self, request: HttpRequest, queryset) -> TemplateResponse:
        issued = [(node, self._rotate(request, node)) for node in queryset]
        return self._show_tokens(
            request,
            title="New agent tokens",
            issued=issued,
            continue_url=reverse("admin:nodes_node_changelist"),
        )

    @admin.action(description="Enable: take new work", permissions=["change"])
    def enable(self, request: HttpRequest, queryset) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable: take no new work", permissions=["change"])
    def disable(self, request: HttpRequest, queryset) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset, *, enabled: bool) -> None:
        word = "Enabled" if enabled else "Disabled"
        changed = [
            node for node in queryset if services.set_node_enabled(node=node, enabled=enabled)
        ]
        for node in changed:
            self.log_change(request, node, word)
        names = ", ".join(node.name for node in changed) or "nothing to change"
        messages.info(request, f"{word}: {names}.")

    def _rotate(self, request: HttpRequest, node: Node) -> str:
        plaintext = services.rotate_agent_token(node=node)
        self.log_change(request, node, "Rotated the agent token; earlier tokens are revoked.")
        return plaintext

    # --- Per-node views: rotate, revoke one token -------------------------------------------

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/rotate-token/",
                self.admin_site.admin_view(self.rotate_token_view),
                name="nodes_node_rotate_token",
            ),
            path(
                "<path:object_id>/tokens/<int:token_id>/revoke/",
                self.admin_site.admin_view(self.revoke_token_view),
                name="nodes_node_revoke_token",
            ),
        ]
        return own + super().get_urls()

    def _node_to_change(self, request: HttpRequest, object_id: str) -> Node:
        node = self.get_object(request, object_id)
        if node is None:
            raise Http404("No such node.")
        if not self.has_change_permission(request, node):
            raise PermissionDenied
        return node

    def rotate_token_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        node = self._node_to_change(request, object_id)
        plaintext = self._rotate(request, node)
        return self._show_tokens(
            request,
            title=f"New agent token for {node.name}",
            issued=[(node, plaintext)],
            continue_url=reverse("admin:nodes_node_change", args=[node.pk]),
        )

    def revoke_token_view(
        self, request: HttpRequest, object_id: str, token_id: int
    ) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        node = self._node_to_change(request, object_id)
        token = get_object_or_404(AgentToken, pk=token_id, node=node)
        if token.is_active:
            services.revoke_agent_token(token=token)
            self.log_change(request, node, f"Revoked agent token {token}.")
            messages.info(request, f"Agent token {token} of {node.name} is revoked.")
        else:
            messages.warning(request, f"Agent token {token} was already revoked.")
        return HttpResponseRedirect(reverse("admin:nodes_node_change", args=[node.pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        node = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "agent_tokens": AgentToken.objects.filter(node=node) if node else [],
            "can_manage_tokens": node is not None and self.has_change_permission(request, node),
        }
        return super().change_view(request, object_id, form_url, extra_context)
