"""Issuing and revoking people's API tokens.

Every entry point — the API, the account page, the admin, `manage.py create_token` — issues
and revokes through these functions, so the same rules hold everywhere.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from accounts.models import ApiToken
from core import tokens
from core.exceptions import Forbidden, Invalid

logger = logging.getLogger(__name__)

ISSUE_FOR_OTHERS_PERMISSION = "accounts.issue_token_for_others"
REVOKE_OTHERS_PERMISSION = "accounts.change_apitoken"

# A token that outlives a year is a token nobody remembers issuing; people renew instead.
MAX_TOKEN_LIFETIME = timedelta(days=365)
NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length


def may_issue_for(*, issuer: AbstractBaseUser, user: AbstractBaseUser) -> bool:
    """Anyone may issue a token for themselves; for another person it takes a superuser or the
    `accounts.issue_token_for_others` permission, since the token acts as that person."""
    return issuer.pk == user.pk or issuer.has_perm(ISSUE_FOR_OTHERS_PERMISSION)


def may_revoke(*, revoker: AbstractBaseUser, token: ApiToken) -> bool:
    """Anyone may revoke their own tokens; another person's takes the admin's revoke permission
    (`accounts.change_apitoken`)."""
    return revoker.pk == token.user_id or revoker.has_perm(REVOKE_OTHERS_PERMISSION)


def owner_for(*, username: str | None, issued_by: AbstractBaseUser) -> AbstractBaseUser:
    """Who a token asked for by `issued_by` is for: themselves, unless another username is given.

    Another person takes the permission, checked before the name is looked up so that people
    without it learn nothing about which names exist.
    """
    if username is None or username == issued_by.get_username():
        return issued_by
    if not issued_by.has_perm(ISSUE_FOR_OTHERS_PERMISSION):
        raise Forbidden(
            "Issuing a token for another person needs a superuser or the "
            f"'{ISSUE_FOR_OTHERS_PERMISSION}' permission.",
            field="user",
        )
    owner = get_user_model().objects.filter(username=username, is_active=True).first()
    if owner is None:
        raise Invalid("No active person has this username.", field="user")
    return owner


def check_name(name: object) -> str:
    """The token's name if it is usable, else `Invalid` naming the field."""
    if not isinstance(name, str) or not name.strip():
        raise Invalid("Give the token a name: what it is for.", field="name")
    if len(name) > NAME_MAX_LENGTH or not name.isprintable():
        raise Invalid(
            f"At most {NAME_MAX_LENGTH} printable characters, no line breaks.", field="name"
        )
    return name.strip()


def check_expiry(expires_at: datetime | None, *, now: datetime | None = None) -> datetime | None:
    """`expires_at` if it is in the future and within `MAX_TOKEN_LIFETIME`, else `Invalid`."""
    if expires_at is None:
        return None
    now = now or timezone.now()
    if timezone.is_naive(expires_at):
        raise Invalid("Give a time zone (for example 'Z' or '+02:00').", field="expires_at")
    if expires_at <= now:
        raise Invalid("Must be in the future.", field="expires_at")
    if expires_at > now + MAX_TOKEN_LIFETIME:
        raise Invalid(
            f"At most {MAX_TOKEN_LIFETIME.days} days from now; issue a new token later.",
            field="expires_at",
        )
    return expires_at


def issue_api_token(
    *,
    user: AbstractBaseUser,
    name: str,
    issued_by: AbstractBaseUser | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Creates a token for `user` and returns it with its plaintext, which is never stored.

    `issued_by` is the person asking (None for an operator at the server's shell); issuing for
    someone else is refused unless `may_issue_for` allows it, and is logged either way.
    """
    name = check_name(name)
    expires_at = check_expiry(expires_at)
    if issued_by is not None and not may_issue_for(issuer=issued_by, user=user):
        raise Forbidden(
            "Issuing a token for another person needs a superuser or the "
            f"'{ISSUE_FOR_OTHERS_PERMISSION}' permission.",
            field="user",
        )
    issued = tokens.issue(tokens.USER_TOKEN_KIND)
    token = ApiToken.objects.create(
        user=user, name=name, key_id=issued.key_id, digest=issued.digest, expires_at=expires_at
    )
    logger.info(
        "API token %s issued for %s by %s, expires %s",
        token,
        user.get_username(),
        "the operator" if issued_by is None else issued_by.get_username(),
        "never" if expires_at is None else expires_at.isoformat(),
    )
    return token, issued.plaintext


def revoke_api_token(*, token: ApiToken, revoked_by: AbstractBaseUser | None = None) -> ApiToken:
    """Revokes `token` from now on; revoking again changes nothing.

    `revoked_by` is the person asking (None for the operator); revoking another person's token
    is refused unless `may_revoke` allows it.
    """
    if revoked_by is not None and not may_revoke(revoker=revoked_by, token=token):
        raise Forbidden(
            "Revoking another person's token needs a superuser or the "
            f"'{REVOKE_OTHERS_PERMISSION}' permission."
        )
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        logger.info(
            "API token %s revoked by %s",
            token,
            "the operator" if revoked_by is None else revoked_by.get_username(),
        )
    return token
