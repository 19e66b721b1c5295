"""The server's own timer: expires lapsed leases and stale queued jobs, so no separate scheduler
process is needed. Each ASGI server process runs one sweeper thread (started by `config.asgi`);
several processes sweeping at once is safe, since every expiry goes through the decider and a
loser of a race simply finds nothing left to do.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from projects.leases import sweep

logger = logging.getLogger(__name__)

_started = threading.Lock()
_thread: threading.Thread | None = None
# Other apps' periodic work (scheduled pulls, outgoing notifications), registered by their
# `AppConfig.ready`, so that this module imports none of them.
_tasks: list[Callable[[], Any]] = []


def register(task: Callable[[], Any]) -> None:
    """Runs `task` after every sweep of this process; each task is safe in several processes."""
    if task not in _tasks:
        _tasks.append(task)


def _run(stop: threading.Event) -> None:
    while not stop.wait(settings.SWEEP_SECONDS * random.uniform(0.8, 1.2)):  # noqa: S311
        try:
            close_old_connections()
            done = sweep()
            if any(done.values()):
                logger.info("sweep: %s", done)
        except Exception:
            logger.exception("sweep failed; trying again next round")
        for task in list(_tasks):
            try:
                task()
            except Exception:
                logger.exception("%s failed; trying again next round", task.__qualname__)
        connection.close()


def start() -> threading.Event:
    """Starts this process's sweeper once; returns the event that stops it."""
    global _thread
    stop = threading.Event()
    with _started:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(
                target=_run, args=(stop,), name="gitfleet-sweeper", daemon=True
            )
            _thread.start()
    return stop
