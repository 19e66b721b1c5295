"""Idle long-poll capacity: one server process holding N idle long polls (one agent per node,
none with work): its resident memory, the database connections it holds, and pickup latency
for one more agent while they are held, against the same server holding none (N = 0).

    python -m bench.idle_capacity                          # N = 5,000
    python -m bench.idle_capacity --idle 1000 5000         # several levels, one server
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gfbench python -m bench.idle_capacity
    python -m bench.idle_capacity --smoke                  # tiny, for CI

The idle agents re-poll as soon as a poll ends (204 after `--wait` seconds), their first polls
spread over `--ramp` seconds, so the server also carries the steady re-poll load of a real
fleet (N / wait lease calls a second). Memory is VmRSS (and the peak, VmHWM) of the server from /proc; connections are the
site database's backends in pg_stat_activity (SQLite: the server's descriptors on the database
files). Traffic goes to 127.0.0.1 only; every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.common import (
    AgentConnection,
    ServerProcess,
    bench_site,
    cpu_seconds,
    database_connections,
    database_url,
    emit,
    header,
    log,
    make_nodes,
    metric,
    metrics,
    process_status,
    raise_open_files_limit,
    ratio,
    stop_on_sigterm,
    summary,
)
from bench.pickup_latency import measure

MAX_IDLE = 5_000
DEADLINE_SECONDS = 1800


class IdleFleet:
    """Agents that long-poll and never get work, each on its own connection."""

    def __init__(self, url: str, wait: int):
        self.url, self.wait = url, wait
        self.tasks: list[asyncio.Task] = []
        self.polls = 0
        self.errors = 0
        self.first_error = ""
        self.stopping = False

    async def agent(self, token: str, first_delay: float) -> None:
        connection = AgentConnection(self.url, token)
        instance = str(uuid.uuid4())
        try:
            await asyncio.sleep(first_delay)
            while not self.stopping:
                body = {"instance_id": instance, "request_id": uuid.uuid4().hex, "wait": self.wait}
                try:
                    status, answer = await connection.post(
                        "/api/v1/agent/lease", body, timeout=self.wait + 30
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    self.error(repr(exc))
                    await asyncio.sleep(1 + random.random())
                    continue
                self.polls += 1
                if status != 204:
                    self.error(f"lease answered {status}: {answer}")
                    await asyncio.sleep(1)
        finally:
            connection.close()

    def error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what

    def add(self, tokens: list[str], spread: float) -> None:
        for token in tokens:
            delay = random.uniform(0, spread)
            self.tasks.append(asyncio.create_task(self.agent(token, delay)))

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def wait_until_held(server: ServerProcess, count: int, patience: float) -> float:
    """Until the server reports (on /metrics) 99% of `count` long polls held (the others may
    be between two polls), or `patience` seconds passed: a server that cannot keep up with the
    fleet's re-polls never gets there, and is then measured as it is. Returns how many it holds.
    """
    held = 0.0
    end = time.monotonic() + patience
    next_report = 0.0
    while time.monotonic() < end:
        try:
            held = await asyncio.to_thread(metric, server.url, "gitfleet_long_polls_waiting") or 0.0
        except httpx.HTTPError as exc:
            log(f"/metrics did not answer ({exc!r}); asking again")
            continue
        if held >= count * 0.99:
            return held
        if time.monotonic() > next_report:
            status = process_status(server.process.pid)
            log(
                f"{held:.0f}/{count} held; server RSS {status['VmRSS'] / 1024:.0f} MiB, "
                f"{status['Threads']} threads"
            )
            next_report = time.monotonic() + 10
        await asyncio.sleep(1)
    log(f"only {held:.0f} of {count} long polls held after {patience:.0f} s: measuring anyway")
    return held


async def observe(site, server: ServerProcess, fleet: IdleFleet, seconds: float) -> dict:
    """Samples memory, connections and descriptors while a measurement runs; and how busy the
    server was (CPU, idle re-polls answered)."""
    pid = server.process.pid
    rss, connections, fds = [], [], []
    by_state: dict = {}
    started, cpu, polls = time.monotonic(), cpu_seconds(pid), fleet.polls
    gc_before = await asyncio.to_thread(gc_pauses, server.url)
    end = started + seconds
    while True:
        status = process_status(pid)
        rss.append(status["VmRSS"])
        fds.append(status["fds"])
        seen = await asyncio.to_thread(database_connections, site, pid)
        connections.append(seen["total"])
        if seen["total"] >= max(connections):
            by_state = seen.get("by_state", seen)
        if time.monotonic() >= end:
            break
        await asyncio.sleep(1)
    final = process_status(pid)
    elapsed = time.monotonic() - started
    gc_after = await asyncio.to_thread(gc_pauses, server.url)
    return {
        "rss_mib": round(max(rss) / 1024, 1),
        "rss_peak_mib": round(final["VmHWM"] / 1024, 1),
        "threads": final["Threads"],
        "open_fds": max(fds),
        "db_connections_max": max(connections),
        "db_connections_median": sorted(connections)[len(connections) // 2],
        "db_connections_at_max": by_state,
        "server_cpu_percent": round(100 * (cpu_seconds(pid) - cpu) / elapsed, 1),
        "idle_repolls_per_s": round((fleet.polls - polls) / elapsed, 1),
        # The server's garbage collector meanwhile: full (generation 2) collections, their
        # total pause, and pauses of any generation over 100 ms.
        "gc_full_collections": gc_after["full"] - gc_before["full"],
        "gc_full_pause_s": round(gc_after["full_s"] - gc_before["full_s"], 3),
        "gc_pauses_over_100_ms": gc_after["over_100_ms"] - gc_before["over_100_ms"],
    }


def gc_pauses(server_url: str) -> dict[str, float]:
    """The server's `gitfleet_gc_pause_seconds` histogram, summed up."""
    families = {
        "full": 'gitfleet_gc_pause_seconds_count{generation="2"}',
        "full_s": 'gitfleet_gc_pause_seconds_sum{generation="2"}',
    }
    scraped = metrics(server_url)
    out = {key: scraped.get(name, 0.0) for key, name in families.items()}
    over = 0.0
    for generation in ("0", "1", "2"):
        labels = f'generation="{generation}"'
        total = scraped.get(f'gitfleet_gc_pause_seconds_bucket{{{labels},le="+Inf"}}', 0.0)
        quick = scraped.get(f'gitfleet_gc_pause_seconds_bucket{{{labels},le="0.1"}}', 0.0)
        over += total - quick
    out["over_100_ms"] = over
    return out


