"""Event log at scale: append 1,000,000 events across 10,000 projects through the real append
path, time `manage.py rebuild_projections --check` on them (against a baseline: a raw SELECT of
every event, JSON parsed, in the same order), then time the status and events endpoints of a
project with 10,000 events (against a project with 3).

    python -m bench.eventlog_scale                       # full size: 10,000 x 100 events
    python -m bench.eventlog_scale --smoke               # tiny, for CI
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gfbench python -m bench.eventlog_scale

Events are appended by `bench.djangoside fill-eventlog`: `decide` on each project's state, then
`projects.eventstore.append` of `--events-per-append` events at a time, which stores them and
folds them into the projections exactly as the server does. Traffic goes to 127.0.0.1 only;
every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.common import (
    ROOT,
    ServerProcess,
    ServerSite,
    bench_site,
    database_url,
    emit,
    header,
    log,
    ratio,
    run_django,
    site_query,
    stop_on_sigterm,
    summary,
)

DEADLINE_SECONDS = 3600
EVENT_COLUMNS = "position, project_id, version, type, data, meta, recorded_at"


def scan_events(site: ServerSite) -> tuple[int, float]:
    """Every event, in the order a replay reads them, with its JSON parsed: the floor for
    any rebuild. Returns (rows, seconds)."""
    sql = f"SELECT {EVENT_COLUMNS} FROM projects_event ORDER BY project_id, version"  # noqa: S608
    rows = 0
    started = time.perf_counter()
    if site.postgres:
        import psycopg

        with psycopg.connect(site.database_url) as conn, conn.cursor(name="scan") as cursor:
            cursor.itersize = 5000
            cursor.execute(sql)
            for _row in cursor:  # psycopg parses jsonb itself
                rows += 1
    else:
        path = urlsplit(site.database_url).path
        with contextlib.closing(sqlite3.connect(path)) as conn:
            cursor = conn.execute(sql)
            while batch := cursor.fetchmany(5000):
                for row in batch:
                    json.loads(row[4])
                    json.loads(row[5])
                rows += len(batch)
    return rows, time.perf_counter() - started


def timed_manage(site: ServerSite, *args: str, timeout: float) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def endpoint_latency(
    url: str, token: str, big: dict, small: dict, samples: int, deadline: float
) -> dict[str, list[float]]:
    """Round-robin GETs of each endpoint, so that noise hits all of them alike."""
    big_id, small_id = big["id"], small["id"]
    last_page = max(0, big["events"] - 100)
    targets = {
        "status_big": f"/api/v1/projects/{big_id}/status",
        "status_small": f"/api/v1/projects/{small_id}/status",
        "events_big_first_page": f"/api/v1/projects/{big_id}/events",
        "events_big_last_page": f"/api/v1/projects/{big_id}/events?offset={last_page}",
        "events_small": f"/api/v1/projects/{small_id}/events",
    }
    timings: dict[str, list[float]] = {name: [] for name in targets}
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        for path in targets.values():  # warm up: connection, caches, first-request imports
            client.get(path).raise_for_status()
        count = client.get(targets["events_big_first_page"]).json()["count"]
        if count != big["events"]:
            raise RuntimeError(f"the big project shows {count} events, not {big['events']}")
        for _ in range(samples):
            if time.monotonic() > deadline:
                break
            for name, path in targets.items():
                started = time.perf_counter()
                response = client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path} answered {response.status_code}")
                timings[name].append(elapsed)
    return timings


def run(args: argparse.Namespace) -> None:
    url = database_url()
    header("Event log at scale: append, rebuild_projections, status and events endpoints", url)
    deadline = time.monotonic() + args.deadline
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        site = bench_site(Path(tmp))
        server = None
        try:
            token = site.create_user_token("bench")
            site.create_node("bench-node")
            log(f"appending {args.projects} x {args.events_per_project} events")
            fill = run_django(
                site,
                "fill-eventlog",
                "--owner=bench",
                "--node=bench-node",
                f"--projects={args.projects}",
                f"--events-per-project={args.events_per_project}",
                f"--events-per-append={args.events_per_append}",
                f"--big-events={args.big_events}",
                f"--deadline={max(1, deadline - time.monotonic())}",
                timeout=args.deadline + 120,
            )
            total = site_query(site, "SELECT count(*) FROM projects_event")[0][0]
            emit({"phase": "append", **fill, "events_in_log": total})

            scans, rebuilds = [], []
            startup, _ = timed_manage(site, "rebuild_projections", "--help", timeout=120)
            for run_index in range(args.rebuild_runs):
                if time.monotonic() > deadline:
                    break
                rows, seconds = scan_events(site)
                scans.append(seconds)
                log(f"raw scan {run_index + 1}: {rows} events in {seconds:.2f} s")
                seconds, output = timed_manage(
                    site,
                    "rebuild_projections",
                    "--check",
                    timeout=max(60, deadline - time.monotonic()),
                )
                rebuilds.append(seconds)
                log(f"rebuild {run_index + 1}: {seconds:.2f} s: {output.strip().splitlines()[-1]}")
            rebuild_median = sorted(rebuilds)[len(rebuilds) // 2]
            scan_median = sorted(scans)[len(scans) // 2]
            row = {
                "phase": "rebuild",
                "events": total,
                "runs": len(rebuilds),
                "rebuild_check_s": summary([s * 1000 for s in rebuilds]),
                "process_startup_s": round(startup, 3),
                "rebuild_events_per_s": round(total / rebuild_median),
                "rebuild_events_per_s_without_startup": round(
                    total / max(1e-9, rebuild_median - startup)
                ),
                "raw_select_s": summary([s * 1000 for s in scans]),
                "raw_select_events_per_s": round(total / scan_median),
                "ratio_rebuild_to_raw_select_time": ratio(rebuild_median, scan_median, 1),
                "output": output.strip().splitlines()[-1],
            }
            emit(row)

            server = ServerProcess(site)
            timings = endpoint_latency(
                server.url,
                token,
                fill["big_project"],
                fill["small_project"],
                args.samples,
                deadline,
            )
            stats = {name: summary(values) for name, values in timings.items()}
            emit(
                {
                    "phase": "endpoints",
                    "big_project_events": fill["big_project"]["events"],
                    **stats,
                    "ratio_status_median_big_to_small": ratio(
                        stats["status_big"].get("median_ms"), stats["status_small"].get("median_ms")
                    ),
                    "ratio_events_median_big_to_small": ratio(
                        stats["events_big_first_page"].get("median_ms"),
                        stats["events_small"].get("median_ms"),
                    ),
                }
            )
            emit(
                {
                    "targets": {
                        "rebuild_at_least_50000_events_per_s": row["rebuild_events_per_s"] >= 50000,
                        "status_p99_at_most_20_ms_with_10000_events": stats["status_big"].get(
                            "p99_ms", 1e9
                        )
                        <= 20,
                    },
                    "full_size": fill["big_project"]["events"] >= 10000
                    and total >= 1_000_000
                    and not fill["partial"],
                }
            )
        finally:
            if server is not None:
                server.stop()
            site.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--events-per-project", type=int, default=100)
    parser.add_argument(
        "--events-per-append", type=int, default=25, help="events in each append call"
    )
    parser.add_argument("--big-events", type=int, default=10_000)
    parser.add_argument("--rebuild-runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200, help="GETs of each endpoint")
    parser.add_argument("--deadline", type=float, default=DEADLINE_SECONDS, help="seconds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args()
    stop_on_sigterm()
    if args.smoke:
        args.projects, args.events_per_project, args.big_events = 20, 20, 300
        args.rebuild_runs, args.samples, args.deadline = 1, 20, 120
    run(args)


if __name__ == "__main__":
    main()
