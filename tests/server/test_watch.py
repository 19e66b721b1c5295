"""The watch API against real uvicorn processes: a held listing answered as soon as a job
finishes, on the async stack, for a project and for the staff feed."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.servers import ServerProcess, ServerSite
from tests.support.sync import HttpAgent

pytestmark = pytest.mark.e2e

# Re-checks every 30 s: a prompt answer can only come from a wake-up.
SLOW_RECHECK = {"LONG_POLL_RECHECK_SECONDS": "30", "LONG_POLL_MAX_WAIT": "3"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    site = ServerSite(tmp_path_factory.mktemp("watch"))
    accounts = site.create_accounts(users=["alice"], staff=["root"], nodes=["node-1"])
    token, staff_token = accounts.users["alice"], accounts.users["root"]
    agent_token = accounts.nodes["node-1"]
    server = ServerProcess(site, **SLOW_RECHECK)
    yield server, token, staff_token, agent_token
    server.stop()
    site.close()


def person(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


class Watch(threading.Thread):
    def __init__(self, client: httpx.Client, path: str, params: dict):
        super().__init__(daemon=True)
        self.client, self.path, self.params = client, path, params
        self.response: httpx.Response | None = None
        self.answered_at = 0.0

    def run(self) -> None:
        self.response = self.client.get(self.path, params=self.params)
        self.answered_at = time.monotonic()


def clone_and_lease(server, token, agent_token, name: str):
    user = person(server.url, token)
    agent = HttpAgent(server.url, agent_token)
    agent.heartbeat()
    body = {"name": name, "git_url": "https://git.example.com/r.git", "branch": "main"}
    created = user.post("/api/v1/projects/clone", json={**body, "node": "node-1"})
    assert created.status_code == 202, created.text
    project_id = created.json()["project"]["id"]
    leased = agent.lease(wait=2)
    assert leased["job"]["project_id"] == project_id
    return user, agent, project_id, leased


def test_a_watch_is_answered_within_100_ms_of_a_job_finishing(world):
    server, token, _, agent_token = world
    user, agent, project_id, leased = clone_and_lease(server, token, agent_token, "a")
    version = user.get(f"/api/v1/projects/{project_id}/status").json()["version"]
    watch = Watch(user, f"/api/v1/projects/{project_id}/events", {"after": version, "wait": 20})
    watch.start()
    time.sleep(0.5)
    assert watch.is_alive()  # held: nothing newer yet
    agent.succeed(leased)
    finished_at = time.monotonic()
    watch.join(10)
    assert watch.response is not None and watch.response.status_code == 200
    assert watch.answered_at - finished_at < 0.1
    events = watch.response.json()["results"]
    assert events and all(e["version"] > version for e in events)
    assert events[-1]["type"] == "JobSucceeded"


def test_the_staff_feed_watch_is_woken_by_any_project(world):
    server, token, staff_token, agent_token = world
    staff = person(server.url, staff_token)
    last = staff.get("/api/v1/events/", params={"limit": 1000}).json()["results"][-1]["position"]
    watch = Watch(staff, "/api/v1/events/", {"after": last, "wait": 20})
    watch.start()
    time.sleep(0.5)
    assert watch.is_alive()
    _, agent, _, leased = clone_and_lease(server, token, agent_token, "b")
    watch.join(10)
    assert watch.response is not None and watch.response.status_code == 200
    assert watch.response.json()["results"][0]["position"] == last + 1
    agent.succeed(leased)


def test_a_watch_with_nothing_new_answers_empty_when_the_wait_ends(world):
    server, token, _, agent_token = world
    user, agent, project_id, leased = clone_and_lease(server, token, agent_token, "c")
    version = user.get(f"/api/v1/projects/{project_id}/status").json()["version"]
    started = time.monotonic()
    answer = user.get(f"/api/v1/projects/{project_id}/events", params={"after": version, "wait": 1})
    assert answer.status_code == 200 and answer.json()["results"] == []
    assert 0.9 < time.monotonic() - started < 5
    agent.succeed(leased)


def test_a_watch_answers_at_once_when_there_is_something_newer(world):
    server, token, _, agent_token = world
    user, agent, project_id, leased = clone_and_lease(server, token, agent_token, "d")
    started = time.monotonic()
    answer = user.get(f"/api/v1/projects/{project_id}/events", params={"after": 0, "wait": 20})
    assert time.monotonic() - started < 2
    assert [e["version"] for e in answer.json()["results"]][:2] == [1, 2]
    agent.succeed(leased)


def test_a_wait_beyond_the_servers_limit_is_capped(world):
    server, token, _, agent_token = world
    user, agent, project_id, leased = clone_and_lease(server, token, agent_token, "f")
    version = user.get(f"/api/v1/projects/{project_id}/status").json()["version"]
    started = time.monotonic()
    answer = user.get(
        f"/api/v1/projects/{project_id}/events", params={"after": version, "wait": 10**6}
    )
    assert answer.status_code == 200 and answer.json()["results"] == []
    assert 2.9 < time.monotonic() - started < 6
    agent.succeed(leased)


@pytest.mark.parametrize("wait", ["-1", "x", "1.5", ""])
def test_a_bad_wait_is_400_naming_it(world, wait):
    server, token, _, _ = world
    user = person(server.url, token)
    answer = user.get("/api/v1/events/", params={"wait": wait})
    assert answer.status_code == 400
    assert "wait" in answer.json()["fields"]


def test_a_watch_keeps_the_listings_authentication_and_visibility(world):
    server, token, _, agent_token = world
    _, agent, project_id, leased = clone_and_lease(server, token, agent_token, "e")
    path = f"/api/v1/projects/{project_id}/events"
    assert httpx.get(f"{server.url}{path}", params={"wait": 1}).status_code == 401
    user = person(server.url, token)
    assert user.get("/api/v1/events/", params={"wait": 1}).status_code == 403
    assert user.get(path, params={"wait": 1, "after": "x"}).status_code == 400
    agent.succeed(leased)
