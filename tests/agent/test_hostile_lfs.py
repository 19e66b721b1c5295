"""A hostile repository's LFS settings reach nothing the policy refuses: an endpoint on a
link-local host, an object `href` there or redirecting there, a filter other than LFS."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.errors import JobFailure
from tests.support.gitservers import Upstream, serve_in_background
from tests.support.jobs import run_job

CONTENT = b"real content\n" * 100
OID = hashlib.sha256(CONTENT).hexdigest()
POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize {len(CONTENT)}\n"
METADATA = "http://169.254.169.254/latest/meta-data"


class FakeLfs:
    """An LFS batch API on 127.0.0.1 whose object `href` is whatever the test sets; /redirect
    answers 302 to `redirect_to`. Records every path asked for."""

    def __init__(self) -> None:
        self.href = ""
        self.redirect_to = ""
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                fake.requests.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps({"transfer": "basic", "objects": [{
                    "oid": OID, "size": len(CONTENT),
                    "actions": {"download": {"href": fake.href}},
                }]}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.git-lfs+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                self.send_response(302)
                self.send_header("Location", fake.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve_in_background(self.server)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_lfs() -> Iterator[FakeLfs]:
    server = FakeLfs()
    yield server
    server.stop()


def lfs_repo(served: Path, endpoint: str, attributes: str = "*.bin filter=lfs -text\n"):
    upstream = Upstream(served, "hostile-lfs")
    upstream.commit(
        {".lfsconfig": f"[lfs]\n\turl = {endpoint}\n", ".gitattributes": attributes,
         "model.bin": POINTER},
        "pointer",
    )  # fmt: skip
    return upstream


def test_an_lfs_endpoint_on_a_link_local_host_is_refused(config, served, git_daemon):
    upstream = lfs_repo(served, METADATA)

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(upstream.name), lfs=True)

    assert raised.value.code == "lfs_url_refused"
    assert "169.254.169.254" in raised.value.message


def test_an_object_href_on_a_link_local_host_is_refused(config, served, git_daemon, fake_lfs):
    fake_lfs.href = f"{METADATA}/object"
    upstream = lfs_repo(served, fake_lfs.url + "/org/repo")

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(upstream.name), lfs=True)

    assert raised.value.code == "lfs_url_refused"
    assert fake_lfs.requests == ["/org/repo/objects/batch"]


def test_an_href_redirecting_to_a_link_local_host_is_refused(config, served, git_daemon, fake_lfs):
    fake_lfs.href = fake_lfs.url + "/redirect"
    fake_lfs.redirect_to = f"{METADATA}/iam"
    upstream = lfs_repo(served, fake_lfs.url + "/org/repo")

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(upstream.name), lfs=True)

    assert raised.value.code == "lfs_url_refused"
    assert fake_lfs.requests == ["/org/repo/objects/batch", "/redirect"]


def test_an_href_with_a_file_scheme_is_refused(config, served, git_daemon, fake_lfs):
    fake_lfs.href = "file:///etc/passwd"
    upstream = lfs_repo(served, fake_lfs.url + "/org/repo")

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(upstream.name), lfs=True)

    assert raised.value.code == "lfs_url_refused"


def test_a_filter_other_than_lfs_runs_nothing(config, served, git_daemon, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    upstream = lfs_repo(served, "http://127.0.0.1:9/none", attributes="* filter=evil\n")
    upstream.set_config("filter.evil.smudge", f"touch {markers}/smudge")
    upstream.set_config("filter.evil.process", f"touch {markers}/process")

    result = run_job(config, git_url=git_daemon.url(upstream.name), lfs=True)

    assert os.listdir(markers) == []
    # Not an LFS file for git: left as stored, and no LFS request was made for it.
    assert (Path(result.local_path) / "model.bin").read_text() == POINTER
    assert result.lfs_files == 0
