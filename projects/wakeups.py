"""Waking the long polls of a node when work for it may have appeared.

Writers call `announce(node_id)` inside their transaction. On PostgreSQL that is a
`pg_notify('gitfleet_jobs', node_id)`, delivered to every server process when the transaction
commits; each process runs one `LISTEN` connection and fans notifications out to its waiting
requests. In every engine the writing process also wakes its own waiters on commit. Waiters
re-check on a timer as well, because a notification is lost while a listener reconnects and
SQLite has no way to hear other processes: every `LONG_POLL_RECHECK_SECONDS` one task per
process asks the database which of the nodes with waiters have leasable work (one query,
however many waiters) and wakes just those.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from core.async_db import run_db
from projects.eventstore import Appended, on_append
from projects.fixed_sql import Statement
from projects.selectors import nodes_with_leasable_jobs

logger = logging.getLogger(__name__)

CHANNEL = "gitfleet_jobs"
_POSTGRESQL = {"django.db.backends.postgresql", "core.postgresql"}
ALL_NODES = "*"
# Seconds between the listener's reconnection attempts: doubling from the first to the most.
_FIRST_BACKOFF = 0.2
_MAX_BACKOFF = 2.0
# The watch API's channels share the hub and the NOTIFY channel with the nodes' long polls:
# `project:<id>` wakes watchers of one project, `feed` the watchers of the staff feed.
FEED = "feed"
PROJECT_PREFIX = "project:"


def project_channel(project_id: str) -> str:
    return f"{PROJECT_PREFIX}{project_id}"


def announce_events(project_id: str) -> list[Statement]:
    """Wakes the watchers of `project_id` and of the feed once the current transaction commits.

    An append listener (`eventstore.on_append`): on PostgreSQL it returns its NOTIFY, which the
    append sends with its INSERT, in one round trip, as this runs in every append, the agents'
    hot path included.
    """
    channels = [project_channel(project_id), FEED]
    transaction.on_commit(lambda: [hub.wake(channel) for channel in channels])
    if connection.vendor != "postgresql":
        return []
    return [
        (
            "SELECT pg_notify(%s, %s), pg_notify(%s, %s)",
            [CHANNEL, channels[0], CHANNEL, channels[1]],
        )
    ]


def announce(node_id: str) -> None:
    """Wakes the long polls of `node_id` once the current transaction commits."""
    node_id = str(node_id)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, node_id])
    transaction.on_commit(lambda: hub.wake(node_id))


def announce_if_leasable(appended: Appended) -> None:
    """Announces the project's node when one of `appended`'s events may have made a job of it
    leasable (`DomainEvent.frees_work`)."""
    if any(recorded.event.frees_work for recorded in appended.events):
        announce(appended.state.node_id)


class Hub:
    """Per-process registry of waiting long polls, keyed by node id. Thread-safe `wake`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = (
            defaultdict(set)
        )
        self._generations: dict[str, int] = defaultdict(int)
        self._listener: asyncio.Task | None = None
        self._rechecks: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self.listener_connected = False

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    def register(self, node_id: str) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            self._waiters[str(node_id)].add((loop, event))
        self._ensure_listener(loop)
        self._ensure_recheck(loop)
        return event

    def unregister(self, node_id: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(str(node_id))
            if waiters is None:
                return
            waiters.difference_update({w for w in waiters if w[1] is event})
            if not waiters:
                del self._waiters[str(node_id)]

    def generation(self, node_id: str) -> int:
        """Counts the wakes `node_id` has had. A request that looked for work before it
        registered compares this number from before its look with the one after registering:
        a difference means work may have appeared in between, unseen."""
        with self._lock:
            return self._generations[str(node_id)] + self._generations[ALL_NODES]

    def wake(self, node_id: str) -> None:
        with self._lock:
            self._generations[node_id] += 1
            if node_id == ALL_NODES:
                targets = [w for waiters in self._waiters.values() for w in waiters]
            else:
                targets = list(self._waiters.get(node_id, ()))
        for loop, event in targets:
            if loop.is_closed():
                continue
            loop.call_soon_threadsafe(event.set)

    def waiting_nodes(self, loop: asyncio.AbstractEventLoop) -> list[str]:
        with self._lock:
            return [
                node_id
                for node_id, waiters in self._waiters.items()
                if node_id != FEED
                and not node_id.startswith(PROJECT_PREFIX)
                and any(waiter_loop is loop for waiter_loop, _ in waiters)
            ]

    # --- The periodic re-check -----------------------------------------------------------------

    def _ensure_recheck(self, loop: asyncio.AbstractEventLoop) -> None:
        task = self._rechecks.get(loop)
        if task is None or task.done():
            self._rechecks = {
                other: other_task
                for other, other_task in self._rechecks.items()
                if not other_task.done()
            }
            self._rechecks[loop] = loop.create_task(self._recheck(loop), name="gitfleet-recheck")

    async def _recheck(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await asyncio.sleep(settings.LONG_POLL_RECHECK_SECONDS)
            waiting = self.waiting_nodes(loop)
            if not waiting:
                continue
            try:
                due = await run_db(nodes_with_leasable_jobs, waiting)
            except Exception:
                logger.warning("long-poll re-check failed; trying again", exc_info=True)
                continue
            for node_id in due:
                self.wake(node_id)

    # --- PostgreSQL listener ------------------------------------------------------------------

    def _ensure_listener(self, loop: asyncio.AbstractEventLoop) -> None:
        # The engine from the settings, not `connection.vendor`: on the event loop every
        # request's context would get a database wrapper of its own just to answer that.
        if connections.settings[DEFAULT_DB_ALIAS]["ENGINE"] not in _POSTGRESQL:
            return
        listener = self._listener
        if listener is not None and not listener.done() and listener.get_loop() is loop:
            return
        self._listener = loop.create_task(self._listen(), name="gitfleet-listener")

    async def _listen(self) -> None:
        """Holds the `LISTEN` connection and reconnects by itself, at most `_MAX_BACKOFF` apart,
        whenever it is lost; once back, every waiter re-checks for work announced meanwhile."""
        import psycopg

        backoff = _FIRST_BACKOFF
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    _conninfo(), autocommit=True, connect_timeout=10
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listener_connected = True
                    backoff = _FIRST_BACKOFF
                    logger.info("job listener connected")
                    self.wake(ALL_NODES)
                    # A restart closes the connection: psycopg raises, and the loop reconnects.
                    async for notification in conn.notifies():
                        self.wake(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A restart is expected now and then: one line, no traceback.
                logger.warning("job listener lost its connection (%s); reconnecting", exc)
            finally:
                self.listener_connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)


def _conninfo() -> str:
    from psycopg.conninfo import make_conninfo

    settings_dict = connection.settings_dict
    params = {
        "dbname": settings_dict["NAME"],
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": str(settings_dict["PORT"]) if settings_dict.get("PORT") else None,
        "application_name": "gitfleet-listener",
    }
    return make_conninfo(**{key: value for key, value in params.items() if value})


hub = Hub()
on_append(announce_events)
