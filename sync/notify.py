"""Notifications out: every matching event POSTed, signed, in order, at least once.

The event log is the outbox. A subscription's `cursor` is the position of the last event its
URL accepted; a sweeper leases the subscription (a conditional update of `lease_until`, so two
processes never send the same event at the same time), sends what follows the cursor in
position order, and moves the cursor after each 2xx. A failure stops the round and sets the
next attempt with exponential backoff; after `NOTIFY_GIVE_UP_SECONDS` of failing the
subscription is paused.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Max, Q
from django.utils import timezone

import gitpolicy
from core.exceptions import Invalid
from credentials import keys
from projects.api.serializers import EventSerializer
from projects.domain import EVENT_TYPES
from projects.models import Event, Project
from sync.models import DeliveryAttempt, Subscription, SubscriptionState
from sync.signatures import sign_notification

BATCH = 100
MAX_ERROR = 500


def _policy() -> gitpolicy.HostPolicy:
    return gitpolicy.HostPolicy(allow_private_hosts=settings.GIT_ALLOW_PRIVATE_HOSTS)


def check_url(url: object) -> str:
    """`url` if notifications may be sent there: http(s), a host the git host policy allows,
    no credentials in it; raises ValueError saying why not."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise ValueError("An http or https URL of at most 2048 characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("Use an http or https URL.")
    if parts.username or parts.password:
        raise ValueError("Put no credentials in the URL; verify the signature instead.")
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host[: host.index("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    gitpolicy.check_host(host, _policy())
    return url


def _valid_events(events: object) -> list[str]:
    if not isinstance(events, list) or not events:
        raise Invalid("A non-empty list of event types.", field="events")
    unknown = [e for e in events if not isinstance(e, str) or e not in EVENT_TYPES]
    if unknown:
        raise Invalid(
            f"Unknown event types {unknown!r}; use some of {sorted(EVENT_TYPES)}.", field="events"
        )
    return sorted(set(events))


def _valid_projects(owner: AbstractBaseUser, projects: object) -> list[str]:
    if projects is None:
        return []
    if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
        raise Invalid("A list of project ids.", field="projects")
    wanted = [p for p in projects if _is_uuid(p)]
    owned_ids = Project.objects.filter(owner=owner, pk__in=wanted).values_list("pk", flat=True)
    owned = {str(pk) for pk in owned_ids}
    missing = [p for p in projects if p not in owned]
    if missing:
        raise Invalid(f"You have no projects {missing!r}.", field="projects")
    return sorted(set(projects))


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def create_subscription(
    *, owner: AbstractBaseUser, url: object, events: object, projects: object = None
) -> tuple[Subscription, str]:
    """Subscribes `url` to `owner`'s events from now on; returns it with its secret, which is
    not shown again. Raises `Invalid` naming the field that fails."""
    try:
        url = check_url(url)
    except ValueError as exc:
        raise Invalid(str(exc), field="url") from None
    event_types = _valid_events(events)
    project_ids = _valid_projects(owner, projects)
    keys.require_keys()
    secret = secrets.token_urlsafe(32)
    start = Event.objects.aggregate(last=Max("position"))["last"] or 0
    subscription = Subscription.objects.create(
        owner=owner,
        url=url,
        events=event_types,
        projects=project_ids,
        secret_ciphertext=keys.encrypt(secret),
        cursor=start,
        next_attempt_at=timezone.now(),
    )
    return subscription, secret


def resume(subscription: Subscription) -> Subscription:
    """Makes a paused subscription try again now, from where its cursor stopped."""
    subscription.state = SubscriptionState.ACTIVE
    subscription.failures = 0
    subscription.failing_since = None
    subscription.next_attempt_at = timezone.now()
    subscription.save(update_fields=["state", "failures", "failing_since", "next_attempt_at"])
    return subscription


def pending_events(subscription: Subscription, limit: int = BATCH) -> list[Event]:
    """The events after the cursor the subscription wants, in position order."""
    owned = Project.objects.filter(owner_id=subscription.owner_id)
    if subscription.projects:
        owned = owned.filter(pk__in=subscription.projects)
    return list(
        Event.objects.filter(
            position__gt=subscription.cursor,
            type__in=subscription.events,
            project_id__in=owned.values("pk"),
        ).order_by("position")[:limit]
    )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is an answer like any other non-2xx: a failed delivery


_opener = urllib.request.build_opener(_NoRedirects)


def _post(subscription: Subscription, secret: str, event: Event) -> tuple[int | None, str]:
    """POSTs one event; returns the HTTP status (None when there was none) and an error."""
    body = json.dumps(
        {"subscription": str(subscription.pk), "event": EventSerializer(event).data},
        separators=(",", ":"),
    ).encode()
    timestamp = int(time.time())
    try:
        parts = urlsplit(subscription.url)
        gitpolicy.check_resolved_host(parts.hostname or "", parts.port, _policy())
    except ValueError as exc:
        return None, str(exc)
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s)
        subscription.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "gitfleet-notify",
            "Gitfleet-Timestamp": str(timestamp),
            "Gitfleet-Signature": sign_notification(secret, timestamp, body),
            "Gitfleet-Event-Position": str(event.position),
        },
    )
    try:
        with _opener.open(request, timeout=settings.NOTIFY_TIMEOUT_SECONDS) as answer:
            answer.read(1024)
            return answer.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


