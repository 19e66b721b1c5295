"""The admin shows hooks with their deliveries and subscriptions with their attempts, and never
a secret."""

from __future__ import annotations

import pytest

from credentials import keys
from sync import hooks, notify
from sync.models import Subscription
from tests.support.credentials import fernet_key
from tests.support.sync import Receiver, github_push, ready_project


@pytest.fixture(autouse=True)
def credential_keys(settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]


def test_hook_pages_show_deliveries_and_no_secret(admin_client, admin_user):
    hook, secret = hooks.create_hook(owner=admin_user, name="gh")
    assert secret not in hook.secret_ciphertext and keys.decrypt(hook.secret_ciphertext) == secret
    body, headers = github_push(secret, repo="acme/tool", branch="main", delivery="d-42")
    hooks.receive(hook=hook, headers=headers, body=body)
    pages = [
        admin_client.get("/admin/sync/hook/"),
        admin_client.get(f"/admin/sync/hook/{hook.pk}/change/"),
    ]
    assert all(page.status_code == 200 for page in pages)
    assert "d-42" in pages[1].content.decode()
    assert not any(secret in page.content.decode() for page in pages)
    assert admin_client.get("/admin/sync/hook/add/").status_code == 403


def test_subscription_pages_show_attempts_and_no_secret(admin_client, admin_user, node):
    receiver = Receiver()
    try:
        subscription, secret = notify.create_subscription(
            owner=admin_user, url=receiver.url, events=["JobQueued"]
        )
        receiver.plan = [500]
        ready_project(admin_user, node, "a", "https://git.example.com/a.git")
        notify.deliver_due()
    finally:
        receiver.close()
    pages = [
        admin_client.get("/admin/sync/subscription/"),
        admin_client.get(f"/admin/sync/subscription/{subscription.pk}/change/"),
    ]
    assert all(page.status_code == 200 for page in pages)
    assert "HTTP 500" in pages[1].content.decode()
    assert not any(secret in page.content.decode() for page in pages)
    assert Subscription.objects.get().failures == 1
