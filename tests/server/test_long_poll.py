"""Long polls against real uvicorn processes: prompt wake-ups, 204 when idle, across processes.

The servers here re-check only every 30 s, so a prompt answer can only come from a wake-up.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import httpx
import pytest

from tests.support.servers import ServerProcess, ServerSite

pytestmark = pytest.mark.e2e

SLOW_RECHECK = {"LONG_POLL_RECHECK_SECONDS": "30"}
METRICS_TOKEN = "test-metrics-token"


@pytest.fixture
def site(tmp_path):
    site = ServerSite(tmp_path)
    yield site
    site.close()


@pytest.fixture
def server(site):
    process = ServerProcess(site, METRICS_TOKEN=METRICS_TOKEN, **SLOW_RECHECK)
    yield process
    process.stop()


def node_and_user(site: ServerSite) -> tuple[str, str]:
    """node-1's agent token and alice's API token."""
    accounts = site.create_accounts(users=["alice"], nodes=["node-1"])
    return accounts.nodes["node-1"], accounts.users["alice"]


def lease(url: str, agent_token: str, wait: float) -> httpx.Response:
    body = {"instance_id": str(uuid.uuid4()), "request_id": uuid.uuid4().hex, "wait": wait}
    return httpx.post(
        f"{url}/api/v1/agent/lease",
        json=body,
        timeout=wait + 15,
        headers={"Authorization": f"Bearer {agent_token}"},
    )


def heartbeat(url: str, agent_token: str) -> None:
    body = {
        "instance_id": str(uuid.uuid4()),
        "agent_version": "test",
        "hostname": "h",
        "disk_free_bytes": 1,
        "running_jobs": [],
    }
    response = httpx.post(
        f"{url}/api/v1/agent/heartbeat",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {agent_token}"},
    )
    assert response.status_code == 200, response.text


def clone(url: str, user_token: str) -> httpx.Response:
    body = {
        "name": f"p{uuid.uuid4().hex[:8]}",
        "git_url": "https://git.example.com/r.git",
        "branch": "main",
        "node": "node-1",
    }
    return httpx.post(
        f"{url}/api/v1/projects/clone",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {user_token}"},
    )


class Poll(threading.Thread):
    def __init__(self, url: str, token: str, wait: float):
        super().__init__(daemon=True)
        self.url, self.token, self.wait = url, token, wait
        self.response: httpx.Response | None = None
        self.answered_at = 0.0

    def run(self) -> None:
        self.response = lease(self.url, self.token, self.wait)
        self.answered_at = time.monotonic()


def polls_waiting(url: str) -> float:
    response = httpx.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    [line] = [x for x in response.text.splitlines() if x.startswith("gitfleet_long_polls_waiting")]
    return float(line.rpartition(" ")[2])


def wait_until_held(url: str, timeout: float = 10) -> None:
    """Returns once the server at `url` (with METRICS_TOKEN) holds a long poll: one that looked
    for work, found none, and now waits."""
    deadline = time.monotonic() + timeout
    while polls_waiting(url) < 1:
        assert time.monotonic() < deadline, "the poll was never held"
        time.sleep(0.05)


def test_idle_long_poll_answers_204_after_the_wait(site, server):
    agent_token = site.create_node()
    # The 204 a poll ends with is the one Django made at its first look, headers and all.
    immediate = lease(server.url, agent_token, wait=0)

    started = time.monotonic()
    response = lease(server.url, agent_token, wait=2)
    elapsed = time.monotonic() - started

    assert response.status_code == immediate.status_code == 204
    assert 2 <= elapsed < 6
    assert response.content == b""
    different = {"date", "x-request-id"}
    assert {k: v for k, v in response.headers.items() if k not in different} == {
        k: v for k, v in immediate.headers.items() if k not in different
    }
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_poll_whose_agent_hung_up_is_let_go_and_leases_nothing(site, server):
    agent_token, user_token = node_and_user(site)
    body = json.dumps(
        {"instance_id": str(uuid.uuid4()), "request_id": uuid.uuid4().hex, "wait": 30}
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            (
                "POST /api/v1/agent/lease HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {agent_token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
        )
        wait_until_held(server.url)
    # Hung up: the server lets the poll go at once, long before its 30 s.
    deadline = time.monotonic() + 5
    while polls_waiting(server.url) > 0:
        assert time.monotonic() < deadline, "the poll of a closed connection is still held"
        time.sleep(0.05)

    accepted = clone(server.url, user_token)
    assert accepted.status_code == 202
    time.sleep(1)
    status = httpx.get(
        f"{server.url}/api/v1/projects/{accepted.json()['project']['id']}",
        headers={"Authorization": f"Bearer {user_token}"},
        timeout=10,
    ).json()
    assert status["active_job"]["state"] == "queued"  # nobody was there to take it


def test_waiting_long_poll_returns_promptly_when_a_job_is_queued(site, server):
    agent_token, user_token = node_and_user(site)
    heartbeat(server.url, agent_token)
    poll = Poll(server.url, agent_token, wait=25)
    poll.start()
    wait_until_held(server.url)

    queued_at = time.monotonic()
    assert clone(server.url, user_token).status_code == 202
    poll.join(timeout=20)

    assert poll.response is not None and poll.response.status_code == 200
    assert poll.response.json()["job"]["kind"] == "clone"
    assert poll.answered_at - queued_at < 5, "answered by the re-check, not by a wake-up"


def test_a_second_server_process_wakes_the_first_ones_waiters(site):
    if not site.postgres:
        pytest.skip("several server processes share one database on PostgreSQL only")
    first = ServerProcess(site, METRICS_TOKEN=METRICS_TOKEN, **SLOW_RECHECK)
    second = ServerProcess(site, **SLOW_RECHECK)
    try:
        agent_token, user_token = node_and_user(site)
        heartbeat(first.url, agent_token)
        poll = Poll(first.url, agent_token, wait=25)
        poll.start()
        wait_until_held(first.url)

        queued_at = time.monotonic()
        assert clone(second.url, user_token).status_code == 202
        poll.join(timeout=20)

        assert poll.response is not None and poll.response.status_code == 200
        assert poll.answered_at - queued_at < 5, "the other process's NOTIFY did not wake us"
    finally:
        first.stop()
        second.stop()


def test_work_queued_by_another_process_is_found_by_the_periodic_recheck(site):
    """On SQLite nothing tells this server about the other process's write: only the one
    per-process re-check query can find it, within LONG_POLL_RECHECK_SECONDS."""
    server = ServerProcess(site, METRICS_TOKEN=METRICS_TOKEN, LONG_POLL_RECHECK_SECONDS="1")
    try:
        agent_token, _ = node_and_user(site)
        heartbeat(server.url, agent_token)
        poll = Poll(server.url, agent_token, wait=25)
        poll.start()
        wait_until_held(server.url)

        queued_at = time.monotonic()
        site.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; from nodes.models import Node; "
            "from projects.services import request_clone; "
            "request_clone(owner=get_user_model().objects.get(username='alice'), name='other', "
            "git_url='https://git.example.com/r.git', branch='main', "
            "node=Node.objects.get(name='node-1'))",
        )
        poll.join(timeout=20)

        assert poll.response is not None and poll.response.status_code == 200
        assert poll.answered_at - queued_at < 10
    finally:
        server.stop()


def test_a_process_running_late_sheds_new_polls_and_still_answers_heartbeats(site):
    # A lateness limit no event loop can meet: every new lease call is shed.
    server = ServerProcess(site, METRICS_TOKEN=METRICS_TOKEN, LONG_POLL_SHED_LAG_SECONDS="0.000001")
    try:
        agent_token = site.create_node()
        deadline = time.monotonic() + 10
        # The first call starts the process's lateness samples; the next ones meet them.
        while (response := lease(server.url, agent_token, wait=1)).status_code != 503:
            assert time.monotonic() < deadline, "no lease call was shed"
            time.sleep(0.2)
        started = time.monotonic()
        response = lease(server.url, agent_token, wait=20)

        assert time.monotonic() - started < 2  # answered at once, not held
        assert response.status_code == 503
        assert response.json()["code"] == "overloaded"
        assert 12 <= int(response.headers["retry-after"]) <= 25  # spread over one default wait
        heartbeat(server.url, agent_token)  # still answered (asserts 200)
        assert polls_waiting(server.url) == 0
        scrape = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        ).text
        assert "gitfleet_long_polls_shed_total" in scrape
        assert "gitfleet_event_loop_lag_seconds" in scrape
        assert "gitfleet_db_queue_wait_seconds" in scrape
    finally:
        server.stop()
