"""PostgreSQL restarting under running servers: no 500s, 503 while it is down, and wake-ups
that come back by themselves.

The cluster is the test's own (`tests.support.postgres`), started whatever DATABASE_URL says,
so restarting it disturbs nothing else. Two server processes share it: a long poll held by one
is woken by a clone asked of the other only through PostgreSQL's `LISTEN/NOTIFY`, and the
timed re-check is set far beyond the test's waits, so it cannot be what wakes it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.support.postgres import PrivateCluster
from tests.support.servers import ServerProcess, ServerSite, UserClient

pytestmark = pytest.mark.e2e

RECHECK_SECONDS = "600"
WAKE_WITHIN = 5.0
# Never fetched: no agent runs here, the server only queues the clone.
INSTANCE = str(uuid.uuid4())  # one agent instance throughout: a new one would release leases
GIT_URL = "http://127.0.0.1:9/repo.git"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def site(cluster: PrivateCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSite]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", cluster.url)
        site = ServerSite(
            tmp_path_factory.mktemp("db-restart"),
            LONG_POLL_RECHECK_SECONDS=RECHECK_SECONDS,
            DB_POOL_TIMEOUT="2",
            LOG_LEVEL="INFO",
            # alice's first clone stays leased while her second waits for the woken poll.
            MAX_RUNNING_JOBS_PER_USER_PER_NODE="2",
        )
    yield site
    site.close()


@pytest.fixture(scope="module")
def servers(site: ServerSite) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    waiting, asked = ServerProcess(site), ServerProcess(site)
    yield waiting, asked
    waiting.stop()
    asked.stop()


def listener_connected(cluster: PrivateCluster) -> bool:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gitfleet-listener'"
        ).fetchone()
    return bool(row and row[0])


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except psycopg.OperationalError:
            pass  # the cluster is still coming up
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def heartbeat(server: ServerProcess, token: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/agent/heartbeat",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "instance_id": INSTANCE,
            "agent_version": "1.0.0",
            "hostname": "n1",
            "disk_free_bytes": 10**9,
            "running_jobs": [],
        },
        timeout=30,
    )


def test_requests_survive_a_restart_and_a_held_long_poll_is_woken_after_it(
    cluster: PrivateCluster,
    site: ServerSite,
    servers: tuple[ServerProcess, ServerProcess],
):
    waiting, asked = servers
    node_token = site.create_node("node-1")
    user = UserClient(asked.url, site.create_user_token("alice"))
    for server in servers:
        for _ in range(3):
            assert heartbeat(server, node_token).status_code == 200
    before = user.clone("before", GIT_URL, node="node-1")["project"]

    # A long poll held across the restart; its first registration starts the listener.
    answers: list[httpx.Response] = []
    answered_at: list[float] = []

    def long_poll() -> None:
        answers.append(
            httpx.post(
                f"{waiting.url}/api/v1/agent/lease",
                headers={"Authorization": f"Bearer {node_token}"},
                json={"instance_id": INSTANCE, "request_id": uuid.uuid4().hex, "wait": 50},
                timeout=60,
            )
        )
        answered_at.append(time.monotonic())

    first = httpx.post(
        f"{waiting.url}/api/v1/agent/lease",
        headers={"Authorization": f"Bearer {node_token}"},
        json={"instance_id": INSTANCE, "request_id": uuid.uuid4().hex, "wait": 1},
        timeout=30,
    )
    assert first.status_code == 200, first.text  # the clone asked before the restart
    poller = threading.Thread(target=long_poll)
    poller.start()
    wait_for(lambda: listener_connected(cluster), 10, "the listener to connect")

    cluster.restart()

    for server in servers:
        for _ in range(5):
            response = heartbeat(server, node_token)
            assert response.status_code == 200, (response.status_code, response.text)
        status = httpx.get(
            f"{server.url}/api/v1/projects/{before['id']}/status",
            headers=user.http.headers,
            timeout=30,
        )
        assert status.status_code == 200, status.text
    wait_for(lambda: listener_connected(cluster), 15, "the listener to come back by itself")

    time.sleep(1)  # the listener's first wake-up has been re-checked; the poll waits again
    assert not answers
    asked_at = time.monotonic()
    user.clone("after", GIT_URL, node="node-1")
    poller.join(timeout=60)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    assert answers[0].json()["job"]["kind"] == "clone"
    assert answered_at[0] - asked_at < WAKE_WITHIN
    assert "Traceback" not in waiting.log() + asked.log()


def test_a_database_that_is_down_answers_503_with_retry_after(
    cluster: PrivateCluster, site: ServerSite, servers: tuple[ServerProcess, ServerProcess]
):
    waiting, _ = servers
    node_token = site.create_node("node-2")
    assert heartbeat(waiting, node_token).status_code == 200
    cluster.stop()
    try:
        response = heartbeat(waiting, node_token)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        assert response.json()["code"] == "database_unavailable"
        user_api = httpx.get(
            f"{waiting.url}/api/v1/nodes/",
            headers={"Authorization": "Bearer gfu_0123456789ab_" + "y" * 43},
            timeout=30,
        )
        assert user_api.status_code == 503, user_api.text
        assert user_api.headers["retry-after"].isdigit()
        # The admin reads its session in middleware, outside DRF: Django's handler500 path.
        admin = httpx.get(f"{waiting.url}/admin/", cookies={"sessionid": "s" * 32}, timeout=30)
        assert admin.status_code == 503, admin.text
        assert admin.headers["retry-after"].isdigit()
    finally:
        cluster.start()
    # The pool reconnects in the background; clients retry after `Retry-After` until it has.
    wait_for(lambda: heartbeat(waiting, node_token).status_code == 200, 30, "the pool to reconnect")
