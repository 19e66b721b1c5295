"""Push webhooks in: people register hooks, forges deliver pushes, matching checkouts pull."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.exceptions import DomainError, Invalid
from credentials import keys
from projects import domain
from projects.models import Project
from sync import signatures
from sync.models import Hook, HookDelivery
from sync.pulls import PullCause, queue_pull
from sync.repos import repository_key


class Unsigned(DomainError):
    status = 401
    code = "bad_signature"


class TooManyDeliveries(DomainError):
    status = 429
    code = "rate_limited"


def create_hook(*, owner: AbstractBaseUser, name: str = "") -> tuple[Hook, str]:
    """Registers a hook; returns it with its secret, which is not shown again."""
    if not isinstance(name, str) or len(name) > 100:
        raise Invalid("At most 100 characters.", field="name")
    keys.require_keys()
    secret = secrets.token_urlsafe(32)
    hook = Hook.objects.create(owner=owner, name=name, secret_ciphertext=keys.encrypt(secret))
    return hook, secret


@dataclass
class Received:
    """What a delivery did: `duplicate` when its id was seen before, the jobs it queued."""

    forge: str
    delivery_id: str
    duplicate: bool = False
    ignored: str = ""
    pulls: list[str] = field(default_factory=list)


def _push_target(payload: Any) -> tuple[list[str], str] | None:
    """The repository URLs and branch a push payload names (the three forges share `ref` and
    `repository`; GitLab also has `project`), or None when it is not a branch push."""
    if not isinstance(payload, dict):
        return None
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return None
    urls = []
    for section in ("repository", "project"):
        described = payload.get(section)
        if isinstance(described, dict):
            for name in (
                "clone_url",
                "ssh_url",
                "git_url",
                "html_url",
                "git_http_url",
                "git_ssh_url",
                "url",
            ):
                if isinstance(described.get(name), str):
                    urls.append(described[name])
    return urls, ref[len("refs/heads/") :]


def receive(*, hook: Hook, headers: Mapping[str, str], body: bytes) -> Received:
    """Verifies a delivery and queues a pull for each ready project of the hook's owner that
    tracks the pushed branch; raises `Unsigned` (nothing recorded) when the signature fails."""
    signed = signatures.verify(headers, body, keys.decrypt(hook.secret_ciphertext))
    if signed is None:
        raise Unsigned("The delivery is unsigned or its signature does not match.")
    received = Received(forge=signed.forge, delivery_id=signed.delivery_id)
    if not signed.delivery_id or len(signed.delivery_id) > 128:
        raise Invalid("The forge sent no usable delivery id.", field="delivery_id")
    if HookDelivery.objects.filter(hook=hook, delivery_id=signed.delivery_id).exists():
        received.duplicate = True
        return received
    window = timezone.now() - timedelta(seconds=60)
    recent = HookDelivery.objects.filter(hook=hook, received_at__gte=window).count()
    if recent >= settings.HOOK_DELIVERIES_PER_MINUTE:
        raise TooManyDeliveries(
            f"More than {settings.HOOK_DELIVERIES_PER_MINUTE} deliveries in a minute."
        )
    target = None
    if signatures.is_push(signed):
        try:
            target = _push_target(json.loads(body))
        except ValueError:
            raise Invalid("The body is not JSON.", field="body") from None
    urls, branch = target if target else ([], "")
    try:
        with transaction.atomic():
            delivery = HookDelivery.objects.create(
                hook=hook,
                delivery_id=signed.delivery_id,
                forge=signed.forge,
                repository=(urls[0] if urls else "")[:2048],
                branch=branch[:255],
            )
    except IntegrityError:  # the same delivery, arriving twice at once
        received.duplicate = True
        return received
    if target is None:
        received.ignored = "not a branch push"
        return received
    wanted = {key for key in map(repository_key, urls) if key}
    candidates = Project.objects.select_related("node").filter(
        owner_id=hook.owner_id, status=domain.ProjectStatus.READY, branch=branch
    )
    cause = PullCause(kind="hook", hook_id=str(hook.pk), delivery_id=signed.delivery_id)
    for project in candidates:
        if repository_key(project.git_url) in wanted:
            job_id = queue_pull(project, cause=cause)
            if job_id:
                received.pulls.append(job_id)
    delivery.pulls = received.pulls
    delivery.save(update_fields=["pulls"])
    return received
