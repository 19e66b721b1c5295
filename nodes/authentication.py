"""`Authorization: Bearer gfa_…` authentication for node agents."""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts import tokens
from nodes.models import AgentToken, Node

_LAST_USED_GRANULARITY = timedelta(minutes=1)


@dataclass(frozen=True)
class AgentIdentity:
    """Stands in `request.user` for an authenticated agent; it is never a person."""

    node: Node
    is_authenticated: bool = True
    is_staff: bool = False
    is_active: bool = True
    pk: None = None

    def __str__(self) -> str:
        return f"agent of node {self.node.name}"


def authenticate_agent(header: str) -> AgentIdentity:
    """The agent identity for an Authorization header value, or `AuthenticationFailed`."""
    if not header:
        raise exceptions.NotAuthenticated("Agent calls need 'Authorization: Bearer gfa_…'.")
    token = tokens.bearer_token(header)
    if token is None:
        raise exceptions.AuthenticationFailed("Authorization must be 'Bearer <agent token>'.")
    key_id = tokens.key_id_of(token, tokens.AGENT_TOKEN_KIND)
    if key_id is None:
        raise exceptions.AuthenticationFailed("Not an agent token.")
    row = AgentToken.objects.select_related("node").filter(key_id=key_id).first()
    if row is None or not tokens.matches(token, row.digest):
        raise exceptions.AuthenticationFailed("Invalid token.")
    if row.revoked_at is not None:
        raise exceptions.AuthenticationFailed("Token has been revoked.")
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_GRANULARITY:
        AgentToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return AgentIdentity(node=row.node)


class AgentTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        identity = authenticate_agent(request.headers.get("Authorization", ""))
        return identity, None

    def authenticate_header(self, request):
        return 'Bearer realm="agent"'
