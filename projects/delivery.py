"""What a leased job carries besides its git fields: the owner's credential, the grant to use
the node's own credentials, and the operator's SSH known_hosts lines.

Only the lease answer, to the agent that holds the lease, ever carries a secret (docs/agent.md,
"Credentials"). A job that cannot be given what it needs is failed at once, not handed over:
`auth_failed` for a revoked credential, `insecure_transport` for a secret that would go over
plain HTTP while CREDENTIALS_ALLOW_INSECURE_TRANSPORT is off and DEBUG is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.views.decorators.debug import sensitive_variables

from credentials.models import Credential
from credentials.services import CredentialRevoked, secret_for
from projects.domain import JobKind

USE_NODE_CREDENTIALS = "projects.use_node_credentials"
# known_hosts lines an operator's file may send with each job; more is a misconfiguration.
MAX_KNOWN_HOSTS_BYTES = 256 * 1024


class Undeliverable(Exception):
    """The job cannot be handed to the agent; it fails with `code` (not retried)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_error(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": False}


@dataclass(frozen=True)
class JobCredential:
    """A credential as the lease answer carries it to the agent that holds the job."""

    id: str
    name: str
    kind: str
    host: str
    username: str
    secret: str
    known_hosts: str

    def __repr__(self) -> str:
        return f"JobCredential(id={self.id!r}, name={self.name!r}, host={self.host!r})"


@dataclass(frozen=True)
class JobAccess:
    credential: JobCredential | None = None
    use_node_credentials: bool = False
    ssh_known_hosts: str = ""


def operator_known_hosts() -> str:
    """The lines of the GIT_SSH_KNOWN_HOSTS file, or "" when none is set."""
    if not settings.GIT_SSH_KNOWN_HOSTS:
        return ""
    with open(Path(settings.GIT_SSH_KNOWN_HOSTS), encoding="utf-8") as handle:
        return handle.read(MAX_KNOWN_HOSTS_BYTES)


@sensitive_variables("secret")
def access_for(*, kind: str, owner_id: int, credential_id: str | None, secure: bool) -> JobAccess:
    """What the lease answer adds to a job of `kind` whose project is `owner_id`'s and uses
    `credential_id`; raises `Undeliverable` when the job must fail instead."""
    if kind == JobKind.DELETE:
        return JobAccess()
    owner = get_user_model().objects.filter(pk=owner_id).first()
    granted = owner is not None and owner.is_active and owner.has_perm(USE_NODE_CREDENTIALS)
    known_hosts = operator_known_hosts()
    if credential_id is None:
        return JobAccess(use_node_credentials=granted, ssh_known_hosts=known_hosts)
    credential = Credential.objects.get(pk=credential_id)
    if credential.revoked_at is not None:
        raise _revoked(credential)
    if not (secure or settings.DEBUG or settings.CREDENTIALS_ALLOW_INSECURE_TRANSPORT):
        raise Undeliverable(
            "insecure_transport",
            f"The job needs the credential {credential.name!r}, and this server sends secrets "
            "only over HTTPS: point the agent at an https:// AGENT_SERVER_URL (behind a proxy, "
            "have it set X-Forwarded-Proto), or set CREDENTIALS_ALLOW_INSECURE_TRANSPORT=true "
            "when agents reach the server over a private network only.",
        )
    try:
        secret = secret_for(credential)
    except CredentialRevoked:
        raise _revoked(credential) from None
    return JobAccess(
        credential=JobCredential(
            id=str(credential.pk),
            name=credential.name,
            kind=credential.kind,
            host=credential.host,
            username=credential.username,
            secret=secret,
            known_hosts=credential.known_hosts,
        ),
        use_node_credentials=granted,
        ssh_known_hosts=known_hosts,
    )


def _revoked(credential: Credential) -> Undeliverable:
    return Undeliverable(
        "auth_failed",
        f"The credential {credential.name!r} for {credential.host} is revoked; give the "
        "project another one (PATCH the project's credential) and retry.",
    )
