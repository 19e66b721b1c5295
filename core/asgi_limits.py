"""An ASGI layer in front of Django that refuses a request before its body is read.

Django's ASGI handler reads the whole body (onto disk past `FILE_UPLOAD_MAX_MEMORY_SIZE`)
before any middleware runs, so a size limit or a login check in middleware comes after the
upload. This layer answers 413 when `Content-Length` is over the limit without reading a byte,
reads a body of unknown length (chunked) only up to the limit, and answers 401 on paths that
need a bearer token of a known kind when the `Authorization` header does not even look like
one. Django then sees only bodies it may keep in memory.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.utils.encoding import escape_uri_path

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DIGITS = re.compile(rb"[0-9]{1,19}\Z")
request_logger = logging.getLogger("gitfleet.request")


class RequestLimits:
    """Wraps an ASGI application: body size and bearer-token shape, checked before the body.

    `bearer_prefixes` maps a path prefix to the token prefix its callers must present, e.g.
    `{"/api/v1/agent/": "gfa_"}`; whether the token is valid is still the application's call.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        bearer_prefixes: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.bearer_prefixes = {
            path: re.compile(
                rb"[Bb][Ee][Aa][Rr][Ee][Rr] +" + re.escape(token.encode()) + rb"\S+ *\Z"
            )
            for path, token in (bearer_prefixes or {}).items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        refusal = self._refusal_from_headers(scope)
        if refusal is not None:
            await _answer(scope, send, *refusal, started=started)
            return
        try:
            body = await self._read_limited(receive)
        except _ClientGone:
            return
        if body is None:
            await _answer(scope, send, *self._too_large(), started=started)
            return
        await self.app(_with_length(scope, len(body)), _replay(body, receive), send)

    def _refusal_from_headers(self, scope: Scope) -> tuple[int, dict, list] | None:
        headers = scope.get("headers") or []
        lengths = [value.strip() for name, value in headers if name.lower() == b"content-length"]
        for path, pattern in self.bearer_prefixes.items():
            if scope["path"].startswith(path):
                authorization = [
                    value for name, value in headers if name.lower() == b"authorization"
                ]
                if len(authorization) != 1 or not pattern.match(authorization[0]):
                    return _unauthenticated(bool(authorization))
        if not lengths:
            return None
        if len(set(lengths)) != 1 or not _DIGITS.match(lengths[0]):
            return (
                400,
                _error(
                    "Content-Length is not a valid size.",
                    "bad_request",
                    "Content-Length",
                    "Not a valid size: give the body's length in bytes, in digits.",
                ),
                [],
            )
        if int(lengths[0]) > self.max_body_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> tuple[int, dict, list]:
        limit = self.max_body_bytes
        return (
            413,
            _error(
                f"Request body is larger than {limit} bytes.",
                "too_large",
                "body",
                f"At most {limit} bytes.",
            ),
            [],
        )

    async def _read_limited(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _ClientGone(Exception):
    """The client disconnected before its body was complete: nobody is left to answer."""


def _with_length(scope: Scope, length: int) -> Scope:
    """The scope with the body's length declared: Django reads a body only up to
    `Content-Length`, so a chunked one (which has none) would otherwise arrive empty."""
    headers = [
        (name, value)
        for name, value in scope.get("headers") or []
        if name.lower() not in (b"content-length", b"transfer-encoding")
    ]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read as one message, then the client's own
    messages (a disconnect, for a long poll)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _error(message: str, code: str, field: str, reason: str) -> dict:
    return {"error": message, "code": code, "fields": {field: [reason]}}


def _unauthenticated(header_given: bool) -> tuple[int, dict, list]:
    if header_given:
        body = _error(
            "Authorization must be 'Bearer <agent token>'.",
            "authentication_failed",
            "Authorization",
            "Not an agent token.",
        )
    else:
        body = _error(
            "Agent calls need 'Authorization: Bearer gfa_…'.",
            "not_authenticated",
            "Authorization",
            "Agent calls need 'Authorization: Bearer gfa_…'.",
        )
    return 401, body, [(b"www-authenticate", b'Bearer realm="agent"')]


async def _answer(
    scope: Scope, send: Send, status: int, body: dict, headers: list, *, started: float
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                # The unread rest of the body is never read: uvicorn closes the connection.
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    request_logger.info(
        "%s %s %s %sms refused before the body was read",
        scope.get("method"),
        escape_uri_path(scope.get("path", ""))[:2048],
        status,
        duration_ms,
        extra={
            "method": scope.get("method"),
            "path": escape_uri_path(scope.get("path", ""))[:2048],
            "status": status,
            "duration_ms": duration_ms,
        },
    )
