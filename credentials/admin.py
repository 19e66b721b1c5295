"""Git credentials in the admin console: every staff member sees all, adds and rotates their
own, and revokes their own; with the change permission, anyone's (an answer to a leak).

The secret is write-only: its field renders empty on every page, whatever is stored.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from core.exceptions import DomainError
from credentials import keys, services, validation
from credentials.models import Credential


class WriteOnlyTextarea(forms.Textarea):
    """A textarea (an SSH key spans lines) that, like `PasswordInput`, never renders a value:
    not the secret, not a mask of its length."""

    def format_value(self, value) -> None:
        return None

    def get_context(self, name, value, attrs):
        return super().get_context(name, None, attrs)


def _secret_widget() -> WriteOnlyTextarea:
    return WriteOnlyTextarea(
        attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}
    )


class _ServiceCheckedForm(forms.ModelForm):
    """Runs the services' own checks, so a refusal shows on its field instead of failing."""

    def _refuse(self, error: DomainError) -> None:
        field = error.field if error.field in self.fields else None
        self.add_error(field, error.message)


class CredentialAddForm(_ServiceCheckedForm):
    secret = forms.CharField(
        widget=_secret_widget(),
        strip=False,
        help_text="An access token, or an unencrypted OpenSSH or PEM private key. "
        "Never shown again.",
    )

    class Meta:
        model = Credential
        fields = ["name", "kind", "host", "username", "secret", "known_hosts"]

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        checks = {
            "name": lambda: validation.validate_name(data["name"]),
            "host": lambda: validation.validate_host(data["host"]),
            "username": lambda: validation.validate_username(data.get("username") or ""),
            "known_hosts": lambda: validation.validate_known_hosts(kind, data["known_hosts"]),
            "secret": lambda: validation.check_secret(kind, data["secret"]),
            "keys": keys.require_keys,
        }
        for field, check in checks.items():
            if field in ("known_hosts", "secret") and kind is None:
                continue  # what they may hold depends on the kind, refused on its own
            if field in data or field == "keys":
                try:
                    check()
                except DomainError as error:
                    self._refuse(error)
        return data


class CredentialRotateForm(_ServiceCheckedForm):
    secret = forms.CharField(
        widget=_secret_widget(),
        strip=False,
        required=False,
        label="New secret",
        help_text="Leave empty to keep the current secret. The stored one is never shown.",
    )

    class Meta:
        model = Credential
        fields = ["secret"]

    def clean_secret(self) -> str:
        secret = self.cleaned_data["secret"]
        if secret:
            try:
                validation.check_secret(self.instance.kind, secret)
                keys.require_keys()
            except DomainError as error:
                raise forms.ValidationError(error.message) from None
        return secret


class StateFilter(admin.SimpleListFilter):
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


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "host", "owner", "fingerprint", "last_used_at", "active"]
    list_filter = [StateFilter, "kind"]
    list_select_related = ["owner"]
    search_fields = ["name", "host", "owner__username"]
    actions = ["revoke"]
    _shown = [
        "owner",
        "name",
        "kind",
        "host",
        "username",
        "known_hosts",
        "fingerprint",
        "created_at",
        "last_used_at",
        "rotated_at",
        "revoked_at",
    ]

    @method_decorator(sensitive_post_parameters("secret"))
    def changeform_view(
        self, request: HttpRequest, object_id=None, form_url="", extra_context=None
    ) -> HttpResponse:
        # An error report (mail to ADMINS, the DEBUG page) then shows the secret as stars.
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request: HttpRequest, obj: Credential | None = None, **kwargs):
        kwargs["form"] = CredentialAddForm if obj is None else CredentialRotateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Credential | None = None) -> list[str]:
        if obj is None:
            return list(CredentialAddForm.Meta.fields)
        if self._may_rotate(request, obj):
            return [*self._shown, "secret"]
        return self._shown

    def get_readonly_fields(self, request: HttpRequest, obj: Credential | None = None):
        return [] if obj is None else self._shown

    # Every staff member may keep their own credentials here without being granted model
    # permissions; the `change` permission adds revoking other people's (an answer to a leak).

    def _is_staff(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def _may_rotate(self, request: HttpRequest, obj: Credential) -> bool:
        return obj.owner_id == request.user.pk and obj.is_active

    def _may_revoke_others(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._is_staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Credential | None = None) -> bool:
        return self._is_staff(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._is_staff(request)

    def has_change_permission(self, request: HttpRequest, obj: Credential | None = None) -> bool:
        # Only the owner changes (rotates) a credential; everyone else sees it read-only.
        if obj is None:
            return self._is_staff(request)
        return self._is_staff(request) and self._may_rotate(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Credential | None = None) -> bool:
        return False  # revoked, never deleted: the row stays as the record of what existed

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self._is_staff(request)

    @admin.display(description="active", boolean=True)
    def active(self, credential: Credential) -> bool:
        return credential.is_active

    def save_model(self, request: HttpRequest, obj: Credential, form, change: bool) -> None:
        data = form.cleaned_data
        if change:
            if data.get("secret"):
                services.rotate_secret(credential=obj, secret=data["secret"])
            return
        created = services.create_credential(
            owner=request.user,
            name=data["name"],
            kind=data["kind"],
            host=data["host"],
            username=data.get("username", ""),
            known_hosts=data.get("known_hosts", ""),
            secret=data["secret"],
        )
        obj.pk, obj.owner_id, obj.created_at = created.pk, created.owner_id, created.created_at
        obj._state.adding, obj._state.db = False, created._state.db

    @admin.action(description="Revoke the selected credentials", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        active = list(queryset.filter(revoked_at__isnull=True))
        others_too = self._may_revoke_others(request)
        allowed = [c for c in active if others_too or c.owner_id == request.user.pk]
        for credential in allowed:
            services.revoke_credential(credential=credential)
        self.message_user(request, f"Revoked {len(allowed)} credential(s).", messages.SUCCESS)
        if len(allowed) < len(active):
            self.message_user(
                request,
                f"Left {len(active) - len(allowed)} credential(s) of other people active: "
                "revoking those needs the permission to change git credentials.",
                messages.WARNING,
            )
