"""Database work from async code: on a small, bounded thread pool that hands its connection back
after each step (PostgreSQL), so that thousands of waiting requests hold no thread and no
connection.

Django's own `sync_to_async` runs each request's database work on a thread of that request,
whose connection lives until the request ends; a long poll would keep it for its whole wait.

The pool's queue is where a process that takes on more than it can do falls behind while its
event loop still runs on time: `queue_delay` says how long the oldest step not yet started has
waited (`gitfleet_db_queue_wait_seconds`). A step whose caller stopped waiting before it started
is never run: the agent API cancels a call whose agent hung up (`config.handlers`).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection

T = TypeVar("T")

# On SQLite a connection is a file handle, dear to open (a new one per step was a tenth of an
# idle long poll's CPU) and free to keep: each pool thread keeps its own between steps. On
# PostgreSQL the step hands its connection back to the shared pool instead.
_KEEP_CONNECTIONS = connection.vendor == "sqlite"

_pool = ThreadPoolExecutor(max_workers=settings.AGENT_DB_THREADS, thread_name_prefix="async-db")


class _Waiting:
    """A step submitted to the pool: when, and whether it has stopped waiting (it started, or
    its caller stopped waiting for it)."""

    __slots__ = ("over", "since")

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.over = False


# The steps in the order they were submitted, which is the order the pool starts them in; the
# ones that stopped waiting are dropped from the front.
_waiting: deque[_Waiting] = deque()
_waiting_lock = threading.Lock()


def _oldest_waiting() -> _Waiting | None:
    with _waiting_lock:
        while _waiting and _waiting[0].over:
            _waiting.popleft()
        return _waiting[0] if _waiting else None


def queue_delay() -> float:
    """Seconds the oldest step still waiting for one of the pool's threads has waited; 0 when
    none is waiting."""
    oldest = _oldest_waiting()
    return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest.since)


def _step(waiting: _Waiting, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    waiting.over = True
    try:
        return fn(*args, **kwargs)
    finally:
        if not _KEEP_CONNECTIONS or connection.in_atomic_block or connection.errors_occurred:
            connection.close()  # back to the pool (PostgreSQL), or closed


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs `fn(*args, **kwargs)` on the database thread pool and returns what it returns."""
    loop = asyncio.get_running_loop()
    waiting = _Waiting()
    _waiting.append(waiting)
    try:
        return await loop.run_in_executor(
            _pool, functools.partial(_step, waiting, fn, *args, **kwargs)
        )
    finally:
        waiting.over = True  # also when cancelled before it started
        _oldest_waiting()  # drops the steps that are over from the front
