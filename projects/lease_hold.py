"""Holding the agents' long polls below Django: a waiting lease call is a handful of objects.

A lease call goes through Django once for its first look (authentication, validation,
presence, the claim). When that look finds nothing and the agent asked to wait, the view does
not wait itself: it *parks* the call (`Hold.park`) and answers its 204, which `LeaseHolds`
keeps instead of sending. Django's request, DRF's view and the coroutine chain of the handler
and its middleware are then gone, and the call waits here, on the process's wake-up hub, as a
few small objects. When woken it goes through Django again, as a look after a wake-up
(`Hold.woken`): the token is checked again, the claim runs, and the answer is sent, or the call
is parked again. When the wait runs out, the 204 that Django made at the first look is sent.

Why: with thousands of polls held inside Django, each kept ~200 objects that the garbage
collector walks on every full collection, and each pass paused the process for most of a second
(BENCHMARKS.md, finding 5). Held here, a poll is a coroutine, an event and a task watching its
connection.

Past what the process can serve, it sheds instead of collapsing: when its event loop runs late
by more than `LONG_POLL_SHED_LAG_SECONDS` (the sign that requests arrive faster than it answers
them), a new lease call is answered at once, before Django, with 503 and a `Retry-After` spread
over one default wait, which the agent honours. Held polls are still woken and answered, and
heartbeats and the other agent calls still go through, so nodes stay online and work already
claimed completes; the shed agents come back spread out instead of piling up into time-outs.

One agent instance holds one poll at a time (`open_polls`): a second poll from the same
instance is either its agent retrying a call it gave up on (same request id: the older call is
ended quietly) or a second process using the same token *and* instance id to hide from the
duplicate-instance alarm (another request id: the older call is answered 409 and the node
flagged). Polls held by different server processes are not compared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from prometheus_client import Counter, Gauge

from core.async_db import queue_delay, run_db
from core.errors import error_body
from core.middleware import CLIENT_CLOSED_REQUEST, REQUEST_LOG_SCOPE_KEY, log_request
from nodes.services import flag_duplicate_instance_of
from projects.wakeups import hub

logger = logging.getLogger(__name__)

LEASE_PATH = "/api/v1/agent/lease"
# The key of the `Hold` in the ASGI scope Django's request carries.
SCOPE_KEY = "gitfleet.lease_hold"
# How often the event loop's lateness is sampled, and how fast the estimate follows it.
_LAG_TICK_SECONDS = 0.1
_LAG_SMOOTHING = 0.3

SHED = Counter(
    "gitfleet_long_polls_shed",
    "Lease calls this process answered 503 with Retry-After at once because its event loop ran "
    "late (LONG_POLL_SHED_LAG_SECONDS).",
)
LOOP_LAG = Gauge(
    "gitfleet_event_loop_lag_seconds",
    "How late this process's event loop runs its callbacks (smoothed); past "
    "LONG_POLL_SHED_LAG_SECONDS new lease calls are shed.",
)
QUEUE_DELAY = Gauge(
    "gitfleet_db_queue_wait_seconds",
    "How long the oldest database step waiting for one of this process's AGENT_DB_THREADS has "
    "waited: how far behind its database work runs, however punctual its event loop.",
)
QUEUE_DELAY.set_function(queue_delay)


@dataclass(frozen=True)
class Parked:
    """A lease call whose look found nothing, to be held until woken or out of time."""

    node_id: str
    instance_id: str
    request_id: str
    wait: float
    generation: int  # the hub's count of wake-ups for the node before the look


@dataclass
class Hold:
    """What `LeaseHolds` and the lease view tell each other about one pass through Django."""

    woken: bool = False  # this pass is a look after a wake-up: no presence, straight to claim
    overlap: bool = False  # another poll of the same agent instance took over: answer 409
    parked: Parked | None = None  # set by the view: nothing found, hold the call

    def park(self, parked: Parked) -> None:
        self.parked = parked


def hold_of(scope: dict[str, Any] | None) -> Hold | None:
    """The `Hold` of a request's ASGI scope; None when no `LeaseHolds` layer serves it (the
    test client), and the view then answers at once instead of waiting."""
    return (scope or {}).get(SCOPE_KEY)


@dataclass
class _HeldPoll:
    """A lease call this process holds open, as `_OpenPolls` knows it."""

    request_id: str
    loop: asyncio.AbstractEventLoop
    woken: asyncio.Event
    ended_by: str = ""  # "retry" or "overlap" once a later poll of the same instance took over


class _OpenPolls:
    """The long polls this process holds, one per (node, agent instance)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._polls: dict[tuple[str, str], _HeldPoll] = {}

    def open(self, key: tuple[str, str], poll: _HeldPoll) -> _HeldPoll | None:
        """Registers `poll`; ends and returns the poll it overlaps, if any."""
        with self._lock:
            older = self._polls.get(key)
            self._polls[key] = poll
        if older is None:
            return None
        older.ended_by = "retry" if older.request_id == poll.request_id else "overlap"
        if not older.loop.is_closed():
            older.loop.call_soon_threadsafe(older.woken.set)
        return older

    def close(self, key: tuple[str, str], poll: _HeldPoll) -> None:
        with self._lock:
            if self._polls.get(key) is poll:
                del self._polls[key]


open_polls = _OpenPolls()


