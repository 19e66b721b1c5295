"""Request-wide middleware: the `Host` check, a request id on every request, and a body-size
limit, each refusal answered in JSON."""

import asyncio
import logging
import re
import time
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.security import SecurityMiddleware
from django.utils.encoding import escape_uri_path
from django.utils.functional import SimpleLazyObject, empty

from core.errors import bad_request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,19}\Z")


class _Middleware:
    """Both sync and async, so async views (the long poll) never hop to a thread for it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        early = self.before(request)
        if iscoroutinefunction(self):
            return self._acall(request, early)
        response = early if early is not None else self.get_response(request)
        return self.after(request, response)

    async def _acall(self, request: HttpRequest, early: HttpResponse | None):
        response = early if early is not None else await self.get_response(request)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


security_logger = logging.getLogger("django.security.DisallowedHost")


class AllowedHostMiddleware(_Middleware):
    """Checks `Host` against `ALLOWED_HOSTS` first, in both stacks: the agent API's has no other
    step that looks at it, and the answer (`core.errors.bad_request`, JSON under /api/) comes
    without the traceback Django logs when the check fails deeper in."""

    def before(self, request):
        try:
            request.get_host()
        except DisallowedHost as exc:
            security_logger.warning("%s", exc)
            return bad_request(request, exc)
        return None


class RequestIdMiddleware(_Middleware):
    """Takes a well-formed `X-Request-ID` from the client or makes one, and echoes it back."""

    def before(self, request):
        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        return None

    def after(self, request, response):
        response["X-Request-ID"] = request.request_id
        return response


class JsonBodyLimitMiddleware(_Middleware):
    """Refuses declared bodies over `MAX_REQUEST_BODY_BYTES` before anything reads them."""

    def before(self, request):
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not _CONTENT_LENGTH.match(declared):
            # int() would also take '-1', ' 5', '+5' and non-ASCII digits; HTTP takes 1*DIGIT.
            return JsonResponse(
                {
                    "error": "Content-Length is not a valid size.",
                    "code": "bad_request",
                    "fields": {
                        "Content-Length": [
                            "Not a valid size: give the body's length in bytes, in digits."
                        ]
                    },
                },
                status=400,
            )
        length = int(declared)
        limit = settings.MAX_REQUEST_BODY_BYTES
        if length > limit:
            return JsonResponse(
                {
                    "error": f"Request body is larger than {limit} bytes.",
                    "code": "too_large",
                    "fields": {"body": [f"At most {limit} bytes."]},
                },
                status=413,
            )
        return None


request_logger = logging.getLogger("gitfleet.request")

# nginx's code for "the client closed the connection before the answer": a long poll given up.
CLIENT_CLOSED_REQUEST = 499


# An ASGI layer in front of Django that answers a request itself after one or more passes
# through Django (a held long poll) puts a dict in the scope under this key: each pass then
# leaves its log fields there, and the layer writes the one line when the request ends.
REQUEST_LOG_SCOPE_KEY = "gitfleet.request_log"


class RequestLogMiddleware(_Middleware):
    """One `gitfleet.request` line per request, when it ends (a long poll when it answers or is
    given up): method, path, status, duration, request id, and the person or node.

    Headers, query strings and bodies are never logged."""

    def __call__(self, request: HttpRequest):
        started = time.perf_counter()
        if iscoroutinefunction(self):
            return self._alog(request, started)
        response = self.get_response(request)
        _log_request(request, response.status_code, started)
        return response

    async def _alog(self, request: HttpRequest, started: float):
        try:
            response = await self.get_response(request)
        except asyncio.CancelledError:
            _log_request(request, CLIENT_CLOSED_REQUEST, started)
            raise
        _log_request(request, response.status_code, started)
        return response


def _log_request(request: HttpRequest, status: int, started: float) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    user, node = _who(request)
    fields = {
        "method": request.method,
        # Re-quoted, so a decoded newline or space in the path cannot forge a log line.
        "path": escape_uri_path(request.path)[:2048],
        "status": status,
        "duration_ms": duration_ms,
        "request_id": getattr(request, "request_id", None),
        "user": user,
        "node": node,
    }
    later = getattr(request, "scope", {}).get(REQUEST_LOG_SCOPE_KEY)
    if later is not None:
        later.update(fields)
    else:
        log_request(fields)


def log_request(fields: dict) -> None:
    """Writes the `gitfleet.request` line of `fields` (as `RequestLogMiddleware` makes them)."""
    node, user = fields["node"], fields["user"]
    who = f"node={node}" if node else f"user={user}" if user else "anonymous"
    request_logger.info(
        "%s %s %s %sms request_id=%s %s",
        fields["method"],
        fields["path"],
        fields["status"],
        fields["duration_ms"],
        fields["request_id"] or "-",
        who,
        extra=fields,
    )


def _who(request: HttpRequest) -> tuple[str | None, str | None]:
    """(username, node name) of whoever made the request, as far as it is already known.

    A session user nobody looked at is left alone: resolving it would query the database."""
    user = getattr(request, "user", None)
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return None, None
    if not getattr(user, "is_authenticated", False):
        return None, None
    node = getattr(user, "node", None)  # an agent's identity carries its node
    if node is not None:
        return None, node.name
    return user.get_username(), None


class InlineSecurityMiddleware(SecurityMiddleware):
    """Django's `SecurityMiddleware` for an all-async stack (the agent API's): its checks and
    headers do no I/O, so they run inline instead of each hopping to a thread and back."""

    sync_capable = False

    async def __acall__(self, request):
        response = self.process_request(request)
        if response is None:
            response = await self.get_response(request)
        return self.process_response(request, response)
