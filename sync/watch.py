"""The watch API: a project's events (or the staff feed) held open until a newer event exists.

`GET /api/v1/projects/{id}/events?after=<version>&wait=<seconds>` and `GET /api/v1/events/?
after=<position>&wait=<seconds>` are served here, on the async stack of the agent's long polls
(`config.handlers` routes them when `wait` is given), so a held watch holds no thread. Each look
is the ordinary sync view run on `core.async_db`'s pool, so authentication, visibility, paging
and errors are exactly those of the plain listing; between looks the request waits on the
process's wake-up hub (`projects.wakeups`), which every append announces to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ValidationError

from core.async_db import run_db
from core.errors import error_body
from core.query import whole_number
from projects import wakeups
from projects.api.views import EventFeedView, ProjectEventsView

_project_events = ProjectEventsView.as_view()
_feed = EventFeedView.as_view()


def _look(view: Callable[..., Any], request: HttpRequest, kwargs: dict[str, Any]) -> HttpResponse:
    """One answer of the plain listing, rendered, on a database thread."""
    if not hasattr(request, "session"):
        # The async stack has no session middleware; a browser's session still counts.
        engine = import_module(settings.SESSION_ENGINE)
        request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    request.user = auth.get_user(request)
    answer = view(request, **kwargs)
    answer.render()
    response = HttpResponse(answer.content, status=answer.status_code)
    for header, value in answer.items():
        response[header] = value
    response.has_results = bool(getattr(answer, "data", None) and answer.data.get("results"))
    return response


async def _watch(
    request: HttpRequest, view: Callable[..., Any], channel: str, **kwargs: Any
) -> HttpResponse:
    try:
        wait = whole_number(request.GET, "wait", default=0)
    except ValidationError as exc:
        fields = {"wait": [str(message) for message in exc.detail["wait"]]}
        return JsonResponse(error_body("Invalid query parameter.", "invalid", fields), status=400)
    loop = asyncio.get_running_loop()
    # Capped rather than refused, as a client cannot know this server's limit.
    deadline = loop.time() + min(wait, settings.LONG_POLL_MAX_WAIT)
    woken = wakeups.hub.register(channel)
    try:
        while True:
            # Cleared before the look, so that an event appended during it still wakes us.
            woken.clear()
            response = await run_db(_look, view, request, kwargs)
            remaining = deadline - loop.time()
            if response.status_code != 200 or response.has_results or remaining <= 0:
                return response
            # Woken by an append, or re-looking now and then, since a wake is lost while the
            # PostgreSQL listener reconnects.
            timeout = min(remaining, settings.LONG_POLL_RECHECK_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=timeout)
    finally:
        wakeups.hub.unregister(channel, woken)


async def project_events(request: HttpRequest, project_id: Any) -> HttpResponse:
    """A project's events after `after`, waiting up to `wait` seconds for one."""
    channel = wakeups.project_channel(str(project_id))
    return await _watch(request, _project_events, channel, project_id=project_id)


async def feed(request: HttpRequest) -> HttpResponse:
    """The staff feed after `after`, waiting up to `wait` seconds for an event."""
    return await _watch(request, _feed, wakeups.FEED)
