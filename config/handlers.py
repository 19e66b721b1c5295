"""The ASGI handlers `config.asgi` serves: the agent API's async stack and the site's sync one.

Importing this module starts nothing; `config.asgi` builds the application (`application()`)
and starts the process's sweeper.
"""

import asyncio
import contextlib
import re
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import ImproperlyConfigured, RequestAborted, SuspiciousOperation
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import set_script_prefix
from django.utils.module_loading import import_string

from core.asgi_limits import RequestLimits
from core.errors import error_body
from projects.lease_hold import LeaseHolds

# The agent API: its views are async and do their database work on `core.async_db`'s pool.
AGENT_API_PREFIX = "/api/v1/agent/"
AGENT_URLCONF = "config.agent_urls"
# The watch API: event listings asked to `wait` are held on the async stack too (`sync.watch`).
# Only a canonical project id: any other path is the sync stack's, with its JSON 404.
WATCH_PATH = re.compile(
    r"^/api/v1/(projects/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/events"
    r"|events/)$"
)
WATCH_URLCONF = "sync.watch_urls"


def is_watch(scope: dict) -> bool:
    """A listing of events with a `wait` parameter: held until a newer event exists."""
    if not WATCH_PATH.match(scope["path"]):
        return False
    query = scope.get("query_string", b"").decode("latin-1")
    return "wait" in parse_qs(query, keep_blank_values=True)


class AgentAPIHandler(ASGIHandler):
    """Django's ASGI handler for the agent API: no thread of its own per request, and its own
    short middleware stack (`settings.AGENT_API_MIDDLEWARE`), async from end to end.

    Django gives every request a `ThreadSensitiveContext`: the first synchronous step of the
    request (a sync signal receiver or middleware) starts a thread that then lives, idle, until
    the request ends, so 5,000 waiting long polls would be 5,000 threads, and every other agent
    call would start and stop one. Outside such a context those short synchronous steps share
    one thread instead; the agent views' own work runs on `core.async_db`'s pool either way.
    Each sync middleware would add two such hops per call, hence the async-only stack.
    """

    urlconf = AGENT_URLCONF

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        """Django's `ASGIHandler.handle` without the `request_started` and `request_finished`
        signals. Their receivers (closing the calling thread's stale connections, resetting its
        query log) are synchronous, so each cost a hop to a thread and back, a few percent of an
        agent call's CPU (BENCHMARKS.md, finding 22), for a thread that holds no connection: the
        views' database work runs on `core.async_db`'s pool, which hands its connection back
        after each step. The answers are in-memory JSON, holding nothing for `response.close()`
        to release.

        What it keeps is the client's disconnect cancelling the view: a call whose agent has
        given up is not worked on, and its step on the database pool, if it has not started,
        never starts. Past its capacity a process is behind on exactly those calls; without
        this it worked through them after their agents had gone, and at 10,000 agents on two
        cores answered none in time (BENCHMARKS.md, finding 24).
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(response, send)
                return
            await self._respond_unless_gone(request, receive, send)
        finally:
            body_file.close()

    async def _respond_unless_gone(self, request, receive, send) -> None:
        async def respond() -> None:
            await self.send_response(await self.run_get_response(request), send)

        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        responder = asyncio.create_task(respond())
        _, pending = await asyncio.wait((listener, responder), return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in (listener, responder):
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await task  # the view's own errors are raised here

    def resolve_request(self, request):
        request.urlconf = self.urlconf
        return super().resolve_request(request)

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        for path in reversed(settings.AGENT_API_MIDDLEWARE):
            middleware = import_string(path)
            if not getattr(middleware, "async_capable", False):
                raise ImproperlyConfigured(f"AGENT_API_MIDDLEWARE: {path} is not async-capable.")
            handler = convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler


class WatchAPIHandler(AgentAPIHandler):
    """The agent API's async stack, resolving only the watch API's URLs, with Django's own
    `handle`: a held listing waits in its view, which the client's disconnect must cancel."""

    urlconf = WATCH_URLCONF
    handle = ASGIHandler.handle


class GitfleetASGIHandler(ASGIHandler):
    """Django's ASGI handler, handing the agent API to `AgentAPIHandler`.

    Everything else (the user API, the admin, the docs) is sync: sessions, CSRF and the admin's
    middleware are sync-only, and in Django's async stack each of their hooks would hop to a
    thread and back, about sixteen hops per request. Here the whole sync stack, middleware and
    view, runs in one hop, as it would under WSGI.
    """

    def __init__(self):
        super().__init__()
        self.agent_api = LeaseHolds(AgentAPIHandler())
        self.watch_api = WatchAPIHandler()

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)  # the sync stack, whatever Django asks for

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(AGENT_API_PREFIX):
            await self.agent_api(scope, receive, send)
            return
        if scope["type"] == "http" and is_watch(scope):
            await self.watch_api(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class StaticFilesHandler(ASGIStaticFilesHandler):
    """Django's static files handler, answering 404 in JSON for every path that is not a file,
    including one that climbs out of the static folders (`/static/%2e%2e/x`), which Django's
    handler lets escape as a 500."""

    def serve(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().serve(request)
        except (Http404, SuspiciousOperation):
            return JsonResponse(error_body("Not found.", "not_found"), status=404)


def application() -> RequestLimits:
    """The whole site as uvicorn serves it. `core.asgi_limits.RequestLimits` is the outermost
    layer: it refuses oversized bodies and agent calls without an agent token before Django
    reads a byte of the body."""
    return RequestLimits(
        StaticFilesHandler(GitfleetASGIHandler()),
        max_body_bytes=settings.MAX_REQUEST_BODY_BYTES,
        bearer_prefixes={AGENT_API_PREFIX: "gfa_"},
    )