async def run_levels(args: argparse.Namespace, site, server, user_token: str, nodes) -> None:
    probe, idle_nodes = nodes[:1], nodes[1:]
    fleet = IdleFleet(server.url, args.wait)
    deadline = time.monotonic() + args.deadline
    baseline = None
    held = 0.0
    try:
        for level in [0, *args.idle]:
            new = idle_nodes[len(fleet.tasks) : level]
            if new:
                log(f"opening {len(new)} more idle long polls (total {level})")
                fleet.add([token for _, token in new], spread=min(args.wait, args.ramp))
                patience = min(args.ramp + 2 * args.wait + 30, deadline - time.monotonic())
                held = await wait_until_held(server, level, patience)
                await asyncio.sleep(args.settle)
            log(f"measuring pickup with {level} idle long polls held")
            # Samples spread over one wait period, so that they meet the idle fleet's re-polls.
            gap = max(0.05, args.wait / args.samples)
            observer = asyncio.create_task(observe(site, server, fleet, args.samples * gap))
            latencies = await measure(
                server.url,
                user_token,
                probe,
                long_poll=True,
                samples=args.samples,
                interval=3.0,
                gap=gap,
                # A server that cannot keep up answers slowly: what it managed by then counts.
                deadline_seconds=min(
                    args.samples * gap + 2 * args.wait + 60, max(60, deadline - time.monotonic())
                ),
            )
            seen = await observer
            try:
                held_after = await asyncio.to_thread(
                    metric, server.url, "gitfleet_long_polls_waiting"
                )
            except httpx.HTTPError:
                held_after = None
            row = {
                "idle_long_polls": level,
                "held_before": held if level else 0,
                "held_after": held_after,
                "pickup": summary(latencies),
                **seen,
                "idle_polls_answered": fleet.polls,
                "client_errors": fleet.errors,
            }
            if baseline is None:
                baseline = row
            else:
                row["ratio_pickup_p99_to_n0"] = ratio(
                    row["pickup"].get("p99_ms"), baseline["pickup"].get("p99_ms")
                )
                row["ratio_rss_to_n0"] = ratio(row["rss_mib"], baseline["rss_mib"])
                row["kib_per_idle_poll"] = round(
                    (row["rss_mib"] - baseline["rss_mib"]) * 1024 / level, 1
                )
                row["targets"] = {
                    "rss_at_most_300_mib": row["rss_mib"] <= 300,
                    "db_connections_at_most_5": row["db_connections_max"] <= 5,
                    "pickup_p99_at_most_100_ms": row["pickup"].get("p99_ms", 1e9) <= 100,
                    "all_held": bool(held_after and held_after >= level * 0.99),
                    "full_size": level >= MAX_IDLE,
                }
            if fleet.errors:
                row["first_client_error"] = fleet.first_error
            emit(row)
    finally:
        await fleet.stop()


