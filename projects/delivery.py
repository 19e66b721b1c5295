"""What a leased job carries besides its git fields: the owner's credential, the grant to use
the node's own credentials, and the operator's SSH known_hosts lines.

Only the lease answer, to the agent that holds the lease, ever carries a secret (docs/agent.md,
"Credentials"). A job that cannot be given what it needs is failed at once, not handed over:
`auth_failed` for a revoked credential, `insecure_transport` for a secret that would go over
plain HTTP while CREDENTIALS_ALLOW_INSECURE_TRANSPORT is off and DEBUG is off.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
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
    granted = may_use_node_credentials(owner_id)
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


def may_use_node_credentials(user_id: int) -> bool:
    """`user.has_perm(USE_NODE_CREDENTIALS)` for the user with id `user_id` (False when there is
    none), as Django's `ModelBackend` decides it (an active superuser, or the permission given
    to the user or to one of their groups), in one statement: every lease of a clone or pull
    asks, and the user and their two permission lookups were three."""
    app_label, codename = USE_NODE_CREDENTIALS.split(".")
    with connection.cursor() as cursor:
        cursor.execute(_grant_sql(), [app_label, codename, app_label, codename, user_id])
        row = cursor.fetchone()
    return bool(row and row[0] and row[1])


@functools.cache
def _grant_sql() -> str:
    """The statement of `may_use_node_credentials`, built once the models are loaded."""
    user = get_user_model()
    user_perms = user._meta.get_field("user_permissions").remote_field.through._meta.db_table
    user_groups = user._meta.get_field("groups").remote_field.through._meta.db_table
    group_perms = Group.permissions.through._meta.db_table
    perm, content_type = Permission._meta.db_table, ContentType._meta.db_table
    has = f"""
        JOIN {perm} p ON p.id = x.permission_id
        JOIN {content_type} c ON c.id = p.content_type_id
        WHERE c.app_label = %s AND p.codename = %s
    """
    return f"""
        SELECT u.is_active, (
            u.is_superuser
            OR EXISTS (SELECT 1 FROM {user_perms} x {has} AND x.user_id = u.id)
            OR EXISTS (
                SELECT 1 FROM {user_groups} g JOIN {group_perms} x ON x.group_id = g.group_id
                {has} AND g.user_id = u.id
            )
        )
        FROM {user._meta.db_table} u WHERE u.id = %s
    """  # noqa: S608 - table names come from the models, values are parameters


def _revoked(credential: Credential) -> Undeliverable:
    return Undeliverable(
        "auth_failed",
        f"The credential {credential.name!r} for {credential.host} is revoked; give the "
        "project another one (PATCH the project's credential) and retry.",
    )
