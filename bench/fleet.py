"""Fleet: N simulated agents, each with the real agent's request pattern on its own keep-alive
connection, against the documented production deployment (uvicorn with one worker process per
core, one PostgreSQL): whether every long poll is held, what the idle fleet costs the server
(CPU, memory and database connections per process), and pickup latency for jobs queued at
random times meanwhile.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gfbench python -m bench.fleet
    DATABASE_URL=... python -m bench.fleet --agents 1000 5000 --wait 50 --heartbeats every
    python -m bench.fleet --smoke                          # tiny, for CI (always PostgreSQL)

Each agent, as `agent/runner.py` does: `POST /agent/lease` with `wait` (AGENT_LEASE_WAIT),
again at once after a 204 (plus `poll_jitter`), with capped jittered backoff and the same
request id after a time-out (`wait` + 15 s, the agent's read margin) or a 5xx; a lease is
completed at once on a second connection while the agent polls again. Heartbeats
(`--heartbeats`): `agent`, as the agent behaves, one at start and then only
when no poll is outstanding, the report changed or the last one is older than 300 s (randomly
phased, as in a fleet whose agents started at different times); `every`, every 20 s whatever
happens (the old behaviour). A heartbeat opens its own connection and closes it: the server's
5 s keep-alive time-out would close it before the next one anyway.

Per level of N: a fresh server on the same database (N nodes registered once), the fleet's first
calls spread over `--ramp` seconds, a wait for steady state, then an idle window and a pickup
window. Traffic goes to 127.0.0.1 only; every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent.client import LEASE_READ_MARGIN
from agent.runner import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, POLL_JITTER_SECONDS
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
    process_status,
    raise_open_files_limit,
    server_processes,
    stop_on_sigterm,
    success_report,
    summary,
)

DEFAULT_AGENTS = [1_000, 2_500, 5_000, 10_000]
FULL_SIZE = 10_000
HEARTBEAT_READ_TIMEOUT = 30.0
# Per server process: the agent API's 4 database threads, so a pool of 4, plus one LISTEN.
SERVER_SETTINGS = {"DB_POOL_MAX_SIZE": "4", "AGENT_DB_THREADS": "4"}
# The CI's PostgreSQL (.ci/run), used as the maintenance database by `--smoke` when DATABASE_URL
# is not PostgreSQL: the harness makes a database of its own on it and drops it at the end.
CI_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
# A level whose agents saw more lease time-outs and errors than this share of N has failed.
FAILED_SHARE = 0.01
PICKUP_TARGET_MS = 100
CPU_TARGET_PERCENT = 60


# --- The fleet ----------------------------------------------------------------------------------


@dataclass
class Counts:
    """What the agents saw, by kind; a window is the difference of two copies."""

    lease_204: int = 0
    lease_200: int = 0
    lease_early_204: int = 0  # answered empty before `wait` - 1 s: the poll was not held
    lease_timeouts: int = 0
    lease_unavailable: int = 0  # 429 and 5xx: retried with backoff, as the agent does
    lease_errors: int = 0  # other statuses, refused or broken connections
    heartbeats: int = 0
    heartbeat_timeouts: int = 0
    heartbeat_errors: int = 0
    completes: int = 0
    complete_errors: int = 0
    clones: int = 0
    clone_errors: int = 0
    crashes: int = 0  # a simulated agent's task ended on an exception: a harness fault
    connections_opened: Counter = field(default_factory=Counter)

    def copy(self) -> Counts:
        return Counts(**{**self.__dict__, "connections_opened": Counter(self.connections_opened)})

    def since(self, before: Counts) -> dict[str, Any]:
        out: dict[str, Any] = {
            key: value - getattr(before, key)
            for key, value in self.__dict__.items()
            if key != "connections_opened"
        }
        opened = self.connections_opened.copy()
        opened.subtract(before.connections_opened)
        out["connections_opened"] = dict(opened)
        return out


class CountedConnection(AgentConnection):
    """An AgentConnection that counts, by kind, each TCP connection it opens as it opens it."""

    def __init__(self, url: str, token: str, counts: Counts, kind: str):
        super().__init__(url, token)
        self.counts, self.kind = counts, kind

    def _opened(self) -> None:
        super()._opened()
        self.counts.connections_opened[self.kind] += 1


class FleetAgent:
    """One simulated agent: its node's token, its instance, and what it is doing now."""

    __slots__ = (
        "answered",
        "instance",
        "last_heartbeat",
        "lease",
        "name",
        "running",
        "state",
        "token",
    )

    def __init__(self, url: str, name: str, token: str, counts: Counts):
        self.name, self.token = name, token
        self.instance = str(uuid.uuid4())
        self.lease = CountedConnection(url, token, counts, "lease")
        self.state = "starting"  # then polling, between (two polls: the jitter) or backoff
        self.answered = False  # its first poll has ended
        self.running: set[str] = set()
        self.last_heartbeat = 0.0


