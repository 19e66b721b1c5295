"""Issuing and revoking people's API tokens."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from accounts.models import ApiToken
from core import tokens
from core.exceptions import Forbidden

logger = logging.getLogger(__name__)

ISSUE_FOR_OTHERS_PERMISSION = "accounts.issue_token_for_others"


def may_issue_for(*, issuer: AbstractBaseUser, user: AbstractBaseUser) -> bool:
    """Anyone may issue a token for themselves; for another person it takes a superuser or the
    `accounts.issue_token_for_others` permission, since the token acts as that person."""
    return issuer.pk == user.pk or issuer.has_perm(ISSUE_FOR_OTHERS_PERMISSION)


def issue_api_token(
    *, user: AbstractBaseUser, name: str, issued_by: AbstractBaseUser | None = None
) -> tuple[ApiToken, str]:
    """Creates a token for `user` and returns it with its plaintext, which is never stored.

    `issued_by` is the person asking (None for an operator at the server's shell); issuing for
    someone else is refused unless `may_issue_for` allows it, and is logged either way.
    """
    if issued_by is not None and not may_issue_for(issuer=issued_by, user=user):
        raise Forbidden(
            "Issuing a token for another person needs a superuser or the "
            f"'{ISSUE_FOR_OTHERS_PERMISSION}' permission.",
            field="user",
        )
    issued = tokens.issue(tokens.USER_TOKEN_KIND)
    token = ApiToken.objects.create(
        user=user, name=name, key_id=issued.key_id, digest=issued.digest
    )
    logger.info(
        "API token %s issued for %s by %s",
        token,
        user.get_username(),
        "the operator" if issued_by is None else issued_by.get_username(),
    )
    return token, issued.plaintext


def revoke_api_token(*, token: ApiToken) -> None:
    """Revokes `token` from now on; revoking again changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
