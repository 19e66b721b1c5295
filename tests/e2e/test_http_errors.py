"""Refusals at the edge answer in JSON, with no traceback in the log, on a real uvicorn server.

Static files, the docs pages and the `Host` check run outside DRF's exception handler, so only
a real server (Django's ASGI static handler, `DEBUG=false`) shows what they answer.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import ServerProcess, ServerSite

pytestmark = pytest.mark.e2e

FAKE_AGENT_TOKEN = "gfa_0123456789ab_" + "x" * 43


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    site = ServerSite(tmp_path_factory.mktemp("edge"))
    server = ServerProcess(site, LOG_LEVEL="INFO")
    yield server
    server.stop()
    site.close()


def raw_get(server: ServerProcess, target: str) -> bytes:
    """A request line sent as is: httpx would normalise `%2e%2e` away."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_static_path_climbing_out_answers_404_in_json(server: ServerProcess):
    for target in ("/static/%2e%2e/x", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/nope.css"):
        answer = raw_get(server, target)
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
        assert b"content-type: application/json" in answer.lower()
        assert b'{"error": "Not found.", "code": "not_found"}' in answer
    assert "Traceback" not in server.log()
    assert raw_get(server, "/static/admin/css/base.css").startswith(b"HTTP/1.1 200")


def test_options_on_the_docs_pages_answers_405_in_json(server: ServerProcess):
    for path in ("/api/docs/", "/api/redoc/"):
        response = httpx.options(f"{server.url}{path}")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert response.json()["code"] == "method_not_allowed"
        assert list(response.json()["fields"]) == ["method"]
        assert httpx.get(f"{server.url}{path}").status_code == 200
    assert "Traceback" not in server.log()


def test_a_bad_host_under_api_answers_400_in_json(server: ServerProcess):
    for path, headers in (
        ("/api/v1/", {}),
        ("/api/v1/projects/", {"Authorization": "Bearer gfu_0123456789ab_" + "y" * 43}),
        ("/api/v1/agent/heartbeat", {"Authorization": f"Bearer {FAKE_AGENT_TOKEN}"}),
    ):
        response = httpx.post(
            f"{server.url}{path}", headers={"Host": "evil.example", **headers}, json={}
        )
        assert response.status_code == 400, (path, response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.json()["code"] == "bad_host"
        assert list(response.json()["fields"]) == ["Host"]
    assert "Traceback" not in server.log()
    # Outside /api/ the admin keeps Django's page.
    page = httpx.get(f"{server.url}/admin/", headers={"Host": "evil.example"})
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
