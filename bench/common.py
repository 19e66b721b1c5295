"""What every benchmark shares: the machine it ran on, statistics, a fleet on a real server, a
small HTTP client that can hold thousands of connections, and a look inside the server process.

Every benchmark talks to 127.0.0.1 only and bounds every loop by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import resource
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.servers import ServerProcess, ServerSite  # noqa: E402

__all__ = [
    "AgentConnection",
    "ServerProcess",
    "ServerSite",
    "bench_site",
    "database_connections",
    "database_url",
    "emit",
    "ensure_database",
    "header",
    "log",
    "machine",
    "make_nodes",
    "metric",
    "percentile",
    "process_status",
    "raise_open_files_limit",
    "ratio",
    "run_django",
    "site_query",
    "stop_on_sigterm",
    "success_report",
    "summary",
]

# Settings every benchmark site gets: no throttling of the benchmark's own user, no sweeps or
# presence flapping in the middle of a measurement.
BENCH_SETTINGS = {
    "API_USER_RATE": "10000000/minute",
    "NODE_ONLINE_WINDOW": "3600",
    "SWEEP_SECONDS": "3600",
    "METRICS_TOKEN": "bench-metrics-token",
}


def database_url() -> str:
    """The DATABASE_URL the benchmark runs on ("sqlite" when unset)."""
    return os.environ.get("DATABASE_URL", "sqlite")


def machine(database_url: str) -> str:
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    engine = "postgresql" if database_url.startswith("postgres") else "sqlite"
    if engine == "postgresql":
        engine += f" {_postgres_version(database_url)}"
    else:
        engine += f" {sqlite3.sqlite_version}"
    load = "/".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores, {mem_kib / 1024 / 1024:.1f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}, database {engine}, load average {load}"
    )


def _postgres_version(url: str) -> str:
    try:
        import psycopg

        with psycopg.connect(_maintenance_url(url), connect_timeout=5) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
    except Exception:  # the header must not fail for want of a version string
        return "(version unknown)"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"n": 0}
    return {
        "n": len(values_ms),
        "median_ms": round(statistics.median(values_ms), 2),
        "p99_ms": round(percentile(values_ms, 0.99), 2),
        "min_ms": round(min(values_ms), 2),
        "max_ms": round(max(values_ms), 2),
    }


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> float | None:
    """numerator / denominator, or None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, digits)


def _command_line() -> list[str]:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return ["python", "-m", spec.name, *sys.argv[1:]]
    return ["python", *sys.argv]


def header(title: str, database_url: str) -> None:
    print(f"# {title}")
    prefix = ""
    if database_url.startswith("postgres"):
        parts = urlsplit(database_url)
        netloc = parts.netloc.rpartition("@")[2]
        user = (parts.username or "") + "@" if parts.username else ""
        prefix = f"DATABASE_URL={urlunsplit(parts._replace(netloc=user + netloc))} "
    print(f"command: {prefix}{shlex.join(_command_line())}")
    print(f"machine: {machine(database_url)}")
    sys.stdout.flush()


def stop_on_sigterm() -> None:
    """SIGTERM ends a benchmark as Ctrl-C does, so that it still stops the servers it started
    and drops the databases it made."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def emit(row: dict[str, Any]) -> None:
    """One JSON result line."""
    print(json.dumps(row), flush=True)


def log(message: str) -> None:
    """Progress, on stderr so that stdout stays the result."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Sites and Django-side helpers -------------------------------------------------------------


def _maintenance_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def ensure_database(url: str) -> None:
    """ServerSite creates each site's database from the one DATABASE_URL names: make sure that
    one exists (e.g. `gfbench`), so that a fresh PostgreSQL needs no set-up by hand."""
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{name}"')


def bench_site(tmp: Path, **settings: str) -> ServerSite:
    """A fresh, migrated database (SQLite under `tmp`, or a new PostgreSQL database) with the
    benchmark settings, plus `settings`."""
    ensure_database(os.environ.get("DATABASE_URL", ""))
    return ServerSite(tmp, **{**BENCH_SETTINGS, **settings})


