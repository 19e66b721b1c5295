"""A real TCP relay between an agent and a real Gitfleet server, whose wire can be made to fail.

The server behind it stays real; only the wire misbehaves, in the ways a network and the load
balancers on it do and a healthy server cannot be made to on demand:

- `fail(path, 503, 429, retry_after=2)`: the next requests to `path` are answered by the proxy
  itself with these statuses, never reaching the server (an overloaded balancer, a rate limit);
  `fail_until_cleared(path, 503)` keeps doing so until `clear()`;
- `drop_response(path)`: the next request to `path` is forwarded and the server acts on it, but
  its answer is lost on the way back (the connection closes instead);
- `refuse_connections()` / `accept_connections()`: the server is down for a while.

Paths match by suffix (`"/lease"`, `"/complete"`). Every request seen is kept in `calls`, with the
body sent, the status the agent got (None if the answer was dropped) and the answer's JSON.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tests.support.gitservers import serve_in_background

T = TypeVar("T")

_FORWARDED_REQUEST_HEADERS = ("Authorization", "Content-Type", "User-Agent", "Accept")
_FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate")
UPSTREAM_TIMEOUT = 120.0


@dataclass
class Call:
    """One request as the proxy saw it and what became of it."""

    method: str
    path: str
    body: Any
    status: int | None  # what the agent got; None when the answer was dropped
    answer: Any  # the JSON answer (the server's, even when dropped), or None
    forwarded: bool  # whether the server saw the request

    @property
    def verb(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class _Fault:
    path: str
    status: int | None  # None: forward, then drop the answer
    retry_after: int | None = None
    only_status: int | None = None  # drop only an answer with this status
    sticky: bool = False  # stays until clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection cut by refuse_connections() is expected, not worth a traceback

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def cut_all(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class FaultProxy:
    """Forwards HTTP on 127.0.0.1 to `target_url`, failing on the wire when told to."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._faults: list[_Fault] = []
        self.calls: list[Call] = []
        self.in_flight = 0  # requests forwarded whose answer has not come back yet
        self.changed = threading.Condition()
        self._server: _Server | None = None
        self._start(0)
        assert self._server is not None
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # -- faults -----------------------------------------------------------------------------

    def fail(self, path: str, *statuses: int, retry_after: int | None = None) -> None:
        """Answer the next requests to `path` with `statuses`, one each, without forwarding."""
        with self.changed:
            self._faults += [_Fault(path, status, retry_after) for status in statuses]

    def fail_until_cleared(self, path: str, status: int, retry_after: int | None = None) -> None:
        with self.changed:
            self._faults.append(_Fault(path, status, retry_after, sticky=True))

    def drop_response(self, path: str, *, status: int = 200) -> None:
        """Forward the next request to `path` answered with `status`, and lose the answer."""
        with self.changed:
            self._faults.append(_Fault(path, None, only_status=status))

    def clear(self) -> None:
        with self.changed:
            self._faults.clear()

    def refuse_connections(self) -> None:
        """Close the listening socket and every open connection: connections are refused."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.cut_all()

    def accept_connections(self) -> None:
        if self._server is None:
            self._start(self.port)

    def stop(self) -> None:
        self.refuse_connections()

    # -- what happened ----------------------------------------------------------------------

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no forwarded request is waiting for the server's answer."""
        self.wait_for(lambda: self.in_flight == 0 or None, timeout)

    def calls_to(self, verb: str) -> list[Call]:
        with self.changed:
            return [call for call in self.calls if call.verb == verb]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 30.0) -> T:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (value := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting; calls so far: {self.calls}")
                self.changed.wait(min(left, 0.1))
            return value

    # -- the relay --------------------------------------------------------------------------

    def _start(self, port: int) -> None:
        server = _Server(("127.0.0.1", port), _Handler, self)
        serve_in_background(server)
        self._server = server

    def _take_fault(self, path: str, forwarded_status: int | None) -> _Fault | None:
        """The fault that applies to this request (before forwarding, or after it for drops)."""
        with self.changed:
            for fault in self._faults:
                if not path.endswith(fault.path):
                    continue
                wanted = forwarded_status is None
                if (fault.status is not None) != wanted:
                    continue
                if not wanted and fault.only_status not in (None, forwarded_status):
                    continue
                if not fault.sticky:
                    self._faults.remove(fault)
                return fault
        return None

    def _record(self, call: Call) -> None:
        with self.changed:
            self.calls.append(call)
            self.changed.notify_all()

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        with self.changed:
            self.in_flight += 1
        connection = http.client.HTTPConnection(*self._target, timeout=UPSTREAM_TIMEOUT)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            kept = [
                (name, value)
                for name, value in response.getheaders()
                if name.title() in _FORWARDED_RESPONSE_HEADERS
            ]
            return response.status, kept, payload
        finally:
            connection.close()
            with self.changed:
                self.in_flight -= 1
                self.changed.notify_all()


def _json_or_none(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def _relay(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sent = _json_or_none(body)
        fault = proxy._take_fault(self.path, None)
        if fault is not None and fault.status is not None:
            answer = {"error": "injected by the fault proxy", "code": "unavailable"}
            extra = [] if fault.retry_after is None else [("Retry-After", str(fault.retry_after))]
            proxy._record(Call(self.command, self.path, sent, fault.status, answer, False))
            self._send(fault.status, [("Content-Type", "application/json"), *extra], answer)
            return
        headers = {
            name: self.headers[name] for name in _FORWARDED_REQUEST_HEADERS if name in self.headers
        }
        try:
            status, response_headers, payload = proxy.forward(
                self.command, self.path, headers, body
            )
        except OSError:
            # The server is not there: the agent sees its connection cut, as it would.
            proxy._record(Call(self.command, self.path, sent, None, None, False))
            self.close_connection = True
            return
        answer = _json_or_none(payload)
        if proxy._take_fault(self.path, status) is not None:
            proxy._record(Call(self.command, self.path, sent, None, answer, True))
            self.close_connection = True  # the server acted; its answer is lost on the way
            return
        proxy._record(Call(self.command, self.path, sent, status, answer, True))
        self._send_raw(status, response_headers, payload)

    def _send(self, status: int, headers: list[tuple[str, str]], answer: Any) -> None:
        self._send_raw(status, headers, json.dumps(answer).encode())

    def _send_raw(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if status != 204 and payload:
            self.wfile.write(payload)
