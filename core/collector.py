"""How a server process runs Python's garbage collector: full collections on a timer.

Python starts a full (generation 2) collection whenever the objects that survived into the
oldest generation since the last one exceed a quarter of those already there. A server holding
thousands of long polls keeps replacing long-lived objects, so that rule fired every ten
seconds or so, and each pass, which walks every tracked object with every thread stopped,
paused the process for a large part of a second (BENCHMARKS.md, finding 5). Almost nothing the
server makes is both cyclic and long-lived garbage: a request's cycles die young and the young
collections, which still run by Python's own rule, free them. So the oldest generation is
collected on a timer instead (`GC_FULL_COLLECTION_SECONDS`), and the objects of the started
process, which live as long as it does, are frozen out of every pass.
"""

from __future__ import annotations

import gc
import logging
import threading

logger = logging.getLogger(__name__)

# A count of young collections that Python's own rule never reaches between two timed passes.
_NEVER = 1_000_000_000

_started = threading.Lock()
_thread: threading.Thread | None = None


def collect_on_a_timer(every_seconds: float) -> threading.Event | None:
    """Freezes what the started process holds, stops automatic full collections and runs one
    every `every_seconds` on a thread of its own. 0 keeps Python's own rule. Returns the event
    that stops the timer (None when there is none)."""
    global _thread
    if every_seconds <= 0:
        return None
    stop = threading.Event()
    with _started:
        if _thread is not None and _thread.is_alive():
            return None
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _NEVER)
        _thread = threading.Thread(
            target=_run, args=(every_seconds, stop), name="gitfleet-gc", daemon=True
        )
        _thread.start()
    return stop


def _run(every_seconds: float, stop: threading.Event) -> None:
    while not stop.wait(every_seconds):
        found = gc.collect()
        logger.debug("full collection: %d unreachable objects", found)
