"""One bearer-token authentication for every token kind, with small hooks for what differs.

Like `RemoteUserBackend(ModelBackend)` in `django.contrib.auth`: the steps — parse the header,
check the prefix, find the row by key id, compare the hash in constant time, refuse revoked and
expired tokens, note the last use — are written once; a subclass names its token kind and rows
and says who the token stands for.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from core import tokens
from core.prepared import Prepared


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <kind>_…` against hashed token rows; subclasses fill the hooks."""

    kind: ClassVar[str]
    """The token prefix this class accepts (`core.tokens.*_TOKEN_KIND`)."""
    realm: ClassVar[str]
    refused_kinds: ClassVar[dict[str, str]] = {}
    """Other kinds recognised by their prefix and refused with their own message."""
    header_required: ClassVar[bool] = False
    """False lets a request without the header fall through to the next authentication class."""
    wrong_kind_message: ClassVar[str] = "Invalid token."
    last_used_granularity: ClassVar[timedelta] = timedelta(minutes=1)

    # --- Hooks ---------------------------------------------------------------------------------

    def get_queryset(self) -> QuerySet:
        """The token rows of this kind, with what `identity` needs already joined."""
        raise NotImplementedError

    def identity(self, row: Any) -> Any:
        """What stands in `request.user` for a valid token; raise `AuthenticationFailed` to refuse
        a token whose holder may no longer call (an inactive person)."""
        raise NotImplementedError

    def expires_at(self, row: Any) -> datetime | None:
        """When the token stops working, or None if only revoking ends it."""
        return None

    # --- The steps -----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> tuple[Any, Model] | None:
        header = request.headers.get("Authorization", "")
        if not header and not self.header_required:
            return None
        return self.authenticate_header_value(header)

    def authenticate_header_value(self, header: str) -> tuple[Any, Model]:
        """The (identity, token row) for an Authorization header value, or `AuthenticationFailed`."""
        if not header:
            raise exceptions.NotAuthenticated(
                f"This call needs 'Authorization: Bearer {self.kind}_…'."
            )
        token = tokens.bearer_token(header)
        if token is None:
            raise exceptions.AuthenticationFailed("Authorization must be 'Bearer <token>'.")
        for kind, message in self.refused_kinds.items():
            if token.startswith(f"{kind}_"):
                raise exceptions.AuthenticationFailed(message)
        key_id = tokens.key_id_of(token, self.kind)
        if key_id is None:
            raise exceptions.AuthenticationFailed(self.wrong_kind_message)
        row = self._lookup().first(key_id)
        if row is None or not tokens.matches(token, row.digest):
            raise exceptions.AuthenticationFailed("Invalid token.")
        if row.revoked_at is not None:
            raise exceptions.AuthenticationFailed("Token has been revoked.")
        expires_at = self.expires_at(row)
        if expires_at is not None and expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed(
                f"Token expired at {expires_at.isoformat()}; issue a new one."
            )
        identity = self.identity(row)
        self.note_use(row)
        return identity, row

    @classmethod
    def _lookup(cls) -> Prepared:
        """The token row by `key_id` (unique), compiled once per class: every call of the agents
        and the API looks one up."""
        lookup = cls.__dict__.get("_prepared_lookup")
        if lookup is None:
            lookup = Prepared(lambda key_id: cls().get_queryset().filter(key_id=key_id)[:1], 1)
            cls._prepared_lookup = lookup
        return lookup

    def note_use(self, row: Model) -> None:
        """Writes `last_used_at` at most once per `last_used_granularity`, so calls stay reads."""
        now = timezone.now()
        if row.last_used_at is None or now - row.last_used_at > self.last_used_granularity:
            type(row).objects.filter(pk=row.pk).update(last_used_at=now)

    def authenticate_header(self, request: Request) -> str:
        return f'Bearer realm="{self.realm}"'
