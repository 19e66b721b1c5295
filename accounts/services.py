"""Issuing and revoking people's API tokens."""

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from accounts import tokens
from accounts.models import ApiToken


def issue_api_token(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """Creates a token for `user` and returns it with its plaintext, which is never stored."""
    issued = tokens.issue(tokens.USER_TOKEN_KIND)
    token = ApiToken.objects.create(
        user=user, name=name, key_id=issued.key_id, digest=issued.digest
    )
    return token, issued.plaintext


def revoke_api_token(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
