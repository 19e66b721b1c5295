"""Bodies refused before they are read, against a real uvicorn server over raw sockets.

Django's ASGI handler reads a whole body (onto disk past 2.5 MB) before any middleware runs;
`core.asgi_limits` answers first. Each test proves the answer came while the body was still
unfinished: Django itself never answers before the last byte.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ServerProcess, ServerSite

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024
FAKE_AGENT_TOKEN = "gfa_0123456789ab_" + "x" * 43


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSite]:
    site = ServerSite(tmp_path_factory.mktemp("limits"), MAX_REQUEST_BODY_BYTES=str(LIMIT))
    yield site
    site.close()


@pytest.fixture(scope="module")
def server_tmp(site: ServerSite) -> Path:
    path = site.tmp_path / "server-tmp"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def server(site: ServerSite, server_tmp: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(site, TMPDIR=str(server_tmp))
    yield server
    server.stop()


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Reads one response whose length is given; raises `socket.timeout` if none comes."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        if not got:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += got
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    length = int(headers["content-length"])
    while len(body) < length:
        got = sock.recv(65536)
        if not got:
            break
        body += got
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def temporary_files_of(server: ServerProcess, folder: Path) -> list[str]:
    """Files the server process holds open in `folder` (unlinked ones included)."""
    fd_dir = Path(f"/proc/{server.process.pid}/fd")
    held = []
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            held.append(target)
    return held + [str(path) for path in folder.iterdir()]


def test_a_large_content_length_is_refused_before_the_body_is_sent(server: ServerProcess):
    with connect(server) as sock:
        sock.sendall(
            head(
                "POST",
                "/api/v1/projects/clone",
                "Content-Type: application/json",
                "Content-Length: 100000000",
            )
        )
        status, headers, body = read_response(sock)  # no byte of the body was sent
        assert status == 413
        assert headers["content-type"] == "application/json"
        answer = json.loads(body)
        assert answer["code"] == "too_large"
        assert answer["fields"] == {"body": [f"At most {LIMIT} bytes."]}
        assert closed_by_server(sock)


def test_a_chunked_body_is_cut_the_moment_it_passes_the_limit(
    server: ServerProcess, server_tmp: Path
):
    with connect(server) as sock:
        sock.sendall(
            head(
                "POST",
                "/api/v1/agent/heartbeat",
                f"Authorization: Bearer {FAKE_AGENT_TOKEN}",
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            )
        )
        sent = 0
        while sent <= LIMIT:
            sock.sendall(chunk(b"x" * 4096))
            sent += 4096
        # The body is not finished (no last chunk): only a layer that counts answers now.
        status, _, body = read_response(sock)
        assert status == 413
        assert json.loads(body)["fields"] == {"body": [f"At most {LIMIT} bytes."]}
        assert closed_by_server(sock)
    assert temporary_files_of(server, server_tmp) == []


def test_a_huge_chunked_body_is_never_stored(server: ServerProcess, server_tmp: Path):
    """3 MB is past Django's in-memory spool (2.5 MB): had Django read it, it would be a file."""
    with connect(server) as sock:
        sock.sendall(
            head(
                "POST",
                "/api/v1/projects/clone",
                "Authorization: Bearer gfu_0123456789ab_" + "y" * 43,
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            )
        )
        sent = 0
        try:
            while sent < 3 * 1024 * 1024:
                sock.sendall(chunk(b"z" * 65536))
                sent += 65536
                assert temporary_files_of(server, server_tmp) == []
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: the rest was never read
        status, _, _ = read_response(sock)
        assert status == 413
    assert temporary_files_of(server, server_tmp) == []


def test_an_agent_call_without_an_agent_token_is_refused_before_its_body(
    server: ServerProcess, server_tmp: Path
):
    for authorization in ([], ["Authorization: Bearer gfu_0123456789ab_" + "y" * 43]):
        with connect(server) as sock:
            sock.sendall(
                head(
                    "POST",
                    "/api/v1/agent/lease",
                    *authorization,
                    "Content-Type: application/json",
                    "Transfer-Encoding: chunked",
                )
            )
            sock.sendall(chunk(b"{" * 1000))  # and never the rest
            status, headers, body = read_response(sock)
            assert status == 401
            assert headers["www-authenticate"] == 'Bearer realm="agent"'
            assert list(json.loads(body)["fields"]) == ["Authorization"]
            assert closed_by_server(sock)
    assert temporary_files_of(server, server_tmp) == []


def test_a_content_length_that_is_not_a_size_is_refused(server: ServerProcess):
    with connect(server) as sock:
        # h11 and httptools refuse most malformed lengths themselves; two that differ get here.
        sock.sendall(
            head("POST", "/api/v1/projects/clone", "Content-Length: 5", "Content-Length: 6")
        )
        data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 400"), data


def test_bodies_within_the_limit_reach_django_whole(server: ServerProcess, site: ServerSite):
    token = site.create_node(f"node-{uuid.uuid4().hex[:6]}")
    body = json.dumps(
        {
            "instance_id": str(uuid.uuid4()),
            "agent_version": "1.0.0",
            "hostname": "n1",
            "disk_free_bytes": 1,
            "running_jobs": [],
        }
    ).encode()
    # An iterator makes httpx send the body chunked, with no Content-Length.
    heartbeat = httpx.post(
        f"{server.url}/api/v1/agent/heartbeat",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        content=iter([body[:10], body[10:]]),
        timeout=10,
    )
    assert heartbeat.status_code == 200, heartbeat.text
    # A long poll still ends by itself after the body was read ahead of Django.
    lease = httpx.post(
        f"{server.url}/api/v1/agent/lease",
        headers={"Authorization": f"Bearer {token}"},
        json={"instance_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4()), "wait": 1},
        timeout=10,
    )
    assert lease.status_code == 204, lease.text
