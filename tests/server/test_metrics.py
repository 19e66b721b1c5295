"""`/metrics`: Prometheus figures for operators who hold METRICS_TOKEN, and for no one else."""

from __future__ import annotations

import gc
import threading
import time
import uuid

import httpx
import pytest
from drf_spectacular.generators import SchemaGenerator
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import AgentSession, bearer_client, clone_body
from tests.support.servers import ServerProcess, ServerSite

TOKEN = "metrics-token-for-tests-" + "x" * 16


def scrape(client, token: str = TOKEN, **headers):
    return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}", **headers)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """`{(sample name, labels): value}` for every sample of an exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


# --- Who gets an answer -----------------------------------------------------------------------


def test_metrics_are_off_by_default_and_answer_404(client, settings):
    assert settings.METRICS_TOKEN == ""

    response = scrape(client, token="")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.usefixtures("metrics_on")
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN],
    ids=["missing", "empty", "longer", "shorter", "basic-scheme", "no-scheme"],
)
def test_metrics_without_the_token_answer_401_and_say_how(client, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}

    response = client.get("/metrics", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response.json()["fields"] == {"Authorization": ["Missing or not the metrics token."]}
    assert "gitfleet_" not in response.content.decode()


@pytest.mark.usefixtures("metrics_on")
def test_metrics_do_not_take_a_person_s_api_token(api):
    response = api.get("/metrics")

    assert response.status_code == 401


@pytest.mark.usefixtures("metrics_on")
def test_metrics_are_read_only(client):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 405


@pytest.mark.usefixtures("metrics_on")
@pytest.mark.django_db
def test_metrics_are_scraped_from_each_process_without_an_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert scrape(client).status_code == 200
    assert client.get("/api/v1/").status_code == 301


@pytest.mark.usefixtures("metrics_on")
@pytest.mark.django_db
def test_metrics_time_the_garbage_collector_s_pauses(client):
    before = samples(scrape(client).content.decode())
    full_before = before.get(("gitfleet_gc_pause_seconds_count", frozenset({("generation", "2")})))

    gc.collect()
    after = samples(scrape(client).content.decode())

    assert value(after, "gitfleet_gc_pause_seconds_count", generation="2") >= (full_before or 0) + 1
    assert value(after, "gitfleet_gc_pause_seconds_sum", generation="2") > 0


def test_metrics_are_not_part_of_the_api_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    assert not [path for path in schema["paths"] if "metrics" in path]


# --- What they say ----------------------------------------------------------------------------


@pytest.mark.usefixtures("metrics_on")
@pytest.mark.django_db(transaction=True)
def test_metrics_count_jobs_queues_nodes_and_lease_to_complete_times(api, client, make_node):
    _, token = make_node("node-1")
    make_node("idle-node")
    make_node("gone-node", online=False)
    agent = AgentSession(bearer_client(token))
    for name in ("done", "broken", "waiting-1", "waiting-2"):
        response = api.post("/api/v1/projects/clone", clone_body(name=name), format="json")
        assert response.status_code == 202, response.content
    for outcome in ("succeeded", "failed"):
        lease = agent.lease().json()
        job_id, lease_token = lease["job"]["id"], lease["lease"]["token"]
        if outcome == "succeeded":
            assert agent.succeed(job_id, lease_token).status_code == 200
        else:
            assert agent.fail(job_id, lease_token, retryable=False).status_code == 200

    response = scrape(client)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"] == "no-store"
    found = samples(response.content.decode())
    assert value(found, "gitfleet_database_up") == 1
    assert value(found, "gitfleet_jobs", kind="clone", state="succeeded") == 1
    assert value(found, "gitfleet_jobs", kind="clone", state="failed") == 1
    assert value(found, "gitfleet_jobs", kind="clone", state="queued") == 2
    assert value(found, "gitfleet_jobs", kind="pull", state="leased") == 0  # every series, from 0
    assert value(found, "gitfleet_queue_depth", node="node-1") == 2
    assert value(found, "gitfleet_queue_depth", node="idle-node") == 0
    assert value(found, "gitfleet_queue_depth", node="gone-node") == 0
    assert value(found, "gitfleet_queue_oldest_age_seconds", node="node-1") > 0
    assert value(found, "gitfleet_queue_oldest_age_seconds", node="idle-node") == 0
    assert value(found, "gitfleet_nodes_online") == 2
    assert value(found, "gitfleet_nodes") == 3
    assert value(found, "gitfleet_long_polls_waiting") == 0
    took = "gitfleet_job_lease_to_complete_seconds"
    for outcome in ("succeeded", "failed"):
        assert value(found, f"{took}_count", kind="clone", outcome=outcome) == 1
        assert value(found, f"{took}_bucket", kind="clone", outcome=outcome, le="+Inf") == 1
        assert value(found, f"{took}_bucket", kind="clone", outcome=outcome, le="3600.0") == 1
        assert value(found, f"{took}_bucket", kind="clone", outcome=outcome, le="1.0") == 1
        assert 0 <= value(found, f"{took}_sum", kind="clone", outcome=outcome) < 60
    assert value(found, f"{took}_count", kind="delete", outcome="cancelled") == 0
    assert value(found, "process_resident_memory_bytes") > 0
    assert value(found, "process_open_fds") > 0


@pytest.mark.usefixtures("metrics_on")
@pytest.mark.django_db
def test_metrics_speak_openmetrics_when_asked(client):
    response = scrape(client, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.content.decode().endswith("# EOF\n")


# --- Against real server processes ------------------------------------------------------------


@pytest.mark.e2e
def test_metrics_count_the_long_polls_this_process_holds(tmp_path):
    site = ServerSite(tmp_path)
    server = ServerProcess(site, METRICS_TOKEN=TOKEN, LONG_POLL_RECHECK_SECONDS="30")
    try:
        agent_token = site.create_node()
        poll = threading.Thread(target=_lease, args=(server.url, agent_token, 4), daemon=True)
        poll.start()

        assert _wait_for_waiting(server.url, 1), "the held long poll was not counted"
        poll.join(timeout=15)
        assert _wait_for_waiting(server.url, 0), "the finished long poll is still counted"
    finally:
        server.stop()
        site.close()


class _UnreachableDatabaseSite(ServerSite):
    """A site whose database cannot be opened: nothing to migrate."""

    def migrate(self) -> None:
        pass


@pytest.mark.e2e
def test_metrics_still_answer_when_the_database_does_not(tmp_path):
    site = _UnreachableDatabaseSite(tmp_path)
    missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'gitfleet.sqlite3'}"
    server = ServerProcess(site, DATABASE_URL=missing, METRICS_TOKEN=TOKEN)
    try:
        response = httpx.get(f"{server.url}/metrics", headers=_auth(), timeout=10)

        assert response.status_code == 200
        found = samples(response.text)
        assert value(found, "gitfleet_database_up") == 0
        assert value(found, "gitfleet_long_polls_waiting") == 0
        assert value(found, "process_resident_memory_bytes") > 0
        assert not [name for name, _ in found if name.startswith("gitfleet_jobs")]
    finally:
        server.stop()
        site.close()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _lease(url: str, agent_token: str, wait: int) -> None:
    body = {"instance_id": str(uuid.uuid4()), "request_id": uuid.uuid4().hex, "wait": wait}
    httpx.post(
        f"{url}/api/v1/agent/lease",
        json=body,
        timeout=wait + 15,
        headers={"Authorization": f"Bearer {agent_token}"},
    )


def _wait_for_waiting(url: str, expected: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/metrics", headers=_auth(), timeout=10)
        assert response.status_code == 200, response.text
        if value(samples(response.text), "gitfleet_long_polls_waiting") == expected:
            return True
        time.sleep(0.2)
    return False
