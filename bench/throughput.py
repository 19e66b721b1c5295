"""Throughput: lease + complete cycles per second with 32 concurrent synthetic agents (one node
each) on jobs queued beforehand, against 1 agent as the baseline; and events appended per
second while they run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gfbench python -m bench.throughput
    python -m bench.throughput --smoke                     # tiny, for CI (SQLite by default)

The clones are queued beforehand through `projects.services.request_clone` (no HTTP, see
`bench.djangoside queue-clones`), so the phase measured is only the agents' part: `POST lease`
(wait 0: work is there) then `POST complete`, as fast as each agent can go. Traffic goes to
127.0.0.1 only; every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    AgentConnection,
    ServerProcess,
    bench_site,
    cpu_seconds,
    database_url,
    emit,
    header,
    log,
    make_nodes,
    ratio,
    run_django,
    server_processes,
    site_query,
    stop_on_sigterm,
    success_report,
    summary,
)


@dataclass
class Phase:
    agents: int
    lease_ms: list[float] = field(default_factory=list)
    complete_ms: list[float] = field(default_factory=list)
    cycle_ms: list[float] = field(default_factory=list)
    ran_dry: int = 0  # agents whose queue emptied before the deadline

    @property
    def cycles(self) -> int:
        return len(self.cycle_ms)


async def agent(
    url: str, token: str, instance_id: str, phase: Phase, *, end: float, max_cycles: int
) -> None:
    connection = AgentConnection(url, token)
    try:
        for _ in range(max_cycles):
            if time.monotonic() >= end:
                return
            started = time.perf_counter()
            body = {"instance_id": instance_id, "request_id": uuid.uuid4().hex, "wait": 0}
            status, grant = await connection.post("/api/v1/agent/lease", body)
            leased = time.perf_counter()
            if status == 204:
                phase.ran_dry += 1
                return
            if status != 200:
                raise RuntimeError(f"lease answered {status}: {grant}")
            job_id = grant["job"]["id"]
            status, answer = await connection.post(
                f"/api/v1/agent/jobs/{job_id}/complete", success_report(grant["lease"]["token"])
            )
            if status != 200:
                raise RuntimeError(f"complete answered {status}: {answer}")
            done = time.perf_counter()
            phase.lease_ms.append((leased - started) * 1000)
            phase.complete_ms.append((done - leased) * 1000)
            phase.cycle_ms.append((done - started) * 1000)
    finally:
        connection.close()


async def run_phase(
    url: str, fleet: list[tuple[str, str]], instances: dict[str, str], seconds: float, jobs: int
) -> tuple[Phase, float]:
    phase = Phase(agents=len(fleet))
    started = time.perf_counter()
    end = time.monotonic() + seconds
    await asyncio.gather(
        *(
            agent(url, token, instances[name], phase, end=end, max_cycles=jobs)
            for name, token in fleet
        )
    )
    return phase, time.perf_counter() - started


async def warm_up(url: str, nodes: list[tuple[str, str]], instances: dict[str, str]) -> None:
    """One heartbeat per agent: the server's first-request costs are paid before measuring."""
    for name, token in nodes:
        connection = AgentConnection(url, token)
        body = {
            "instance_id": instances[name],
            "agent_version": "bench",
            "hostname": "127.0.0.1",
            "running_jobs": [],
        }
        status, answer = await connection.post("/api/v1/agent/heartbeat", body)
        connection.close()
        if status != 200:
            raise RuntimeError(f"heartbeat answered {status}: {answer}")


def event_count(site) -> int:
    return site_query(site, "SELECT count(*) FROM projects_event")[0][0]


def run(args: argparse.Namespace) -> None:
    url = database_url()
    header("Throughput: lease + complete cycles per second, 1 agent vs N agents", url)
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        site = bench_site(Path(tmp))
        server = None
        try:
            site.create_user_token("bench")
            nodes = make_nodes(site, 1 + args.agents, prefix="tp")
            instances = {name: str(uuid.uuid4()) for name, _ in nodes}
            baseline_fleet, fleet = nodes[:1], nodes[1:]
            log(f"queueing {args.baseline_jobs} + {args.agents} x {args.jobs_per_agent} clones")
            queued = [
                run_django(
                    site,
                    "queue-clones",
                    "--owner=bench",
                    *(f"--node={name}={instances[name]}" for name, _ in group),
                    f"--per-node={per_node}",
                    timeout=3600,
                )
                for group, per_node in (
                    (baseline_fleet, args.baseline_jobs),
                    (fleet, args.jobs_per_agent),
                )
            ]
            emit(
                {
                    "phase": "queue",
                    "queued": sum(q["queued"] for q in queued),
                    "clones_per_s_through_services": queued[1]["clones_per_s"],
                }
            )
            server = ServerProcess(site, workers=args.workers)
            log(f"server pid {server.process.pid} ({args.workers} worker process(es))")
            asyncio.run(warm_up(server.url, nodes, instances))
            rows = {}
            for name, group, jobs in (
                ("baseline", baseline_fleet, args.baseline_jobs),
                ("concurrent", fleet, args.jobs_per_agent),
            ):
                before = event_count(site)
                processes = server_processes(server.process.pid)
                cpu_before = {pid: cpu_seconds(pid) for pid in processes}
                phase, elapsed = asyncio.run(
                    run_phase(server.url, group, instances, args.seconds, jobs)
                )
                server_cpu = sum(cpu_seconds(pid) - cpu for pid, cpu in cpu_before.items())
                appended = event_count(site) - before
                rows[name] = {
                    "phase": name,
                    "agents": len(group),
                    "server_processes": args.workers,
                    "cycles": phase.cycles,
                    "seconds": round(elapsed, 2),
                    "cycles_per_s": round(phase.cycles / elapsed, 1),
                    "events_appended": appended,
                    "events_per_s": round(appended / elapsed, 1),
                    "cycle": summary(phase.cycle_ms),
                    "lease": summary(phase.lease_ms),
                    "complete": summary(phase.complete_ms),
                    "agents_ran_dry": phase.ran_dry,
                    # CPU the server's processes spent per cycle: what a host's speed and
                    # load change least, so what compares across runs and machines.
                    "server_cpu_ms_per_cycle": round(1000 * server_cpu / max(1, phase.cycles), 2),
                }
                emit(rows[name])
            concurrent, baseline = rows["concurrent"], rows["baseline"]
            emit(
                {
                    "ratio_cycles_per_s_concurrent_to_baseline": ratio(
                        concurrent["cycles_per_s"], baseline["cycles_per_s"]
                    ),
                    "targets": {
                        "at_least_300_cycles_per_s_on_postgresql": site.postgres
                        and concurrent["cycles_per_s"] >= 300,
                    },
                    "valid": concurrent["agents_ran_dry"] == 0 and baseline["agents_ran_dry"] == 0,
                }
            )
        finally:
            if server is not None:
                server.stop()
            site.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=32, help="concurrent agents, one node each")
    parser.add_argument("--seconds", type=float, default=15, help="length of each phase")
    parser.add_argument("--jobs-per-agent", type=int, default=250, help="clones queued per node")
    parser.add_argument("--baseline-jobs", type=int, default=2000, help="clones for the 1 agent")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (PostgreSQL only for >1)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args()
    if args.workers > 1 and database_url() == "sqlite":
        parser.error("--workers above 1 needs PostgreSQL: SQLite wake-ups stay in one process")
    stop_on_sigterm()
    if args.smoke:
        args.agents, args.seconds, args.jobs_per_agent, args.baseline_jobs = 4, 2, 10, 20
    run(args)


if __name__ == "__main__":
    main()
