"""The form people use on their own account page to issue a token for themselves."""

from __future__ import annotations

from datetime import datetime, time

from django import forms
from django.utils import timezone

from accounts import services
from core.exceptions import DomainError


class IssueTokenForm(forms.Form):
    """A name and an optional expiry day, checked by the same rules as the API."""

    name = forms.CharField(
        max_length=services.NAME_MAX_LENGTH,
        strip=False,
        help_text="What the token is for, for example 'laptop' or 'CI'.",
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=(
            "Optional. The token stops working at the start of this day "
            f"(server time), at most {services.MAX_TOKEN_LIFETIME.days} days ahead. "
            "Empty: until you revoke it."
        ),
    )

    def clean_name(self) -> str:
        try:
            return services.check_name(self.cleaned_data["name"])
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean_expires_on(self) -> datetime | None:
        day = self.cleaned_data["expires_on"]
        if day is None:
            return None
        expires_at = timezone.make_aware(datetime.combine(day, time.min))
        try:
            return services.check_expiry(expires_at)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc
