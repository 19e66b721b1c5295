"""Notifications sent by the sweepers of real server processes (two on PostgreSQL): every event
reaches the receiver once accepted, in order, even after a failure."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.support.servers import ServerProcess, ServerSite
from tests.support.sync import HttpAgent, Receiver

pytestmark = pytest.mark.e2e


def test_the_sweepers_deliver_each_event_once_in_order(tmp_path):
    site = ServerSite(tmp_path, CREDENTIAL_KEYS=Fernet.generate_key().decode())
    receiver = Receiver()
    servers = []
    try:
        accounts = site.create_accounts(users=["alice"], nodes=["node-1"])
        token, agent_token = accounts.users["alice"], accounts.nodes["node-1"]
        # The first failure backs off for one second only, so the test sees the recovery.
        tuning = {"SWEEP_SECONDS": "1", "NOTIFY_BACKOFF_SECONDS": "1"}
        servers = [ServerProcess(site, **tuning) for _ in range(2 if site.postgres else 1)]
        person = httpx.Client(
            base_url=servers[0].url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        HttpAgent(servers[-1].url, agent_token).heartbeat()
        receiver.plan = [500]
        subscribed = person.post(
            "/api/v1/subscriptions/", json={"url": receiver.url, "events": ["ProjectCreated"]}
        )
        assert subscribed.status_code == 201, subscribed.text
        for n in range(3):
            body = {"name": f"p{n}", "git_url": "https://git.example.com/r.git", "branch": "main"}
            assert person.post("/api/v1/projects/clone", json={**body, "node": "node-1"}).is_success

        deadline = time.monotonic() + 30
        while len(receiver.accepted()) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # room for a duplicate to show up, were one to be sent

        sent = [json.loads(r["body"])["event"] for r in receiver.accepted()]
        assert [event["data"]["name"] for event in sent] == ["p0", "p1", "p2"]
        assert receiver.received[0]["answered"] == 500
        attempts = person.get(f"/api/v1/subscriptions/{subscribed.json()['id']}/attempts")
        assert [a["ok"] for a in reversed(attempts.json()["results"])] == [False, True, True, True]
    finally:
        for server in servers:
            server.stop()
        receiver.close()
        site.close()
