"""Writes about nodes: registration, agent tokens, and presence from agent calls."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core import tokens
from core.exceptions import Conflict
from nodes.models import AgentToken, Node


class InstanceSuperseded(Conflict):
    code = "instance_superseded"


def create_node(*, name: str, enabled: bool = True) -> tuple[Node, str]:
    """Registers a node and issues its first agent token; returns the node and the token."""
    with transaction.atomic():
        node = Node(name=name, enabled=enabled)
        node.full_clean()
        node.save()
        plaintext = issue_agent_token(node=node)
    return node, plaintext


def set_node_enabled(*, node: Node, enabled: bool) -> bool:
    """Lets a node take new work, or stops it; returns whether anything changed. Jobs already
    queued for a disabled node wait (and expire after `QUEUED_JOB_TTL`)."""
    return bool(Node.objects.filter(pk=node.pk).exclude(enabled=enabled).update(enabled=enabled))


def issue_agent_token(*, node: Node) -> str:
    issued = tokens.issue(tokens.AGENT_TOKEN_KIND)
    AgentToken.objects.create(node=node, key_id=issued.key_id, digest=issued.digest)
    return issued.plaintext


def rotate_agent_token(*, node: Node) -> str:
    """Issues a new token for `node` and revokes every earlier one."""
    with transaction.atomic():
        AgentToken.objects.filter(node=node, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        return issue_agent_token(node=node)


def revoke_agent_token(*, token: AgentToken) -> None:
    AgentToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


@dataclass(frozen=True)
class Heartbeat:
    agent_version: str
    hostname: str
    disk_free_bytes: int | None
    running_jobs: int
    # None: an older agent that does not report them; the stored values are then kept.
    git_version: str | None = None
    git_lfs_version: str | None = None


@dataclass(frozen=True)
class Presence:
    """What a sign of life changed: `replaced_instance` is set when an agent restarted."""

    node: Node
    replaced_instance: uuid.UUID | None = None


def record_presence(
    *, node: Node, instance_id: uuid.UUID | str | None = None, heartbeat: Heartbeat | None = None
) -> Presence:
    """Counts an agent call as a sign of life, tracking which agent instance is current.

    Writes are throttled to one per `NODE_PRESENCE_WRITE_SECONDS` unless something changed.
    A call from an instance that a newer one replaced flags the node and raises
    `InstanceSuperseded`: one token is running in two live agents.
    """
    if instance_id is not None:
        instance_id = uuid.UUID(str(instance_id))
    now = timezone.now()
    fresh = node.last_seen_at is not None and now - node.last_seen_at < timedelta(
        seconds=settings.NODE_PRESENCE_WRITE_SECONDS
    )
    if heartbeat is None and (instance_id is None or instance_id == node.instance_id):
        if fresh:
            return Presence(node=node)
        # The usual case, one statement: the same instance as before, still the current one.
        if _note_seen(node, now):
            return Presence(node=node)

    superseded = False
    with transaction.atomic():
        # Decided on the locked row: the row read at authentication may predate a restart.
        node = Node.objects.select_for_update().get(pk=node.pk)
        replaced = None
        if instance_id is not None and instance_id == node.previous_instance_id:
            superseded = True
        else:
            if instance_id is not None and instance_id != node.instance_id:
                replaced = node.instance_id
                node.previous_instance_id = node.instance_id
                node.instance_id = instance_id
            node.last_seen_at = now
            fields = ["last_seen_at", "instance_id", "previous_instance_id"]
            if heartbeat is not None:
                node.agent_version = heartbeat.agent_version
                node.hostname = heartbeat.hostname
                node.disk_free_bytes = heartbeat.disk_free_bytes
                node.running_jobs = heartbeat.running_jobs
                fields += ["agent_version", "hostname", "disk_free_bytes", "running_jobs"]
                for name in ("git_version", "git_lfs_version"):
                    if getattr(heartbeat, name) is not None:
                        setattr(node, name, getattr(heartbeat, name))
                        fields.append(name)
            node.save(update_fields=fields)
    if superseded:
        flag_duplicate_instance(node=node)
        raise InstanceSuperseded(
            "A newer agent instance is running with this node's token; this one must stop.",
            field="instance_id",
        )
    return Presence(node=node, replaced_instance=replaced)


def _note_seen(node: Node, now) -> bool:
    """`last_seen_at = now` while `node`'s current instance is still the one read with it, as
    one fixed statement (an idle fleet's every other lease call runs it); False when another
    instance took over meanwhile."""
    table = Node._meta.db_table
    same = "instance_id IS NULL" if node.instance_id is None else "instance_id = %s"
    params = [
        connection.ops.adapt_datetimefield_value(now),
        Node._meta.pk.get_db_prep_value(node.pk, connection),
    ]
    if node.instance_id is not None:
        field = Node._meta.get_field("instance_id")
        params.append(field.get_db_prep_value(node.instance_id, connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seen_at = %s WHERE id = %s AND {same}",  # noqa: S608
            params,
        )
        return cursor.rowcount > 0


def flag_duplicate_instance(*, node: Node) -> None:
    """Raises the duplicate-instance alarm (admin and node API) for the online window: two live
    agents are using this node's token."""
    flag_duplicate_instance_of(node.pk)


def flag_duplicate_instance_of(node_id: uuid.UUID | str) -> None:
    """`flag_duplicate_instance` for the node with id `node_id`."""
    Node.objects.filter(pk=node_id).update(duplicate_instance_at=timezone.now())
