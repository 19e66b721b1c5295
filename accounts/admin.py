"""The admin console for people's API tokens: issue (the token is shown once), list, revoke.

The digest is never shown. Issued tokens appear only on the page that answers the request that
issued them (`core.admin.ShowOnceAdminMixin`). A token acts as its owner, so issuing one for
someone else needs a superuser or `accounts.issue_token_for_others`, and the admin's history
records who issued it for whom.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from accounts import services
from accounts.models import ApiToken
from core.admin import ShowOnceAdminMixin


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ShowOnceAdminMixin, admin.ModelAdmin):
    """Tokens are issued and revoked, never edited; the change permission means "may revoke"."""

    shown_once_usage = "Send it as 'Authorization: Bearer <token>' to the API."

    list_display = ["token", "name", "user", "created_at", "last_used_at", "active"]
    list_filter = [TokenStateFilter]
    list_select_related = ["user"]
    search_fields = ["name", "user__username", "key_id"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]
    _shown = ["token", "user", "name", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return ["user", "name"] if obj is None else self._shown

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else self._shown

    def get_form(self, request: HttpRequest, obj: ApiToken | None = None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None:
            return form
        issuer = request.user

        class IssueForm(form):
            def clean_user(self):
                user = self.cleaned_data["user"]
                if not services.may_issue_for(issuer=issuer, user=user):
                    raise forms.ValidationError(
                        "You may issue tokens only for yourself: issuing for another person "
                        "needs a superuser or the 'Can issue API tokens for other people' "
                        "permission."
                    )
                return user

        return IssueForm

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # nothing about a token is edited; see `has_revoke_permission`

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="token", ordering="key_id")
    def token(self, token: ApiToken) -> str:
        return f"gfu_{token.key_id}…"

    @admin.display(description="active", boolean=True)
    def active(self, token: ApiToken) -> bool:
        return token.is_active

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        if change:  # unreachable while nothing is editable; kept for a safe default
            super().save_model(request, obj, form, change)
            return
        token, plaintext = services.issue_api_token(
            user=obj.user, name=obj.name, issued_by=request.user
        )
        obj.pk, obj.key_id, obj.created_at = token.pk, token.key_id, token.created_at
        obj._state.adding, obj._state.db = False, token._state.db
        self.issued_on_add(request, plaintext)

    def construct_change_message(self, request, form, formsets, add: bool = False):
        if add:  # the history keeps who issued the token for whom, as the log line does
            return f"Issued for {form.instance.user} by {request.user}."
        return super().construct_change_message(request, form, formsets, add)

    def shown_once_add(self, request: HttpRequest, obj: ApiToken, plaintext: str) -> HttpResponse:
        messages.success(request, f"API token {obj.name!r} was issued to {obj.user}.")
        return self.show_once(
            request,
            title=f"API token for {obj.user}",
            issued=[(f"{obj.user}: {obj.name}", plaintext)],
            continue_url=reverse("admin:accounts_apitoken_change", args=[obj.pk]),
        )

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset) -> None:
        revoked = []
        for token in queryset.filter(revoked_at__isnull=True):
            services.revoke_api_token(token=token)
            self.log_change(request, token, "Revoked.")
            revoked.append(str(token))
        if revoked:
            messages.info(request, f"Revoked: {', '.join(revoked)}.")
        else:
            messages.warning(request, "The selected tokens were already revoked.")
