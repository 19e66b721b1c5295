"""Database work from async code: on a small, bounded thread pool that hands its connection back
after each step (PostgreSQL), so that thousands of waiting requests hold no thread and no
connection.

Django's own `sync_to_async` runs each request's database work on a thread of that request,
whose connection lives until the request ends; a long poll would keep it for its whole wait.
"""

from __future__ import annotations

import asyncio
import functools
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


def _step(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        if not _KEEP_CONNECTIONS or connection.in_atomic_block or connection.errors_occurred:
            connection.close()  # back to the pool (PostgreSQL), or closed


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs `fn(*args, **kwargs)` on the database thread pool and returns what it returns."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(_step, fn, *args, **kwargs))