class Fleet:
    def __init__(self, url: str, nodes: list[tuple[str, str]], args: argparse.Namespace):
        self.url, self.args = url, args
        self.counts = Counts()
        self.agents = [FleetAgent(url, name, token, self.counts) for name, token in nodes]
        self.tasks: list[asyncio.Task] = []
        self.stopping = False
        self.first_error = ""
        self.poll_seconds: list[float] = []  # how long each empty poll was held
        self.received: dict[str, float] = {}  # project id -> when its lease answer arrived
        self.waiters: dict[str, asyncio.Event] = {}

    def start(self, ramp: float) -> None:
        for agent in self.agents:
            delay = random.uniform(0, ramp)
            self.spawn(self.lease_loop(agent, delay))
            self.spawn(self.heartbeat_loop(agent, delay))

    def spawn(self, work) -> None:
        task = asyncio.create_task(work)
        task.add_done_callback(self._ended)
        self.tasks.append(task)

    def _ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.counts.crashes += 1
            self.error(f"crashed: {task.exception()!r}")

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for agent in self.agents:
            agent.lease.close()

    def states(self) -> Counter:
        return Counter(agent.state for agent in self.agents)

    def error(self, what: str) -> None:
        self.first_error = self.first_error or what

    def arrived(self, project_id: str) -> asyncio.Event:
        return self.waiters.setdefault(project_id, asyncio.Event())

    async def lease_loop(self, agent: FleetAgent, first_delay: float) -> None:
        wait, counts = self.args.wait, self.counts
        failures = 0
        request_id: str | None = None
        await asyncio.sleep(first_delay)
        while not self.stopping:
            request_id = request_id or str(uuid.uuid4())
            body = {"instance_id": agent.instance, "request_id": request_id, "wait": wait}
            agent.state = "polling"
            started = time.monotonic()
            try:
                status, answer = await agent.lease.post(
                    "/api/v1/agent/lease", body, timeout=wait + LEASE_READ_MARGIN
                )
            except TimeoutError:
                counts.lease_timeouts += 1
                status, answer = None, None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                counts.lease_errors += 1
                self.error(f"lease: {exc!r}")
                status, answer = None, None
            if status is None or status == 429 or status >= 500:
                # Keep the request id: a lease granted but lost comes back instead of a second.
                agent.lease.close()
                if status is not None:
                    counts.lease_unavailable += 1
                agent.state = "backoff"
                await asyncio.sleep(backoff_delay(failures))
                failures += 1
                continue
            request_id, failures = None, 0
            agent.answered = True
            if status == 204:
                held = time.monotonic() - started
                counts.lease_204 += 1
                counts.lease_early_204 += held < wait - 1
                self.poll_seconds.append(held)
                agent.state = "between"
                await asyncio.sleep(random.uniform(*POLL_JITTER_SECONDS))
            elif status == 200:
                self.received[answer["job"]["project_id"]] = time.perf_counter()
                counts.lease_200 += 1
                self.arrived(answer["job"]["project_id"]).set()
                agent.running.add(answer["job"]["id"])
                self.spawn(self.complete(agent, answer))
            else:
                counts.lease_errors += 1
                self.error(f"lease answered {status}: {answer}")
                agent.state = "backoff"
                await asyncio.sleep(backoff_delay(failures))
                failures += 1

    async def complete(self, agent: FleetAgent, grant: dict[str, Any]) -> None:
        """The job's own thread: it 'runs' in no time and reports on a connection of its own."""
        job_id = grant["job"]["id"]
        connection = CountedConnection(self.url, agent.token, self.counts, "complete")
        try:
            status, answer = await connection.post(
                f"/api/v1/agent/jobs/{job_id}/complete",
                success_report(grant["lease"]["token"]),
                timeout=HEARTBEAT_READ_TIMEOUT,
            )
            if status == 200:
                self.counts.completes += 1
            else:
                self.counts.complete_errors += 1
                self.error(f"complete answered {status}: {answer}")
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            self.counts.complete_errors += 1
            self.error(f"complete: {exc!r}")
        finally:
            connection.close()
            agent.running.discard(job_id)

    async def heartbeat_loop(self, agent: FleetAgent, first_delay: float) -> None:
        every, max_age = self.args.heartbeat_seconds, self.args.heartbeat_max_age
        await asyncio.sleep(first_delay)
        reported = await self.heartbeat(agent)
        # As in a fleet whose agents started at different times, each agent's 20 s tick and
        # 300 s clock are at random points of their periods.
        if self.args.heartbeats == "agent":
            agent.last_heartbeat = time.monotonic() - random.uniform(0, max_age)
        tick = random.uniform(0, every)
        while not self.stopping:
            await asyncio.sleep(tick)
            tick = every
            if self.args.heartbeats == "agent" and (
                agent.state == "polling"
                and reported == sorted(agent.running)
                and time.monotonic() - agent.last_heartbeat < max_age
            ):
                continue  # the outstanding lease call counts as a sign of life
            reported = await self.heartbeat(agent)

    async def heartbeat(self, agent: FleetAgent) -> list[str]:
        running = sorted(agent.running)
        body = {
            "instance_id": agent.instance,
            "agent_version": "bench",
            "hostname": agent.name,
            "disk_free_bytes": 100 * 2**30,
            "running_jobs": running,
            "git_version": "2.39.5",
            "git_lfs_version": "3.3.0",
        }
        connection = CountedConnection(self.url, agent.token, self.counts, "heartbeat")
        try:
            status, answer = await connection.post(
                "/api/v1/agent/heartbeat", body, timeout=HEARTBEAT_READ_TIMEOUT
            )
            if status == 200:
                self.counts.heartbeats += 1
            else:
                self.counts.heartbeat_errors += 1
                self.error(f"heartbeat answered {status}: {answer}")
        except TimeoutError:
            self.counts.heartbeat_timeouts += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.counts.heartbeat_errors += 1
            self.error(f"heartbeat: {exc!r}")
        finally:
            connection.close()
        agent.last_heartbeat = time.monotonic()
        return running


