"""Notifications out: subscriptions, signed POSTs to a receiver on 127.0.0.1 that fails, times
out, redirects and then recovers, with every event delivered once accepted, in order."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from projects.models import Event
from sync import notify
from sync.models import Subscription
from tests.support.credentials import fernet_key
from tests.support.sync import Receiver, ready_project

EVENTS = ["JobQueued", "JobSucceeded"]


@pytest.fixture(autouse=True)
def quick(settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]
    settings.NOTIFY_TIMEOUT_SECONDS = 0.5
    settings.NOTIFY_BACKOFF_SECONDS = 10


@pytest.fixture
def receiver():
    receiver = Receiver(hang_seconds=1.5)
    yield receiver
    receiver.close()


def subscribe(api, url: str, **extra) -> dict:
    response = api.post(
        "/api/v1/subscriptions/", {"url": url, "events": EVENTS, **extra}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def test_a_receiver_that_fails_times_out_redirects_and_recovers_gets_every_event_in_order(
    api, user, node, receiver
):
    subscription = subscribe(api, receiver.url)
    project = ready_project(user, node, "a", "https://git.example.com/a.git")
    other = ready_project(user, node, "b", "https://git.example.com/b.git")
    receiver.plan = [500, "hang", 302]

    assert notify.deliver_due() == 0  # 500
    assert notify.deliver_due() == 0  # backing off: not due yet
    assert notify.deliver_due(later(3600)) == 0  # times out
    assert notify.deliver_due(later(7200)) == 0  # a redirect is not followed
    assert notify.deliver_due(later(10800)) == 4  # recovered: everything that is pending

    wanted = Event.objects.filter(project_id__in=[project.pk, other.pk], type__in=EVENTS).order_by(
        "position"
    )
    accepted = receiver.accepted()
    assert [json.loads(r["body"])["event"]["position"] for r in accepted] == [
        event.position for event in wanted
    ]
    for received in accepted:
        timestamp = received["headers"]["Gitfleet-Timestamp"]
        expected = hmac.new(
            subscription["secret"].encode(),
            timestamp.encode() + b"." + received["body"],
            hashlib.sha256,
        ).hexdigest()
        assert received["headers"]["Gitfleet-Signature"] == f"sha256={expected}"
        assert json.loads(received["body"])["subscription"] == subscription["id"]

    attempts = api.get(f"/api/v1/subscriptions/{subscription['id']}/attempts").json()["results"]
    failed = [(a["ok"], a["status_code"]) for a in reversed(attempts)][:3]
    assert failed == [(False, 500), (False, None), (False, 302)]
    assert "timed out" in [a for a in reversed(attempts)][1]["error"]
    shown = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert shown["state"] == "active" and not shown["failing"] and "secret" not in shown
    assert shown["cursor"] == wanted.last().position


def test_only_the_chosen_projects_and_event_types_are_sent(api, user, node, receiver):
    project = ready_project(user, node, "a", "https://git.example.com/a.git")
    subscribe(api, receiver.url, projects=[str(project.pk)])
    ready_project(user, node, "b", "https://git.example.com/b.git")
    api.post(f"/api/v1/projects/{project.pk}/pull", format="json")
    assert notify.deliver_due() == 1
    sent = json.loads(receiver.accepted()[0]["body"])["event"]
    assert sent["type"] == "JobQueued" and sent["project_id"] == str(project.pk)


def test_other_peoples_events_are_never_sent(api, make_user, node, receiver):
    subscribe(api, receiver.url)
    ready_project(make_user("bob"), node, "a", "https://git.example.com/a.git")
    assert notify.deliver_due() == 0
    assert receiver.received == []


def test_after_failing_for_the_give_up_time_the_subscription_is_paused(api, user, node, receiver):
    subscription = subscribe(api, receiver.url)
    ready_project(user, node, "a", "https://git.example.com/a.git")
    receiver.plan = [503, 503]
    notify.deliver_due()
    Subscription.objects.update(failing_since=timezone.now() - timedelta(hours=24))
    notify.deliver_due(later(86400))
    shown = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert shown["state"] == "paused" and shown["failing"] and shown["last_error"] == "HTTP 503"
    assert notify.deliver_due(later(10 * 86400)) == 0  # paused: nothing is tried

    resumed = api.post(f"/api/v1/subscriptions/{subscription['id']}/resume")
    assert resumed.json()["state"] == "active"
    assert notify.deliver_due() == 2


def test_the_backoff_doubles_up_to_its_ceiling(settings):
    settings.NOTIFY_BACKOFF_MAX_SECONDS = 3600
    delays = [notify._backoff(n).total_seconds() for n in range(1, 12)]
    assert delays[:4] == [10, 20, 40, 80]
    assert delays[-1] == 3600


def test_a_leased_subscription_is_not_taken_by_a_second_sender(api, receiver):
    subscribe(api, receiver.url)
    subscription = Subscription.objects.get()
    now = timezone.now()
    assert notify._lease(subscription, now) is True
    assert notify._lease(subscription, now) is False


@pytest.mark.parametrize(
    ("url", "private_allowed"),
    [
        ("http://127.0.0.1:9/hook", False),
        ("http://10.0.0.1/hook", False),
        ("http://169.254.169.254/latest", True),
        ("http://metadata.google.internal/", True),
        ("ftp://example.com/hook", True),
        ("https://user:pw@example.com/hook", True),
        ("not a url", True),
    ],
)
def test_target_urls_obey_the_host_policy(api, settings, url, private_allowed):
    settings.GIT_ALLOW_PRIVATE_HOSTS = private_allowed
    response = api.post("/api/v1/subscriptions/", {"url": url, "events": EVENTS}, format="json")
    assert response.status_code == 400, response.content
    assert "url" in response.json()["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://example.com/h", "events": []}, "events"),
        ({"url": "https://example.com/h", "events": ["NoSuchEvent"]}, "events"),
        ({"url": "https://example.com/h", "events": EVENTS, "projects": ["nope"]}, "projects"),
        ({"events": EVENTS}, "url"),
    ],
)
def test_bad_subscriptions_are_400_naming_the_field(api, body, field):
    response = api.post("/api/v1/subscriptions/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


def test_a_subscription_is_only_its_owners(api, api_for, make_user, receiver):
    subscription = subscribe(api, receiver.url)
    other = api_for(make_user("bob"))
    for path in ("", "/attempts"):
        assert other.get(f"/api/v1/subscriptions/{subscription['id']}{path}").status_code == 404
    assert other.get("/api/v1/subscriptions/").json()["results"] == []


def test_the_subscription_secret_lands_in_no_event_attempt_log_or_sent_body(
    api, user, node, receiver, caplog
):
    caplog.set_level("DEBUG")
    subscription = subscribe(api, receiver.url)
    ready_project(user, node, "a", "https://git.example.com/a.git")

    assert notify.deliver_due() > 0
    secret = subscription["secret"]
    sent = [r["body"].decode() + repr(r["headers"]) for r in receiver.accepted()]
    assert sent and all(secret not in text for text in sent)
    shown = [
        api.get("/api/v1/subscriptions/").content.decode(),
        api.get(f"/api/v1/subscriptions/{subscription['id']}").content.decode(),
        api.get(f"/api/v1/subscriptions/{subscription['id']}/attempts").content.decode(),
    ]
    assert all(secret not in text for text in shown)
    assert all(secret not in f"{e.data!r} {e.meta!r}" for e in Event.objects.all())
    assert secret not in repr(list(Subscription.objects.values()))
    assert secret not in caplog.text