def _backoff(failures: int) -> timedelta:
    seconds = settings.NOTIFY_BACKOFF_SECONDS * 2 ** min(failures - 1, 20)
    return timedelta(seconds=min(seconds, settings.NOTIFY_BACKOFF_MAX_SECONDS))


def _lease(subscription: Subscription, now: datetime) -> bool:
    lease_seconds = settings.NOTIFY_TIMEOUT_SECONDS * BATCH + 60
    return bool(
        Subscription.objects.filter(pk=subscription.pk, state=SubscriptionState.ACTIVE)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + timedelta(seconds=lease_seconds))
    )


def deliver(subscription: Subscription) -> int:
    """Sends what is pending for one leased subscription, in order, up to the first failure;
    returns how many events were accepted."""
    secret = keys.decrypt(subscription.secret_ciphertext)
    sent = 0
    for event in pending_events(subscription):
        started = time.monotonic()
        status, error = _post(subscription, secret, event)
        duration_ms = int((time.monotonic() - started) * 1000)
        ok = status is not None and 200 <= status < 300
        if not ok and not error:
            error = f"HTTP {status}"
        DeliveryAttempt.objects.create(
            subscription=subscription,
            event_position=event.position,
            ok=ok,
            status_code=status,
            duration_ms=duration_ms,
            error=error[:MAX_ERROR],
        )
        now = timezone.now()
        if ok:
            sent += 1
            subscription.cursor = event.position
            subscription.failures = 0
            subscription.failing_since = None
            subscription.last_error = ""
            subscription.next_attempt_at = now
            subscription.save(
                update_fields=[
                    "cursor",
                    "failures",
                    "failing_since",
                    "last_error",
                    "next_attempt_at",
                ]
            )
            continue
        subscription.failures += 1
        subscription.failing_since = subscription.failing_since or now
        subscription.last_error = error[:MAX_ERROR]
        subscription.next_attempt_at = now + _backoff(subscription.failures)
        if now - subscription.failing_since >= timedelta(seconds=settings.NOTIFY_GIVE_UP_SECONDS):
            subscription.state = SubscriptionState.PAUSED
        subscription.save(
            update_fields=["failures", "failing_since", "last_error", "next_attempt_at", "state"]
        )
        break
    return sent


def deliver_due(now: datetime | None = None) -> int:
    """Delivers pending events of every active subscription whose next attempt has come, each
    under a lease so that no other process sends them at the same time."""
    now = now or timezone.now()
    due = Subscription.objects.filter(
        state=SubscriptionState.ACTIVE, next_attempt_at__lte=now
    ).order_by("next_attempt_at")[:BATCH]
    sent = 0
    for subscription in due:
        if not _lease(subscription, now):
            continue
        subscription.refresh_from_db()  # the cursor as the last lease holder left it
        try:
            sent += deliver(subscription)
        finally:
            Subscription.objects.filter(pk=subscription.pk).update(lease_until=None)
    return sent