def backoff_delay(failures: int) -> float:
    """The agent's `Backoff`: between half and all of a step that doubles up to 60 s."""
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**failures)
    return step / 2 + random.uniform(0, step / 2)


# --- The server's processes from outside --------------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _local_ports_to(remote_port: int) -> dict[str, int]:
    """Socket inode -> local port, for this machine's TCP connections to `remote_port`."""
    wanted = f"{remote_port:04X}"
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[2].endswith(":" + wanted):
                        ports[fields[9]] = int(fields[1].rpartition(":")[2], 16)
        except OSError:
            continue
    return ports


def connections_by_process(site, pids: list[int]) -> dict[str, Any]:
    """The site database's backends (pg_stat_activity), each mapped to the server process that
    holds its client end: the backend's client port is a local port of one of its sockets."""
    import psycopg

    try:
        conn = psycopg.connect(site._admin_url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        log(f"pg_stat_activity not read: {exc}")
        return {"total": 0, "unmapped": 0, "per_process": {}, "backends": []}
    with conn:
        rows = conn.execute(
            "SELECT client_port, coalesce(state, '?'), pid, "
            "application_name = 'gitfleet-listener' OR query ILIKE 'LISTEN%%' "
            "FROM pg_stat_activity WHERE datname = %s",
            [site.dbname],
        ).fetchall()
    port_of = _local_ports_to(urlsplit(site.database_url).port or 5432)
    owner = {}
    for pid in pids:
        for inode in _socket_inodes(pid):
            if inode in port_of:
                owner[port_of[inode]] = pid
    per_process: dict[int, Counter] = {pid: Counter() for pid in pids}
    unmapped = 0
    for client_port, state, _backend, listener in rows:
        pid = owner.get(client_port)
        if pid is None:
            unmapped += 1
            continue
        per_process[pid]["listen" if listener else state] += 1
    return {
        "total": len(rows),
        "unmapped": unmapped,
        "per_process": {pid: dict(states) for pid, states in per_process.items()},
        "backends": [backend for _, _, backend, _ in rows],
    }


# --- One level -----------------------------------------------------------------------------------


async def wait_for_steady(fleet: Fleet, args: argparse.Namespace, patience: float) -> bool:
    """Until every agent's first poll has ended (so polls are re-polls, phased as the ramp
    spread them) and each has a poll outstanding or is between two (none starting, none backing
    off), or `patience` seconds passed."""
    started = time.monotonic()
    end = started + patience
    next_report = 0.0
    while time.monotonic() < end:
        states = fleet.states()
        repolling = all(agent.answered for agent in fleet.agents)
        if repolling and states["polling"] + states["between"] == len(fleet.agents):
            return True
        if time.monotonic() > next_report:
            log(f"{states['polling']}/{len(fleet.agents)} polls outstanding; {dict(states)}")
            next_report = time.monotonic() + 10
        await asyncio.sleep(0.5)
    log(f"no steady state after {patience:.0f} s: measuring anyway; {dict(fleet.states())}")
    return False


class Window:
    """Everything measured over one window: CPU of the server's processes (and the client's),
    memory, threads and descriptors sampled once a second, database connections per process at
    the start, middle and end, the agents' states and what they saw."""

    def __init__(self, site, roles: dict[int, str], fleet: Fleet):
        self.site, self.roles, self.fleet = site, roles, fleet
        self.samples: dict[int, list[dict[str, int]]] = {pid: [] for pid in roles}
        self.connections: list[dict[str, Any]] = []
        self.polling: list[int] = []
        self.not_polling: Counter = Counter()  # most agents seen at once in each other state
        # CPU of the site database's backends, from the first probe that saw each (a pool keeps
        # its connections, so nearly all are seen at the start).
        self.backend_cpu: dict[int, float] = {}

    def start(self) -> None:
        self.started = time.monotonic()
        self.cpu = {pid: cpu_seconds(pid) for pid in self.roles}
        self.client_cpu = _own_cpu()
        self.counts = self.fleet.counts.copy()
        self.polls_before = len(self.fleet.poll_seconds)

    async def sample(self, seconds: float, connection_probes: int = 3) -> None:
        end = self.started + seconds
        probes = {
            round(i * seconds / max(1, connection_probes - 1)) for i in range(connection_probes)
        }
        tick = 0
        while True:
            for pid in self.roles:
                with contextlib.suppress(OSError):
                    self.samples[pid].append(process_status(pid))
            states = self.fleet.states()
            self.polling.append(states["polling"])
            for state, count in states.items():
                if state != "polling":
                    self.not_polling[state] = max(self.not_polling[state], count)
            if tick in probes or time.monotonic() >= end:
                probe = await asyncio.to_thread(connections_by_process, self.site, list(self.roles))
                self.connections.append(probe)
                for backend in probe["backends"]:
                    self.backend_cpu.setdefault(backend, cpu_seconds(backend))
            if time.monotonic() >= end:
                break
            tick += 1
            await asyncio.sleep(max(0.0, self.started + tick - time.monotonic()))

    def finish(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        cores = os.cpu_count() or 1
        server_cpu = sum(cpu_seconds(pid) - before for pid, before in self.cpu.items())
        database_cpu = sum(
            max(0.0, cpu_seconds(pid) - before) for pid, before in self.backend_cpu.items()
        )
        client_cpu = _own_cpu() - self.client_cpu
        seen = self.fleet.counts.since(self.counts)
        processes = []
        for pid, role in self.roles.items():
            samples = self.samples[pid]
            if not samples:
                continue
            per_state: Counter = Counter()
            most = 0
            for probe in self.connections:
                states = probe["per_process"].get(pid, {})
                if sum(states.values()) >= most:
                    most, per_state = sum(states.values()), Counter(states)
            processes.append(
                {
                    "pid": pid,
                    "role": role,
                    "cpu_percent_of_one_core": round(
                        100 * (cpu_seconds(pid) - self.cpu[pid]) / elapsed, 1
                    ),
                    "rss_mib": round(max(s["VmRSS"] for s in samples) / 1024, 1),
                    "rss_peak_mib": round(samples[-1]["VmHWM"] / 1024, 1),
                    "threads": max(s["Threads"] for s in samples),
                    "open_fds": max(s["fds"] for s in samples),
                    "db_connections": most,
                    "db_connections_by_state": dict(per_state),
                }
            )
        totals = [probe["total"] for probe in self.connections]
        held = self.fleet.poll_seconds[self.polls_before :]
        return {
            "seconds": round(elapsed, 1),
            "server_cpu_percent_of_machine": round(100 * server_cpu / elapsed / cores, 1),
            "server_cpu_seconds": round(server_cpu, 2),
            "database_cpu_percent_of_machine": round(100 * database_cpu / elapsed / cores, 1),
            "processes": processes,
            "rss_mib_total": round(sum(p["rss_mib"] for p in processes), 1),
            "db_connections_total_max": max(totals, default=0),
            "db_connections_unmapped_max": max(
                (probe["unmapped"] for probe in self.connections), default=0
            ),
            "requests_per_s": {
                "lease": round((seen["lease_204"] + seen["lease_200"]) / elapsed, 1),
                "heartbeat": round(seen["heartbeats"] / elapsed, 1),
                "complete": round(seen["completes"] / elapsed, 1),
                "clone": round(seen["clones"] / elapsed, 1),
            },
            "new_connections_per_s": {
                kind: round(count / elapsed, 1)
                for kind, count in seen["connections_opened"].items()
            },
            "polls_outstanding": {
                "min": min(self.polling, default=0),
                "median": int(statistics.median(self.polling)) if self.polling else 0,
                "max": max(self.polling, default=0),
            },
            "agents_not_polling_max": dict(self.not_polling),
            "empty_poll_held_s": {
                "n": len(held),
                "min": round(min(held), 2) if held else None,
                "median": round(statistics.median(held), 2) if held else None,
            },
            "client": {
                "cpu_percent_of_one_core": round(100 * client_cpu / elapsed, 1),
                "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
            "seen": {key: value for key, value in seen.items() if key != "connections_opened"},
        }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def every_poll_held(window: dict[str, Any]) -> bool:
    """No agent was starting or backing off at any sample, and no poll timed out, failed or was
    answered empty before its wait was over."""
    seen, idle = window["seen"], window["agents_not_polling_max"]
    return (
        not idle.get("backoff")
        and not idle.get("starting")
        and seen["lease_timeouts"] == seen["lease_errors"] == seen["lease_unavailable"] == 0
        and seen["lease_early_204"] == 0
        and window["polls_outstanding"]["min"] > 0
    )


async def pickups(
    fleet: Fleet, url: str, user_token: str, args: argparse.Namespace, deadline: float
) -> tuple[list[float], list[float]]:
    """`--jobs` clones through the user API at Poisson times (`--job-rate` a second), each for
    a random agent's node. Returns, in ms, each pickup (from sending the request to that agent
    having the lease answer) and each clone request's own answer time (its part of a pickup)."""
    latencies: list[float] = []
    answered: list[float] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    headers = {"Authorization": f"Bearer {user_token}"}

    async def one(client: httpx.AsyncClient, index: int) -> None:
        agent = random.choice(fleet.agents)
        body = {
            "name": f"fleet-{index}-{uuid.uuid4().hex[:8]}",
            "git_url": "https://git.example.com/r.git",
            "branch": "main",
            "node": agent.name,
        }
        sent = time.perf_counter()
        try:
            response = await client.post(
                f"{url}/api/v1/projects/clone", json=body, headers=headers, timeout=30
            )
        except httpx.HTTPError as exc:
            fleet.counts.clone_errors += 1
            fleet.error(f"clone: {exc!r}")
            return
        if response.status_code != 202:
            fleet.counts.clone_errors += 1
            fleet.error(f"clone answered {response.status_code}: {response.text[:200]}")
            return
        fleet.counts.clones += 1
        answered.append((time.perf_counter() - sent) * 1000)
        project_id = response.json()["project"]["id"]
        left = max(0.1, deadline - time.monotonic())
        try:
            await asyncio.wait_for(fleet.arrived(project_id).wait(), min(left, args.wait + 60))
        except TimeoutError:
            return
        latencies.append((fleet.received[project_id] - sent) * 1000)

    async with httpx.AsyncClient(limits=limits) as client:
        tasks = []
        for index in range(args.jobs):
            await asyncio.sleep(random.expovariate(args.job_rate))
            if time.monotonic() >= deadline:
                break
            tasks.append(asyncio.create_task(one(client, index)))
        await asyncio.gather(*tasks)
    return latencies, answered


async def run_level(
    args: argparse.Namespace, site, server: ServerProcess, user_token: str, nodes, deadline: float
) -> dict[str, Any]:
    level = len(nodes)
    roles = server_processes(server.process.pid)
    started = time.monotonic()
    while list(roles.values()).count("worker") < args.workers and time.monotonic() < started + 30:
        await asyncio.sleep(0.2)  # /healthz answers as soon as the first worker is up
        roles = server_processes(server.process.pid)
    log(f"server pid {server.process.pid}, processes {roles}")
    fleet = Fleet(server.url, nodes, args)
    fleet.start(args.ramp)
    try:
        patience = min(args.ramp + 2 * args.wait + 30, deadline - time.monotonic())
        steady = await wait_for_steady(fleet, args, patience)
        await asyncio.sleep(args.settle)
        log(f"idle window: {args.idle_seconds:g} s with {level} agents")
        idle = Window(site, roles, fleet)
        idle.start()
        await idle.sample(args.idle_seconds)
        idle_row = idle.finish()
        log(f"pickup window: {args.jobs} jobs at {args.job_rate:g}/s")
        busy = Window(site, roles, fleet)
        busy.start()
        sampler = asyncio.create_task(busy.sample(args.jobs / args.job_rate + args.wait + 60, 2))
        latencies, clone_answers = await pickups(fleet, server.url, user_token, args, deadline)
        reports_due = time.monotonic() + 10  # the last completions, still on their way
        while any(agent.running for agent in fleet.agents) and time.monotonic() < reports_due:
            await asyncio.sleep(0.05)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        busy_row = busy.finish()
    finally:
        await fleet.stop()
    seen = {key: idle_row["seen"][key] + busy_row["seen"][key] for key in idle_row["seen"]}
    pickup = summary(latencies)
    held = steady and every_poll_held(idle_row) and every_poll_held(busy_row)
    troubles = seen["lease_timeouts"] + seen["lease_errors"] + seen["lease_unavailable"]
    failed = (
        not steady
        or troubles > FAILED_SHARE * level
        or pickup["n"] < args.jobs * 0.9
        or seen["crashes"] > 0
    )
    row = {
        "agents": level,
        "wait": args.wait,
        "heartbeats": args.heartbeats,
        "steady": steady,
        "every_poll_held": held,
        "pickup": pickup,
        "jobs_asked": args.jobs,
        "clone_request": summary(clone_answers),
        "server_cpu_percent_of_machine": idle_row["server_cpu_percent_of_machine"],
        "cpu_percent_of_one_core_per_1000_idle_agents": round(
            100 * idle_row["server_cpu_seconds"] / idle_row["seconds"] / (level / 1000), 2
        ),
        "idle": idle_row,
        "pickup_window": {
            key: busy_row[key]
            for key in (
                "seconds",
                "server_cpu_percent_of_machine",
                "database_cpu_percent_of_machine",
                "requests_per_s",
                "polls_outstanding",
                "agents_not_polling_max",
                "client",
                "seen",
            )
        },
        "client_errors": seen["lease_errors"]
        + seen["heartbeat_errors"]
        + seen["complete_errors"]
        + seen["clone_errors"],
        "client_timeouts": seen["lease_timeouts"] + seen["heartbeat_timeouts"],
        "failed": failed,
    }
    if fleet.first_error:
        row["first_client_error"] = fleet.first_error
    return row


def _loop_factory():
    """uvloop when installed (the server's requirements have it): less client CPU per request
    on the machine the server is measured on."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def meets(row: dict[str, Any]) -> bool:
    return (
        not row.get("failed", True)
        and row["every_poll_held"]
        and row["pickup"].get("p99_ms", 1e9) <= PICKUP_TARGET_MS
        and row["server_cpu_percent_of_machine"] <= CPU_TARGET_PERCENT
    )


def run(args: argparse.Namespace) -> None:
    url = database_url()
    limit = raise_open_files_limit()
    header("Fleet: N agents with the real request pattern against one server per core", url)
    needed = max(args.agents) + 200
    if needed > limit:
        raise SystemExit(f"RLIMIT_NOFILE is {limit}: too low for {max(args.agents)} agents")
    emit(
        {
            "phase": "settings",
            "server": f"uvicorn config.asgi:application --workers {args.workers} (fresh per level)",
            "server_processes": args.workers,
            "server_settings": {
                **SERVER_SETTINGS,
                "LONG_POLL_MAX_WAIT": max(50, args.wait),
                "db_connections_bound_per_process": int(SERVER_SETTINGS["DB_POOL_MAX_SIZE"]) + 1,
            },
            "agent": {
                "lease_wait": args.wait,
                "heartbeats": args.heartbeats,
                "heartbeat_seconds": args.heartbeat_seconds,
                "heartbeat_max_age_while_polling": args.heartbeat_max_age,
                "poll_jitter_s": list(POLL_JITTER_SECONDS),
                "lease_read_timeout_s": args.wait + LEASE_READ_MARGIN,
            },
            "ramp_s": args.ramp,
            "idle_window_s": args.idle_seconds,
            "jobs": args.jobs,
            "job_rate_per_s": args.job_rate,
            "rlimit_nofile": limit,
        }
    )
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.deadline
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        site = bench_site(Path(tmp), LONG_POLL_MAX_WAIT=str(max(50, args.wait)), **SERVER_SETTINGS)
        try:
            user_token = site.create_user_token("bench")
            log(f"registering {max(args.agents)} nodes")
            nodes = make_nodes(site, max(args.agents), prefix="fleet")
            skip_reason = ""
            for level in args.agents:
                if not skip_reason and time.monotonic() >= deadline:
                    skip_reason = f"--deadline of {args.deadline:g} s reached"
                if skip_reason:
                    emit({"agents": level, "skipped": skip_reason})
                    continue
                server = ServerProcess(site, workers=args.workers)
                try:
                    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                        row = runner.run(
                            run_level(args, site, server, user_token, nodes[:level], deadline)
                        )
                finally:
                    server.stop()
                rows.append(row)
                emit(row)
                if row["failed"]:
                    skip_reason = (
                        f"the server saturated at {level} agents "
                        f"({row['client_timeouts']} time-outs, {row['client_errors']} errors, "
                        f"steady {row['steady']})"
                    )
        finally:
            site.close()
    meeting = [row["agents"] for row in rows if meets(row)]
    full = next((row for row in rows if row["agents"] == FULL_SIZE), None)
    emit(
        {
            "largest_n_meeting_pickup_p99_100_ms": max(meeting, default=None),
            "levels_measured": [row["agents"] for row in rows],
            "cpu_percent_of_one_core_per_1000_idle_agents": {
                row["agents"]: row["cpu_percent_of_one_core_per_1000_idle_agents"] for row in rows
            },
            "targets": {
                "every_poll_held_at_10000": bool(full and full["every_poll_held"]),
                "pickup_p99_at_most_100_ms_at_10000": bool(
                    full and full["pickup"].get("p99_ms", 1e9) <= PICKUP_TARGET_MS
                ),
                "server_cpu_at_most_60_percent_at_10000": bool(
                    full and full["server_cpu_percent_of_machine"] <= CPU_TARGET_PERCENT
                ),
                "full_size": full is not None,
            },
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=DEFAULT_AGENTS, help="levels of N")
    parser.add_argument("--wait", type=int, default=25, help="AGENT_LEASE_WAIT (also run 50)")
    parser.add_argument(
        "--heartbeats",
        choices=("agent", "every"),
        default="agent",
        help="agent: skipped while a poll is outstanding (at least every 300 s); every: every 20 s",
    )
    parser.add_argument("--heartbeat-seconds", type=float, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--heartbeat-max-age", type=float, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--ramp", type=float, help="seconds to start the agents over (= --wait)")
    parser.add_argument("--settle", type=float, default=5, help="seconds after steady state")
    parser.add_argument("--idle-seconds", type=float, default=60, help="idle window")
    parser.add_argument("--jobs", type=int, default=200, help="pickups measured per level")
    parser.add_argument("--job-rate", type=float, default=4, help="clones a second (Poisson)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="uvicorn workers")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds for all levels")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI (PostgreSQL)")
    args = parser.parse_args()
    stop_on_sigterm()
    if args.smoke:
        args.agents, args.wait, args.ramp, args.settle = [20], 2, 1.0, 0.5
        args.idle_seconds, args.jobs, args.job_rate, args.deadline = 3, 10, 10, 120
        args.heartbeat_seconds, args.heartbeat_max_age = 1, 3
        if not database_url().startswith("postgres"):
            # `make bench-smoke` runs on SQLite; this benchmark needs PostgreSQL (one LISTEN per
            # worker process wakes its polls): the CI's server, as a maintenance database.
            os.environ["DATABASE_URL"] = os.environ.get("BENCH_POSTGRES_URL", CI_POSTGRES_URL)
    elif not database_url().startswith("postgres"):
        parser.error(
            "the fleet benchmark needs PostgreSQL (DATABASE_URL=postgres://...): the documented "
            "deployment runs one worker process per core, and SQLite wake-ups stay in one process"
        )
    if min(args.agents) <= 0 or args.wait < 0 or args.jobs <= 0 or args.job_rate <= 0:
        parser.error("--agents, --jobs and --job-rate must be positive, --wait at least 0")
    args.agents = sorted(set(args.agents))
    args.ramp = args.wait if args.ramp is None else args.ramp
    run(args)


if __name__ == "__main__":
    main()
