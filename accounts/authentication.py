"""`Authorization: Bearer gfu_…` authentication for people's API tokens."""

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts import tokens
from accounts.models import ApiToken

_LAST_USED_GRANULARITY = timedelta(minutes=1)


class UserTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates people by API token; agent tokens are refused here by their prefix."""

    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        token = tokens.bearer_token(header)
        if token is None:
            raise exceptions.AuthenticationFailed("Authorization must be 'Bearer <token>'.")
        if token.startswith(f"{tokens.AGENT_TOKEN_KIND}_"):
            raise exceptions.AuthenticationFailed("Agent tokens cannot use the user API.")
        key_id = tokens.key_id_of(token, tokens.USER_TOKEN_KIND)
        row = (
            ApiToken.objects.select_related("user").filter(key_id=key_id).first()
            if key_id
            else None
        )
        if row is None or not tokens.matches(token, row.digest):
            raise exceptions.AuthenticationFailed("Invalid token.")
        if row.revoked_at is not None:
            raise exceptions.AuthenticationFailed("Token has been revoked.")
        if not row.user.is_active:
            raise exceptions.AuthenticationFailed("User is inactive.")
        now = timezone.now()
        if row.last_used_at is None or now - row.last_used_at > _LAST_USED_GRANULARITY:
            ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        return row.user, row

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