def run(args: argparse.Namespace) -> None:
    url = database_url()
    limit = raise_open_files_limit()
    header("Idle long-poll capacity: memory, DB connections and pickup while N polls wait", url)
    if max(args.idle) + 100 > limit:
        raise SystemExit(f"RLIMIT_NOFILE is {limit}: too low for {max(args.idle)} connections")
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        # A pool of 4 (the agent API's 4 database threads) plus the LISTEN connection: the
        # process can never hold more than 5 connections, however many polls wait.
        site = bench_site(
            Path(tmp), LONG_POLL_MAX_WAIT=str(max(50, args.wait)), DB_POOL_MAX_SIZE="4"
        )
        server = None
        try:
            user_token = site.create_user_token("bench")
            log(f"registering {max(args.idle) + 1} nodes")
            nodes = make_nodes(site, max(args.idle) + 1, prefix="idle")
            server = ServerProcess(site)
            log(f"server pid {server.process.pid}, RLIMIT_NOFILE {limit}")
            asyncio.run(run_levels(args, site, server, user_token, nodes))
        finally:
            if server is not None:
                server.stop()
            site.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--idle", type=int, nargs="+", default=[MAX_IDLE], help=f"levels of N (≤ {MAX_IDLE})"
    )
    parser.add_argument("--wait", type=int, default=50, help="seconds each idle poll asks for")
    parser.add_argument("--ramp", type=float, default=40, help="seconds to open new polls over")
    parser.add_argument("--settle", type=float, default=5, help="seconds after all are held")
    parser.add_argument("--samples", type=int, default=100, help="pickups measured per level")
    parser.add_argument("--deadline", type=float, default=DEADLINE_SECONDS, help="seconds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args()
    stop_on_sigterm()
    if args.smoke:
        args.idle, args.wait, args.ramp, args.settle, args.samples = [20], 2, 1, 0.5, 5
        args.deadline = 120
    if not 0 < max(args.idle) <= MAX_IDLE or min(args.idle) <= 0:
        parser.error(f"--idle levels must be between 1 and {MAX_IDLE}")
    args.idle = sorted(set(args.idle))
    run(args)


if __name__ == "__main__":
    main()