def run_django(site: ServerSite, *args: str, timeout: float) -> dict[str, Any]:
    """Runs `python -m bench.djangoside ARGS` against the site's database; returns the JSON
    object its last line of output holds. Its progress goes to our stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.djangoside", *args],
        cwd=ROOT,
        env=site.env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.djangoside {' '.join(args)} failed:\n{done.stdout}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_nodes(site: ServerSite, count: int, prefix: str = "bench") -> list[tuple[str, str]]:
    """Registers `count` nodes in one process and one transaction; returns (name, agent token)
    pairs."""
    script = (
        "import json; from django.db import transaction; "
        "from nodes.services import create_node\n"
        "with transaction.atomic():\n"
        f"    pairs = [(n, create_node(name=n)[1]) for n in "
        f"[f'{prefix}-{{i:05d}}' for i in range({count})]]\n"
        "print(json.dumps(pairs))"
    )
    output = site.manage("shell", "-c", script).strip().splitlines()[-1]
    return [tuple(pair) for pair in json.loads(output)]


def site_query(site: ServerSite, sql: str, params: tuple = ()) -> list[tuple]:
    """A read of the site's database from outside the server (counts, checks)."""
    if site.postgres:
        import psycopg

        with psycopg.connect(site.database_url) as conn:
            return conn.execute(sql, params).fetchall()
    path = urlsplit(site.database_url).path
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        return conn.execute(sql.replace("%s", "?"), params).fetchall()


# --- The server process from outside ------------------------------------------------------------


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit, for this process and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def process_status(pid: int) -> dict[str, int]:
    """Resident memory (now and peak, KiB), threads and open file descriptors of a process."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                values[key] = int(rest.split()[0])
    values["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return values


def server_processes(master: int) -> dict[int, str]:
    """The uvicorn master and every process below it, by pid, with its role."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rpartition(")")[2].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    roles, pending = {master: "master"}, list(children.get(master, []))
    while pending:
        pid = pending.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        roles[pid] = "resource_tracker" if "resource_tracker" in command else "worker"
        pending.extend(children.get(pid, []))
    return roles


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_connections(site: ServerSite, pid: int) -> dict[str, Any]:
    """Connections the server holds to its database. PostgreSQL: backends of the site's
    database in pg_stat_activity, by state. SQLite: the server process's descriptors on the
    database file itself (one per connection), and on it and its -wal/-shm companions."""
    if site.postgres:
        import psycopg

        with psycopg.connect(site._admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT coalesce(state, '?'), application_name, count(*) FROM pg_stat_activity "
                "WHERE datname = %s GROUP BY 1, 2",
                [site.dbname],
            ).fetchall()
        by_state: dict[str, int] = {}
        for state, application, count in rows:
            key = f"{state} ({application})" if application else state
            by_state[key] = by_state.get(key, 0) + count
        return {"total": sum(count for *_, count in rows), "by_state": by_state}
    database_file = "/" + urlsplit(site.database_url).path.lstrip("/")  # sqlite:////abs/path
    connections = descriptors = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            descriptors += target.startswith(database_file)
            connections += target == database_file  # each connection opens the file once
    return {"total": connections, "file_descriptors_on_database_files": descriptors}


def metrics(server_url: str) -> dict[str, float]:
    """Every series of one scrape of the server's /metrics (BENCH_SETTINGS has the token),
    keyed by name and labels as written, e.g. `x_bucket{generation="2",le="0.1"}`."""
    import httpx

    response = httpx.get(
        f"{server_url}/metrics",
        headers={"Authorization": f"Bearer {BENCH_SETTINGS['METRICS_TOKEN']}"},
        timeout=30,
    )
    response.raise_for_status()
    series = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def metric(server_url: str, name: str) -> float | None:
    """One value from the server's /metrics."""
    return metrics(server_url).get(name)


# --- A small HTTP client for synthetic agents ---------------------------------------------------


class AgentConnection:
    """One keep-alive HTTP/1.1 connection to the server, speaking as one agent.

    A few KiB of state each, so one benchmark process can hold thousands of long polls, and
    cheap per request, so the client does not take the CPU the server is being measured on.
    A request that finds its idle connection closed by the server is sent again once on a new
    one: lease (same request id) and complete are both safe to repeat.
    """

    def __init__(self, server_url: str, token: str):
        parts = urlsplit(server_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = token
        self.opened = 0  # TCP connections opened so far (the first, and each after a close)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any], timeout: float = 90) -> tuple[int, Any]:
        payload = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        for attempt in range(2):
            reused = self._writer is not None
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                self._opened()
            try:
                self._writer.write(request)
                await self._writer.drain()
                return await asyncio.wait_for(self._response(), timeout)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt or not reused:
                    raise
        raise AssertionError("unreachable")

    def _opened(self) -> None:
        self.opened += 1

    async def _response(self) -> tuple[int, Any]:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await self._reader.readuntil(b"\r\n")).strip(), 16):
                body += (await self._reader.readexactly(size + 2))[:-2]
            await self._reader.readuntil(b"\r\n")
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, json.loads(body) if body else None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def success_report(lease_token: str) -> dict[str, Any]:
    """A complete call's body for a job that succeeded (nothing was really cloned)."""
    return {
        "lease_token": lease_token,
        "outcome": "succeeded",
        "result": {
            "commit": "0" * 40,
            "branch": "main",
            "local_path": "/bench",
            "duration_ms": 0,
            "size_bytes": 0,
        },
    }
