"""A stand-in for the control plane's agent API (docs/agent-protocol.md), over real HTTP.

It keeps just enough state to drive the agent's loop in tests until the end-to-end tests run the
real server: a queue of jobs, leases keyed by request id, renewals, completions, releases, and
switches to misbehave (drop a response, answer 503, lose a lease, supersede the instance).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "gfa_fake_agent_token"


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    status: int


@dataclass
class FakeLease:
    job: dict[str, Any]
    token: str
    renew_every_seconds: int
    lost: bool = False
    completions: list[dict[str, Any]] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    renewals: list[dict[str, Any]] = field(default_factory=list)


class FakeControlPlane:
    def __init__(self, renew_every_seconds: int = 1) -> None:
        self.renew_every_seconds = renew_every_seconds
        self.calls: list[Call] = []
        self.queue: list[dict[str, Any]] = []
        self.leases: dict[str, FakeLease] = {}  # by job id
        self.by_request_id: dict[str, str] = {}  # request id -> job id
        self.superseded = False
        self.drop_next_lease_response = False
        self.failures: dict[str, list[int]] = {}  # verb -> statuses to answer first
        self.changed = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- test controls ----------------------------------------------------------------------

    def enqueue(self, job: dict[str, Any]) -> str:
        with self.changed:
            self.queue.append(job)
            self.changed.notify_all()
        return job["id"]

    def fail_next(self, verb: str, *statuses: int) -> None:
        with self.changed:
            self.failures.setdefault(verb, []).extend(statuses)

    def lose_lease(self, job_id: str) -> None:
        with self.changed:
            self.leases[job_id].lost = True

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (value := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for the agent")
                self.changed.wait(min(left, 0.1))
            return value

    def calls_to(self, verb: str) -> list[Call]:
        return [call for call in self.calls if call.path.endswith("/" + verb)]

    # -- the protocol -----------------------------------------------------------------------

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        verb = path.rsplit("/", 1)[-1]
        if self.failures.get(verb):
            status = self.failures[verb].pop(0)
            code = "lease_lost" if status == 409 else "injected"
            return status, {"error": "injected", "code": code}
        if verb in ("heartbeat", "lease") and self.superseded:
            return 409, {"error": "superseded", "code": "instance_superseded"}
        if verb == "heartbeat":
            return 200, {"server_time": "now", "heartbeat_seconds": 1, "online_window_seconds": 3}
        if verb == "lease":
            return self._lease(body)
        job_id = path.split("/")[-2]
        lease = self.leases.get(job_id)
        if lease is None:
            return 404, {"error": "not this node's job", "code": "not_found"}
        if lease.lost or body.get("lease_token") != lease.token:
            return 409, {"error": "lease lost", "code": "lease_lost"}
        if verb == "renew":
            lease.renewals.append(body)
            return 200, {"expires_at": "later"}
        if verb == "complete":
            lease.completions.append(body)
            return 200, {"job": {"id": job_id}}
        if verb == "release":
            lease.releases.append(body)
            lease.lost = True
            return 200, {"job": {"id": job_id}}
        return 404, {"error": "no such call", "code": "not_found"}

    def _lease(self, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        request_id = body["request_id"]
        if request_id in self.by_request_id:
            return 200, self._lease_body(self.leases[self.by_request_id[request_id]])
        deadline = time.monotonic() + float(body.get("wait", 0))
        while not self.queue:
            left = deadline - time.monotonic()
            if left <= 0:
                return 204, None
            self.changed.wait(min(left, 0.1))
        job = self.queue.pop(0)
        lease = FakeLease(job, uuid.uuid4().hex, self.renew_every_seconds)
        self.leases[job["id"]] = lease
        self.by_request_id[request_id] = job["id"]
        return 200, self._lease_body(lease)

    def _lease_body(self, lease: FakeLease) -> dict[str, Any]:
        return {
            "job": lease.job,
            "lease": {
                "token": lease.token,
                "attempt": 1,
                "expires_at": "2030-01-01T00:00:00Z",
                "renew_every_seconds": lease.renew_every_seconds,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    with plane.changed:
                        plane.calls.append(Call(self.path, body, 401))
                    self._send(401, {"error": "bad token", "code": "not_authenticated"})
                    return
                with plane.changed:
                    status, answer = plane._answer(self.path, body)
                    plane.calls.append(Call(self.path, body, status))
                    drop = self.path.endswith("/lease") and status == 200
                    drop = drop and plane.drop_next_lease_response
                    if drop:
                        plane.drop_next_lease_response = False
                    plane.changed.notify_all()
                if drop:
                    self.close_connection = True  # the lease was granted; the answer is lost
                    return
                self._send(status, answer)

            def _send(self, status: int, answer: dict[str, Any] | None) -> None:
                payload = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                if answer is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