class _LoopLag:
    """How late the event loop runs: a task asks to wake every `_LAG_TICK_SECONDS` and notes
    how much later it woke, smoothed. Busy with more work than it can do, the loop runs every
    callback late, the lease calls' and their answers' included."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._task: asyncio.Task | None = None

    def watch(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sample(), name="loop-lag")

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(_LAG_TICK_SECONDS)
            late = max(0.0, loop.time() - asked - _LAG_TICK_SECONDS)
            self.seconds += _LAG_SMOOTHING * (late - self.seconds)
            LOOP_LAG.set(self.seconds)


class LeaseHolds:
    """ASGI layer in front of the agent API: holds parked lease calls, and sheds new ones
    while the process runs late (see the module)."""

    def __init__(self, app) -> None:
        self.app = app
        self.lag = _LoopLag()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != LEASE_PATH:
            await self.app(scope, receive, send)
            return
        self.lag.watch()
        limit = settings.LONG_POLL_SHED_LAG_SECONDS
        if limit > 0 and self.lag.seconds > limit:
            await _shed(receive, send)
            return
        await _LeaseCall(self.app, scope, receive, send).run()


async def _shed(receive, send) -> None:
    """503 with a `Retry-After` spread over one default wait, so that the shed agents come back
    spread out rather than all at once."""
    SHED.inc()
    while (await receive()).get("more_body"):
        pass  # the body, unread, would be in the way of the connection's next request
    wait = max(2, settings.LONG_POLL_DEFAULT_WAIT)
    retry_after = random.randint(wait // 2, wait)  # noqa: S311 - spreading, not secrecy
    body = json.dumps(
        error_body(
            "This server is busier than it can serve; call again after Retry-After seconds.",
            "overloaded",
        )
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _LeaseCall:
    """One lease call: its passes through Django, and its wait between them."""

    def __init__(self, app, scope, receive, send) -> None:
        self.app, self.scope, self.receive, self.send = app, scope, receive, send
        self.started = time.perf_counter()
        self.status: int | None = None  # of the answer sent
        self.logged: dict[str, Any] = {}  # the request log's fields, left by each pass
        self.body = b""
        self._unread = False  # whether this pass has yet to read the body
        self.gone: asyncio.Future[None] | None = None  # done when the agent hung up

    async def run(self) -> None:
        if not await self._read_body():
            return  # the agent hung up before sending its request
        self.gone = asyncio.get_running_loop().create_future()
        watcher = asyncio.get_running_loop().create_task(self._watch_connection())
        try:
            hold = Hold()
            answer = await self._through_django(hold)
            if hold.parked is not None:
                await self._wait(hold.parked, answer)
        finally:
            watcher.cancel()
            self._log()

    async def _answer(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)

    def _log(self) -> None:
        """The call's one request-log line: its answer's status (499 when its agent hung up
        first) and its whole duration, passes and waits together."""
        if not self.logged:
            return  # no pass got as far as the log (refused in front of Django)
        duration_ms = round((time.perf_counter() - self.started) * 1000, 1)
        status = self.status if self.status is not None else CLIENT_CLOSED_REQUEST
        log_request({**self.logged, "status": status, "duration_ms": duration_ms})

    async def _read_body(self) -> bool:
        chunks = []
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return False
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.body = b"".join(chunks)
                return True

    async def _watch_connection(self) -> None:
        """Reads the connection's next message, which after the body is only ever its end."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if not self.gone.done():
                    self.gone.set_result(None)
                return

    async def _replay(self) -> dict[str, Any]:
        """Django's `receive` for one pass: the body once, then the connection's end."""
        if self._unread:
            self._unread = False
            return {"type": "http.request", "body": self.body, "more_body": False}
        await asyncio.shield(self.gone)  # Django cancels its listener when the pass is over
        return {"type": "http.disconnect"}

    async def _through_django(self, hold: Hold) -> list[dict[str, Any]]:
        """One pass through Django. Its answer is sent, unless the view parked the call: then
        the answer (the 204 for the wait running out) is kept and returned."""
        kept: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            if hold.parked is not None:
                kept.append(message)
            else:
                await self._answer(message)

        self._unread = True
        scope = {**self.scope, SCOPE_KEY: hold, REQUEST_LOG_SCOPE_KEY: self.logged}
        await self.app(scope, self._replay, send)
        return kept

    async def _wait(self, parked: Parked, answer: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + parked.wait
        key = (parked.node_id, parked.instance_id)
        woken = hub.register(parked.node_id)
        poll = _HeldPoll(request_id=parked.request_id, loop=loop, woken=woken)
        self.gone.add_done_callback(lambda _: woken.set())
        try:
            older = open_polls.open(key, poll)
            if older is not None and older.ended_by == "overlap":
                await run_db(flag_duplicate_instance_of, parked.node_id)
                logger.warning(
                    "node %s: two lease calls at once from agent instance %s",
                    parked.node_id,
                    parked.instance_id,
                )
            if hub.generation(parked.node_id) != parked.generation:
                woken.set()  # announced between the look and registering
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):  # no extra task, unlike wait_for
                        await woken.wait()
                except TimeoutError:
                    break
                if self.gone.done():
                    return  # nobody to answer, and no job may be leased to a closed call
                if poll.ended_by == "overlap":
                    await self._through_django(Hold(overlap=True))
                    return
                if poll.ended_by == "retry":
                    break  # its agent gave up on it and asked again
                woken.clear()
                again = Hold(woken=True)
                kept = await self._through_django(again)
                if again.parked is None:
                    return  # answered: a lease, or a refusal (401, 409, …)
                answer = kept
            for message in answer:
                await self._answer(message)
        finally:
            open_polls.close(key, poll)
            hub.unregister(parked.node_id, woken)
