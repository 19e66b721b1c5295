"""What a benchmark does inside Django on a site's database, through the real write path:
`projects.services` and `projects.eventstore.append`, never raw inserts, so that the projections
are the ones the server would have written.

    python -m bench.djangoside queue-clones --owner bench --node NAME=INSTANCE_ID … --per-node 200
    python -m bench.djangoside fill-eventlog --owner bench --node NAME --projects 10000 …

Run with a site's environment (`bench.common.run_django`). Progress goes to stderr; the last
line of stdout is one JSON object with what was done and how long it took.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import uuid
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()  # this module is a script: Django first, then the project's modules

from django.contrib.auth import get_user_model  # noqa: E402
from django.utils import timezone  # noqa: E402

from nodes.models import Node  # noqa: E402
from nodes.services import record_presence  # noqa: E402
from projects import domain  # noqa: E402
from projects.eventstore import append  # noqa: E402
from projects.services import request_clone  # noqa: E402

PROGRESS_SECONDS = 10


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- queue-clones -------------------------------------------------------------------------------


def queue_clones(*, owner: str, nodes: list[str], per_node: int, deadline: float) -> dict:
    """Marks each node online under the agent instance that will lease from it, then queues
    `per_node` clones on each, round-robin (as `POST /projects/clone` would, minus HTTP)."""
    user = get_user_model().objects.get(username=owner)
    online = []
    for spec in nodes:
        name, _, instance_id = spec.partition("=")
        node = Node.objects.get(name=name)
        record_presence(node=node, instance_id=instance_id or None)
        node.refresh_from_db()
        online.append(node)
    started = time.perf_counter()
    end = time.monotonic() + deadline
    queued = 0
    for index in range(per_node):
        if time.monotonic() > end:
            break
        for node in online:
            request_clone(
                owner=user,
                name=f"q{index:05d}-{node.name}",
                git_url="https://git.example.com/bench/repo.git",
                branch="main",
                node=node,
            )
            queued += 1
    seconds = time.perf_counter() - started
    return {
        "queued": queued,
        "seconds": round(seconds, 3),
        "clones_per_s": round(queued / seconds, 1) if seconds else None,
        "partial": queued < per_node * len(online),
    }


# --- fill-eventlog ------------------------------------------------------------------------------


class Stream:
    """One project's stream, written the way the server writes: `decide` on the state, then
    `eventstore.append` of what was decided, `batch` events per append."""

    LEASE_SECONDS = 30 * 86400  # nothing may expire while the benchmark looks

    def __init__(self, project_id: str, *, batch: int, meta: dict[str, Any]):
        self.id, self.batch, self.meta = project_id, batch, meta
        self.stored = domain.initial_state(project_id)  # as appended so far
        self.decided = self.stored  # with the events decided since
        self.pending: list = []
        self.appends = 0
        self.events = 0

    def do(self, command) -> None:
        new = domain.decide(self.decided, command)
        now = timezone.now()
        base = self.decided.version
        self.decided = domain.fold(
            self.decided,
            [
                domain.Recorded(e, version=base + i, recorded_at=now)
                for i, e in enumerate(new, start=1)
            ],
        )
        self.pending += new
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        appended = append(
            self.id, self.stored.version, self.pending, meta=self.meta, state=self.stored
        )
        self.appends += 1
        self.events += len(appended.events)
        self.stored = self.decided = appended.state
        self.pending = []

    # The commands of a clone that ran for a while and reported progress.

    def create(self, *, owner_id: int, name: str, node_id: str) -> str:
        job_id = str(uuid.uuid4())
        self.do(
            domain.CreateProject(
                owner_id=owner_id,
                name=name,
                node_id=node_id,
                git_url=f"https://git.example.com/bench/{name}.git",
                branch="main",
                depth=None,
                job_id=job_id,
                max_attempts=3,
            )
        )
        return job_id

    def lease(self, job_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self.do(
            domain.LeaseJob(
                job_id=job_id,
                lease_token=token,
                request_id=uuid.uuid4().hex,
                instance_id=str(uuid.uuid4()),
                now=timezone.now(),
                lease_seconds=self.LEASE_SECONDS,
            )
        )
        return token

    def renew(self, job_id: str, token: str, step: int) -> None:
        progress = {
            "phase": "receiving",
            "percent": step % 101,
            "objects": step * 17,
            "bytes": step * 65536,
        }
        self.do(
            domain.RenewLease(
                job_id=job_id,
                lease_token=token,
                now=timezone.now(),
                lease_seconds=self.LEASE_SECONDS,
                progress=progress,
            )
        )

    def succeed(self, job_id: str, token: str, target_path: str) -> None:
        result = {
            "commit": secrets.token_hex(20),
            "branch": "main",
            "local_path": f"/data/projects/{target_path}",
            "duration_ms": 1234,
            "size_bytes": 456789,
        }
        self.do(
            domain.CompleteJob(job_id=job_id, lease_token=token, now=timezone.now(), result=result)
        )


def _leased_project(
    *, owner_id: int, node_id: str, name: str, events: int, batch: int, meta: dict
) -> Stream:
    """A project whose clone is still running: created, queued, leased, then renewed until
    the stream holds `events` events (at least 3)."""
    stream = Stream(str(uuid.uuid4()), batch=batch, meta=meta)
    job_id = stream.create(owner_id=owner_id, name=name, node_id=node_id)
    token = stream.lease(job_id)
    for step in range(max(0, events - 3)):
        stream.renew(job_id, token, step)
    stream.flush()
    return stream


def fill_eventlog(
    *,
    owner: str,
    node_name: str,
    projects: int,
    events_per_project: int,
    batch: int,
    big_events: int,
    deadline: float,
) -> dict:
    """`projects` finished clones of `events_per_project` events each (created, queued, leased,
    renewed with progress, succeeded), then a project with `big_events` events (a clone leased
    and renewed that many times) and a small one with 3, both owned by `owner`."""
    if events_per_project < 4:
        raise SystemExit("--events-per-project must be at least 4")
    user = get_user_model().objects.get(username=owner)
    node = Node.objects.get(name=node_name)
    meta = {"user_id": user.pk, "request_id": "bench-fill"}
    started = time.perf_counter()
    end = time.monotonic() + deadline
    next_report = time.monotonic() + PROGRESS_SECONDS
    events = appends = done = 0
    for index in range(projects):
        if time.monotonic() > end:
            break
        name = f"p{index:06d}"
        stream = Stream(str(uuid.uuid4()), batch=batch, meta=meta)
        job_id = stream.create(owner_id=user.pk, name=name, node_id=str(node.pk))
        token = stream.lease(job_id)
        for step in range(events_per_project - 4):
            stream.renew(job_id, token, step)
        stream.succeed(job_id, token, f"{user.pk}_{name}")
        stream.flush()
        events += stream.events
        appends += stream.appends
        done += 1
        if time.monotonic() > next_report:
            rate = events / (time.perf_counter() - started)
            _progress(f"fill: {done}/{projects} projects, {events} events, {rate:,.0f} events/s")
            next_report = time.monotonic() + PROGRESS_SECONDS
    fill_seconds = time.perf_counter() - started

    big = _leased_project(
        owner_id=user.pk,
        node_id=str(node.pk),
        name="big",
        events=big_events,
        batch=batch,
        meta=meta,
    )
    small = _leased_project(
        owner_id=user.pk, node_id=str(node.pk), name="small", events=3, batch=batch, meta=meta
    )
    return {
        "projects": done,
        "events": events,
        "appends": appends,
        "events_per_append": batch,
        "seconds": round(fill_seconds, 3),
        "events_per_s": round(events / fill_seconds, 1) if fill_seconds else None,
        "partial": done < projects,
        "big_project": {"id": big.id, "events": big.events},
        "small_project": {"id": small.id, "events": small.events},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    queue = commands.add_parser("queue-clones")
    queue.add_argument("--owner", required=True)
    queue.add_argument("--node", action="append", required=True, help="NAME=AGENT_INSTANCE_ID")
    queue.add_argument("--per-node", type=int, required=True)
    queue.add_argument("--deadline", type=float, default=600)
    fill = commands.add_parser("fill-eventlog")
    fill.add_argument("--owner", required=True)
    fill.add_argument("--node", required=True)
    fill.add_argument("--projects", type=int, required=True)
    fill.add_argument("--events-per-project", type=int, required=True)
    fill.add_argument("--events-per-append", type=int, default=25)
    fill.add_argument("--big-events", type=int, required=True)
    fill.add_argument("--deadline", type=float, default=3600)
    args = parser.parse_args()

    if args.command == "queue-clones":
        result = queue_clones(
            owner=args.owner, nodes=args.node, per_node=args.per_node, deadline=args.deadline
        )
    else:
        result = fill_eventlog(
            owner=args.owner,
            node_name=args.node,
            projects=args.projects,
            events_per_project=args.events_per_project,
            batch=args.events_per_append,
            big_events=args.big_events,
            deadline=args.deadline,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
