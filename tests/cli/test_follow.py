"""Following a job: how events fold into its state, how progress is shown, and how the follower
finds out whether the server has the watch API (held `?after=&wait=`) or must be polled."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from gitfleet_cli.client import Client
from gitfleet_cli.errors import StillRunning
from gitfleet_cli.follow import Follower, JobView, ProgressDisplay, Timeline
from tests.support.gitservers import serve_in_background

PROJECT = "0b8e7c9e-58a4-4f0e-9a35-7d6f8f3c1b2a"
JOB = "5d1f2a8e-1c63-4f5e-8d0e-2b7f4f6a9c11"


def event(version: int, type_: str, **data: object) -> dict:
    return {"version": version, "type": type_, "data": data, "recorded_at": "2026-01-01T00:00:00Z"}


def clone_events() -> list[dict]:
    return [
        event(1, "ProjectCreated", name="demo"),
        event(2, "JobQueued", job_id=JOB, kind="clone"),
        event(3, "JobLeased", job_id=JOB, attempt=1),
        event(4, "JobLeaseRenewed", job_id=JOB, progress={"phase": "receiving", "percent": 40}),
        event(5, "JobLeaseRenewed", job_id=JOB, progress={"phase": "receiving", "percent": 90}),
        event(6, "JobSucceeded", job_id=JOB, attempt=1, result={"commit": "a" * 40}),
    ]


def test_the_timeline_folds_a_job_from_queued_to_its_end():
    timeline = Timeline()
    states = []
    for item in clone_events():
        job = timeline.apply(item)
        states.append(job.state if job else None)

    assert states == [None, "queued", "leased", "leased", "leased", "succeeded"]
    job = timeline.jobs[JOB]
    assert (job.kind, job.attempt, job.result) == ("clone", 1, {"commit": "a" * 40})
    assert job.progress == {"phase": "receiving", "percent": 90}
    assert timeline.last_job_id == JOB
    assert timeline.apply(clone_events()[2]) is None  # seen already


def test_a_failed_attempt_is_queued_again_and_a_cancel_ends_the_job():
    timeline = Timeline()
    for item in clone_events()[:3]:
        timeline.apply(item)
    error = {"code": "network", "message": "timed out", "retryable": True}

    job = timeline.apply(event(4, "JobAttemptFailed", job_id=JOB, attempt=1, error=error))
    assert (job.state, job.error, job.is_open) == ("queued", error, True)
    job = timeline.apply(event(5, "JobCancelled", job_id=JOB, reason="by the owner"))
    assert (job.state, job.is_open) == ("cancelled", False)
    assert job.error == {"code": "cancelled", "message": "by the owner"}


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    stream = io.StringIO()
    display = ProgressDisplay(stream, label="clone demo", tty=True)
    job = JobView(id=JOB, kind="clone", state="leased", attempt=1)

    job.progress = {"phase": "receiving", "percent": 50, "objects": 12, "bytes": 1536}
    display.update(job, "JobLeaseRenewed")
    job.state, job.result = "succeeded", {"commit": "b" * 40, "branch": "main"}
    display.update(job, "JobSucceeded")
    display.finish(job)

    bar = "[" + "#" * 15 + "-" * 15 + "]"
    assert stream.getvalue() == (
        f"\r\x1b[Kclone demo: {bar}  50% receiving (12 objects, 1.5 KiB)"
        f"\r\x1b[Kclone demo: succeeded at {'b' * 12} on main\n"
    )


def test_without_a_terminal_progress_is_one_line_per_phase_and_tenth():
    stream = io.StringIO()
    display = ProgressDisplay(stream, label="clone demo", tty=False)
    job = JobView(id=JOB, kind="clone", state="leased", attempt=1)

    display.update(job, "JobLeased")
    for percent in (3, 7, 12, 15, 100):
        job.progress = {"phase": "receiving", "percent": percent}
        display.update(job, "JobLeaseRenewed")
    job.progress = {"phase": "resolving", "percent": 100}
    display.update(job, "JobLeaseRenewed")

    assert stream.getvalue().splitlines() == [
        "clone demo: running (attempt 1)",
        "clone demo: receiving 3%",
        "clone demo: receiving 12%",
        "clone demo: receiving 100%",
        "clone demo: resolving 100%",
    ]
    assert "\r" not in stream.getvalue()


class ScriptedServer:
    """A stand-in Gitfleet on 127.0.0.1 whose project gains one event per status read or per
    held events request, with or without the watch API."""

    def __init__(self, *, watch: bool) -> None:
        self.watch = watch
        self.pending = clone_events()
        self.events = [self.pending.pop(0), self.pending.pop(0)]
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                status, body = outer.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        serve_in_background(self.http)

    def release_one(self) -> None:
        if self.pending:
            self.events.append(self.pending.pop(0))

    def answer(self, path: str) -> tuple[int, dict]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path.endswith("/status"):
            self.release_one()
            return 200, {"id": PROJECT, "version": len(self.events)}
        if "wait" in query:
            if not self.watch:
                return 400, {
                    "error": "Invalid input.",
                    "code": "invalid",
                    "fields": {"wait": ["Unknown parameter."]},
                }
            self.release_one()
            after = int(query["after"])
            newer = [e for e in self.events if e["version"] > after]
            return 200, {"count": len(newer), "next": None, "previous": None, "results": newer}
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
        page = self.events[offset : offset + limit]
        return 200, {"count": len(self.events), "next": None, "previous": None, "results": page}

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(params=[True, False], ids=["watch-api", "no-watch-api"])
def server(request) -> Iterator[ScriptedServer]:
    server = ScriptedServer(watch=request.param)
    yield server
    server.close()


def test_the_follower_uses_the_watch_api_when_there_is_one_and_polls_otherwise(server):
    client = Client(server.url, "token")
    stream = io.StringIO()
    follower = Follower(
        client,
        PROJECT,
        timeout=30,
        display=ProgressDisplay(stream, label="clone demo", tty=False),
        sleep=lambda seconds: None,
    )
    follower.history()

    job = follower.until_done(JOB)
    client.close()

    assert job.state == "succeeded"
    assert follower.watch_supported is server.watch
    status_reads = [p for p in server.requests if p.endswith("/status")]
    if server.watch:
        assert status_reads == []
        assert all("wait=" in p for p in server.requests[1:])
    else:
        assert len(status_reads) >= 4
        assert sum("wait=" in p for p in server.requests) == 1  # asked once, then polled
    assert stream.getvalue().splitlines() == [
        "clone demo: running (attempt 1)",
        "clone demo: receiving 40%",
        "clone demo: receiving 90%",
        f"clone demo: succeeded at {'a' * 12}",
    ]


def test_waiting_stops_at_the_timeout_with_the_job_still_open():
    server = ScriptedServer(watch=False)
    server.pending = []  # nothing ever happens
    client = Client(server.url, "token")
    try:
        follower = Follower(client, PROJECT, timeout=0.3, sleep=lambda seconds: None)
        follower.history()
        with pytest.raises(StillRunning, match=r"still queued after 0\.3 s") as raised:
            follower.until_done(JOB)
    finally:
        client.close()
        server.close()
    assert raised.value.exit_code == 5
