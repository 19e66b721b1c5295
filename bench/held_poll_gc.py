"""What held long polls cost the garbage collector: uvicorn serving `config.asgi` in this
process, N long polls held from raw sockets, and then the objects the collector tracks per held
poll, how long a full collection takes with them held (against none held, the baseline), and
the unreachable objects each poll leaves once it has ended (what only a collection frees).

    python -m bench.held_poll_gc                  # N = 2,000
    python -m bench.held_poll_gc --held 1000
    python -m bench.held_poll_gc --smoke          # tiny, for CI

A full collection stops every thread of the process, so its length bounds the tail latency of
everything the process serves while that many polls wait (BENCHMARKS.md, finding 5). The server
runs in this process because the figures are read from inside it (`gc.get_objects`). Traffic
goes to 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.common import (
    bench_site,
    database_url,
    emit,
    header,
    log,
    make_nodes,
    raise_open_files_limit,
    ratio,
    stop_on_sigterm,
)
from tests.support.servers import free_port

# The polls are opened by this same process, about 15 ms each while it also serves them, so
# they must all be open before the first one's `--wait` runs out: 2,000 fit in 50 s.
MAX_HELD = 2_500


def _lease_request(token: str, wait: int) -> bytes:
    body = json.dumps(
        {"instance_id": str(uuid.uuid4()), "request_id": uuid.uuid4().hex, "wait": wait}
    ).encode()
    head = (
        "POST /api/v1/agent/lease HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _open_polls(port: int, tokens: list[str], wait: int) -> list[socket.socket]:
    polls = []
    for token in tokens:
        poll = socket.create_connection(("127.0.0.1", port), timeout=10)
        poll.sendall(_lease_request(token, wait))
        polls.append(poll)
    return polls


def _full_collections(runs: int) -> list[float]:
    """Milliseconds of `runs` full collections in a row."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _tracked() -> Counter:
    gc.collect()
    return Counter(type(obj).__name__ for obj in gc.get_objects())


def run(args: argparse.Namespace) -> None:
    url = database_url()
    header("Held long polls and the garbage collector: objects, full-collection pause", url)
    if args.held + 100 > raise_open_files_limit():
        raise SystemExit("RLIMIT_NOFILE is too low for that many sockets")
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        site = bench_site(Path(tmp), LONG_POLL_MAX_WAIT="50")
        server = thread = None
        try:
            tokens = [token for _, token in make_nodes(site, args.held, prefix="gc")]
            os.environ.update(site.env)  # this process becomes the server
            import django
            import uvicorn

            django.setup()  # the hub's module reaches the event store and its models
            from projects.wakeups import hub

            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(
                    "config.asgi:application",
                    host="127.0.0.1",
                    port=port,
                    lifespan="off",
                    log_level="warning",
                )
            )
            thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.1)

            # A first round of short polls warms up every lazy import and cache.
            for poll in _open_polls(port, tokens[:10], wait=1):
                poll.recv(65536)
                poll.close()
            baseline_objects = _tracked()
            baseline_ms = _full_collections(args.runs)

            log(f"holding {args.held} long polls")
            polls = _open_polls(port, tokens, wait=args.wait)
            deadline = time.monotonic() + 60
            while hub.waiting < args.held and time.monotonic() < deadline:
                time.sleep(0.2)
            held = hub.waiting
            if held < args.held * 0.99:
                raise SystemExit(
                    f"only {held} of {args.held} polls held: fewer, or a longer --wait"
                )
            held_objects = _tracked()
            held_ms = _full_collections(args.runs)
            per_poll = (held_objects - baseline_objects).most_common(8)

            log("letting them end (204) and counting what only the collector frees")
            gc.disable()
            gc.collect()
            for poll in polls:
                poll.settimeout(args.wait + 30)
                poll.recv(65536)
                poll.close()
            time.sleep(0.5)
            unreachable = gc.collect()
            gc.enable()

            baseline_total = sum(baseline_objects.values())
            held_total = sum(held_objects.values())
            emit(
                {
                    "held_long_polls": held,
                    "tracked_objects": {"none_held": baseline_total, "held": held_total},
                    "tracked_objects_per_held_poll": round((held_total - baseline_total) / held),
                    "most_per_held_poll": {
                        name: round(count / held, 1) for name, count in per_poll
                    },
                    "full_collection_ms_none_held": round(statistics.median(baseline_ms), 1),
                    "full_collection_ms_held": round(statistics.median(held_ms), 1),
                    "ratio_full_collection_held_to_none": ratio(
                        statistics.median(held_ms), statistics.median(baseline_ms)
                    ),
                    "unreachable_objects_per_ended_poll": round(unreachable / held, 1),
                    "full_size": not args.smoke,
                }
            )
        finally:
            if server is not None:
                server.should_exit = True
            if thread is not None:
                thread.join(timeout=10)
            site.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", type=int, default=2000, help=f"polls held (<= {MAX_HELD})")
    parser.add_argument("--wait", type=int, default=50, help="seconds each poll asks for")
    parser.add_argument("--runs", type=int, default=3, help="full collections timed per state")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args()
    stop_on_sigterm()
    if args.smoke:
        args.held, args.wait, args.runs = 20, 2, 1
    if not 1 <= args.held <= MAX_HELD:
        parser.error(f"--held must be between 1 and {MAX_HELD}")
    run(args)


if __name__ == "__main__":
    main()
