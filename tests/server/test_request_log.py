"""One `gitfleet.request` line per request: who asked what, the answer and how long it took.

Never a header, a query string or a body. Long polls log once, when they end.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from unittest import mock

import httpx
import pytest
from asgiref.sync import SyncToAsync, async_to_sync, iscoroutinefunction
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import AsyncClient

from config.handlers import AgentAPIHandler
from core.logging import JsonFormatter
from core.middleware import RequestLogMiddleware
from tests.support.api import AgentSession, clone_body
from tests.support.servers import ServerProcess, ServerSite

FIELDS = ("method", "path", "status", "duration_ms", "request_id", "user", "node")
TEXT = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


@pytest.fixture
def request_log(caplog):
    caplog.set_level(logging.INFO, logger="gitfleet.request")

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "gitfleet.request"]

    return records


def fields(record: logging.LogRecord) -> dict:
    return {name: getattr(record, name) for name in FIELDS}


def test_a_person_s_request_is_logged_once_with_what_who_and_how_long(api, request_log):
    response = api.get("/api/v1/projects/", HTTP_X_REQUEST_ID="req-person-0001")

    assert response.status_code == 200
    [record] = request_log()
    logged = fields(record)
    assert logged | {"duration_ms": 0} == {
        "method": "GET",
        "path": "/api/v1/projects/",
        "status": 200,
        "duration_ms": 0,
        "request_id": "req-person-0001",
        "user": "alice",
        "node": None,
    }
    assert logged["duration_ms"] > 0
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("GET /api/v1/projects/ 200 ")
    assert record.getMessage().endswith(" request_id=req-person-0001 user=alice")


@pytest.mark.django_db(transaction=True)  # agent views do their work on their own connection
def test_an_agent_s_request_names_its_node_not_a_person(agent, node, request_log):
    response = AgentSession(agent).heartbeat()

    assert response.status_code == 200
    [record] = request_log()
    assert (record.user, record.node, record.status) == (None, "node-1", 200)
    assert record.request_id == response["X-Request-ID"]
    assert record.getMessage().endswith(" node=node-1")


def test_an_anonymous_request_names_nobody(client, request_log):
    client.get("/healthz")

    [record] = request_log()
    assert (record.user, record.node) == (None, None)
    assert record.getMessage().endswith(" anonymous")


def test_a_refused_token_is_logged_as_anonymous_with_its_status(client, db, request_log):
    client.get("/api/v1/projects/", HTTP_AUTHORIZATION="Bearer gfu_nope_nope")

    [record] = request_log()
    assert (record.status, record.user, record.node) == (401, None, None)


def test_refusals_made_by_other_middleware_are_logged_too(api, request_log, settings):
    settings.MAX_REQUEST_BODY_BYTES = 10

    response = api.generic(
        "POST", "/api/v1/projects/clone", b'{"name": "long enough"}', "application/json"
    )

    assert response.status_code == 413
    [record] = request_log()
    assert (record.status, record.path) == (413, "/api/v1/projects/clone")


def test_tokens_query_strings_and_bodies_never_reach_the_log(api, user, node, request_log):
    from accounts.services import issue_api_token

    _, token = issue_api_token(user=user, name="log-test")
    body = clone_body(name="body-marker-7f3a", git_url="https://git.example.com/g/body.git")

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    api.post("/api/v1/projects/clone?token=query-marker-9c1e", body, format="json")

    [record] = request_log()
    assert record.path == "/api/v1/projects/clone"
    for line in (TEXT.format(record), JsonFormatter().format(record)):
        for secret in (token, token.split("_", 2)[2], "query-marker-9c1e", "body-marker-7f3a"):
            assert secret not in line
        assert "Authorization" not in line and "authorization" not in line


def test_a_path_cannot_forge_a_second_log_line(client, request_log):
    client.get("/api/v1/x%0A2026-01-01 INFO gitfleet.request GET /forged 200")

    [record] = request_log()
    line = TEXT.format(record)
    assert "\n" not in line
    assert record.path.startswith("/api/v1/x%0A2026-01-01%20INFO")


def test_json_lines_carry_every_field_as_its_own_key(api, request_log):
    api.get("/api/v1/projects/", HTTP_X_REQUEST_ID="req-json-0001")

    [record] = request_log()
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "info"
    assert line["logger"] == "gitfleet.request"
    assert line["message"].startswith("GET /api/v1/projects/ 200 ")
    assert {key: line[key] for key in FIELDS} == fields(record)
    assert line["request_id"] == "req-json-0001"
    assert line["ts"].endswith("+00:00")


def test_the_middleware_stays_async_for_async_views_and_sync_for_sync_ones():
    async def async_view(request):
        return HttpResponse()

    def sync_view(request):
        return HttpResponse()

    assert iscoroutinefunction(RequestLogMiddleware(async_view))
    assert not iscoroutinefunction(RequestLogMiddleware(sync_view))


def test_no_middleware_makes_the_asgi_handler_hop_to_a_thread(settings, caplog):
    settings.DEBUG = True  # Django says which middleware it adapts only in debug
    caplog.set_level(logging.DEBUG, logger="django.request")

    ASGIHandler()

    assert [r.getMessage() for r in caplog.records if "adapted" in r.getMessage()] == []


def _sync_hops(app, path: str) -> tuple[int, list[str]]:
    """Sends one POST through an ASGI app; returns its status and what it ran on a thread."""
    hops: list[str] = []
    original = SyncToAsync.__call__

    def counting(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return original(self, *args, **kwargs)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }

    async def send_one() -> int:
        communicator = ApplicationCommunicator(app, scope)
        await communicator.send_input({"type": "http.request", "body": b"{}"})
        start = await communicator.receive_output(5)
        await communicator.receive_output(5)
        return start["status"]

    with mock.patch.object(SyncToAsync, "__call__", counting):
        status = async_to_sync(send_one)()
    return status, hops


@pytest.mark.django_db
def test_agent_calls_run_no_middleware_on_a_thread():
    """The agent API's own stack is async end to end; the site's stack (sessions, CSRF, …)
    hops to a thread for each of its sync middleware, which is what the agent stack avoids."""
    agent_status, agent_hops = _sync_hops(AgentAPIHandler(), "/api/v1/agent/heartbeat")
    site_status, site_hops = _sync_hops(ASGIHandler(), "/api/v1/agent/heartbeat")

    assert agent_status == site_status == 401
    # What is left: logging a 4xx to `django.request`. Not the request signals' receivers nor
    # the rendering of DRF's response (finding 22), which the site's stack runs on a thread.
    assert agent_hops == ["log_response"]
    assert "Signal.asend.<locals>.sync_send" in site_hops
    assert "SessionMiddleware.process_request" in site_hops
    assert len(agent_hops) < len(site_hops) - 10


def test_requests_served_asynchronously_are_logged_once(request_log):
    response = async_to_sync(AsyncClient().get)("/healthz", headers={"X-Request-ID": "req-async-1"})

    assert response.status_code == 200
    [record] = request_log()
    assert (record.path, record.status, record.request_id) == ("/healthz", 200, "req-async-1")


# --- Against a real server process, LOG_FORMAT=json -------------------------------------------


@pytest.fixture
def json_server(tmp_path):
    site = ServerSite(tmp_path)
    server = ServerProcess(
        site, LOG_FORMAT="json", LOG_LEVEL="INFO", LONG_POLL_RECHECK_SECONDS="30"
    )
    yield site, server
    server.stop()
    site.close()


def _lease(url: str, token: str, request_id: str, wait: int, timeout: float) -> httpx.Response:
    body = {"instance_id": str(uuid.uuid4()), "request_id": uuid.uuid4().hex, "wait": wait}
    return httpx.post(
        f"{url}/api/v1/agent/lease",
        json=body,
        timeout=timeout,
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
    )


def _log_lines(server: ServerProcess) -> list[dict]:
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


@pytest.mark.e2e
def test_a_real_server_logs_json_and_each_long_poll_once_when_it_ends(json_server):
    site, server = json_server
    agent_token = site.create_node()

    empty = _lease(server.url, agent_token, "poll-empty-0001", wait=1, timeout=20)
    with pytest.raises(httpx.ReadTimeout):
        _lease(server.url, agent_token, "poll-given-up-01", wait=30, timeout=1)

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = _log_lines(server)  # every line of the log parses as JSON
        if any(line.get("request_id") == "poll-given-up-01" for line in lines):
            break
        time.sleep(0.2)
    assert empty.status_code == 204
    requests = [line for line in lines if line["logger"] == "gitfleet.request"]
    polls = [line for line in requests if line["path"] == "/api/v1/agent/lease"]
    assert [(p["request_id"], p["status"], p["node"], p["user"]) for p in polls] == [
        ("poll-empty-0001", 204, "node-1", None),
        ("poll-given-up-01", 499, "node-1", None),
    ]
    assert polls[0]["duration_ms"] >= 1000
    assert 900 <= polls[1]["duration_ms"] < 10_000
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]  # replaced
    assert agent_token not in server.log()
    assert agent_token.split("_", 2)[2] not in server.log()
