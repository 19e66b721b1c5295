"""The HTTP client's retries and refusals, against a small server on 127.0.0.1 that answers
each request with the next status of a script."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gitfleet_cli.client import Client
from gitfleet_cli.errors import Refused, Unreachable
from tests.support.gitservers import serve_in_background


class StatusScript:
    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.seen: list[tuple[str, str, str]] = []  # method, path, Authorization
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append((self.command, self.path, self.headers["Authorization"]))
                status = outer.statuses.pop(0) if outer.statuses else 200
                body = (
                    {"ok": True}
                    if status < 400
                    else {"error": "No.", "code": "nope", "fields": {"name": ["Taken."]}}
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = handle_one

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        serve_in_background(self.http)


@pytest.fixture
def script() -> Iterator[StatusScript]:
    script = StatusScript()
    yield script
    script.http.shutdown()
    script.http.server_close()


@pytest.fixture
def client(script: StatusScript) -> Iterator[Client]:
    client = Client(script.url, "gfu_secret", backoff=0)
    yield client
    client.close()


def test_a_read_is_retried_through_5xx_and_429(script, client):
    script.statuses = [503, 429, 200]

    assert client.get("/api/v1/projects/") == {"ok": True}
    assert len(script.seen) == 3
    assert {auth for _, _, auth in script.seen} == {"Bearer gfu_secret"}


def test_a_read_that_keeps_failing_is_unreachable_after_three_tries(script, client):
    script.statuses = [502, 500, 503, 200]

    with pytest.raises(Unreachable, match="answered 503"):
        client.get("/api/v1/projects/")
    assert len(script.seen) == 3


def test_a_write_the_server_may_have_applied_is_not_sent_twice(script, client):
    script.statuses = [500, 200]

    with pytest.raises(Unreachable):
        client.post("/api/v1/projects/clone", json={"name": "x"})
    assert len(script.seen) == 1


def test_a_write_refused_as_unavailable_is_sent_again(script, client):
    script.statuses = [503, 202]

    assert client.post("/api/v1/projects/p/pull") == {"ok": True}
    assert [method for method, _, _ in script.seen] == ["POST", "POST"]


def test_a_4xx_is_refused_at_once_with_the_servers_reason(script, client):
    script.statuses = [409]

    with pytest.raises(Refused) as refused:
        client.delete("/api/v1/projects/p")
    assert (refused.value.status, refused.value.code) == (409, "nope")
    assert refused.value.fields == {"name": ["Taken."]}
    assert len(script.seen) == 1
    assert "gfu_secret" not in str(refused.value)
