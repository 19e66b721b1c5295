"""The admin console for people's API tokens: issue (the token is shown once), list, revoke.

Every staff member manages their own tokens here without any further permission; seeing
everyone's takes `accounts.view_apitoken`, revoking another person's `accounts.change_apitoken`,
and issuing for someone else a superuser or `accounts.issue_token_for_others` (a token acts as
its owner). The admin's history records who issued a token for whom. The digest is never
shown; issued tokens appear only on the page that answers the request that issued them
(`core.admin.ShowOnceAdminMixin`). People without staff rights use `/account/` instead.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import ApiToken
from core.admin import ShowOnceAdminMixin
from core.exceptions import DomainError


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        if self.value() == "active":
            return queryset.filter(unexpired, revoked_at__isnull=True)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ShowOnceAdminMixin, admin.ModelAdmin):
    """Tokens are issued and revoked, never edited; the change permission means "may revoke
    other people's"."""

    shown_once_usage = "Send it as 'Authorization: Bearer <token>' to the API."

    list_display = ["token", "name", "user", "created_at", "last_used_at", "expires_at", "active"]
    list_filter = [TokenStateFilter]
    list_select_related = ["user"]
    search_fields = ["name", "user__username", "key_id"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]
    _shown = ["token", "user", "name", "created_at", "last_used_at", "expires_at", "revoked_at"]

    # --- Who may do what: their own tokens always, others' with the permissions ---------------

    def _sees_everyones(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}")

    def _issues_for_others(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.ISSUE_FOR_OTHERS_PERMISSION)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        if not self.has_module_permission(request):
            return False
        return obj is None or obj.user_id == request.user.pk or self._sees_everyones(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        rows = super().get_queryset(request)
        return rows if self._sees_everyones(request) else rows.filter(user=request.user)

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        return ["user"] if self._issues_for_others(request) else []

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"user": request.user.pk, **super().get_changeform_initial_data(request)}

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "user" and not self._issues_for_others(request):
            # Without the permission the only person a token can be issued for is oneself.
            kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return ["user", "name", "expires_at"] if obj is None else self._shown

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else self._shown

    def get_form(self, request: HttpRequest, obj: ApiToken | None = None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None:
            return form
        issuer = request.user

        class IssueForm(form):
            def clean_name(self):
                try:
                    return services.check_name(self.cleaned_data["name"])
                except DomainError as exc:
                    raise forms.ValidationError(exc.message) from exc

            def clean_expires_at(self):
                try:
                    return services.check_expiry(self.cleaned_data["expires_at"])
                except DomainError as exc:
                    raise forms.ValidationError(exc.message) from exc

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
        return self.has_module_permission(request)  # own tokens; others' are checked per token

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
            user=obj.user, name=obj.name, issued_by=request.user, expires_at=obj.expires_at
        )
        obj.pk, obj.key_id, obj.created_at = token.pk, token.key_id, token.created_at
        obj.name = token.name
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
        revoked, refused = [], []
        for token in queryset.filter(revoked_at__isnull=True).select_related("user"):
            try:
                services.revoke_api_token(token=token, revoked_by=request.user)
            except DomainError as exc:
                refused.append(f"{token} of {token.user}: {exc.message}")
                continue
            self.log_change(request, token, "Revoked.")
            revoked.append(str(token))
        if revoked:
            messages.info(request, f"Revoked: {', '.join(revoked)}.")
        for refusal in refused:
            messages.error(request, f"Not revoked: {refusal}")
        if not revoked and not refused:
            messages.warning(request, "The selected tokens were already revoked.")
