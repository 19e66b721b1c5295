"""`Authorization: Bearer gfu_…` authentication for people's API tokens."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet
from rest_framework import exceptions

from accounts.models import ApiToken
from core import tokens
from core.authentication import BearerTokenAuthentication


class UserTokenAuthentication(BearerTokenAuthentication):
    """Authenticates people by API token; agent tokens are refused here by their prefix."""

    kind = tokens.USER_TOKEN_KIND
    realm = "api"
    refused_kinds = {tokens.AGENT_TOKEN_KIND: "Agent tokens cannot use the user API."}

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.objects.select_related("user")

    def identity(self, row: ApiToken):
        if not row.user.is_active:
            raise exceptions.AuthenticationFailed("User is inactive.")
        return row.user

    def expires_at(self, row: ApiToken) -> datetime | None:
        return row.expires_at
