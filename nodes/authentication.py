"""`Authorization: Bearer gfa_…` authentication for node agents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import QuerySet

from core import tokens
from core.authentication import BearerTokenAuthentication
from nodes.models import AgentToken, Node


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


class AgentTokenAuthentication(BearerTokenAuthentication):
    """Authenticates a node's agent; the header is required, since agents have no session."""

    kind = tokens.AGENT_TOKEN_KIND
    realm = "agent"
    header_required = True
    wrong_kind_message = "Not an agent token."
    # An agent calls every few seconds; its token's last use is shown to the minute it matters.
    last_used_granularity = timedelta(minutes=5)

    def get_queryset(self) -> QuerySet[AgentToken]:
        return AgentToken.objects.select_related("node")

    def identity(self, row: AgentToken) -> AgentIdentity:
        return AgentIdentity(node=row.node)


def authenticate_agent(header: str) -> AgentIdentity:
    """The agent identity for an Authorization header value, or `AuthenticationFailed`."""
    identity, _ = AgentTokenAuthentication().authenticate_header_value(header)
    return identity
