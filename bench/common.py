"""What every benchmark shares: the machine it ran on, statistics, a fleet on a real server."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, ServerSite  # noqa: E402

__all__ = ["ServerProcess", "ServerSite", "header", "machine", "make_nodes", "summary"]


def machine(database_url: str) -> str:
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    engine = "postgresql" if database_url.startswith("postgres") else "sqlite"
    return (
        f"{os.cpu_count()} cores, {mem_kib / 1024 / 1024:.1f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}, database {engine}"
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "median_ms": round(statistics.median(values_ms), 2),
        "p99_ms": round(percentile(values_ms, 0.99), 2),
        "min_ms": round(min(values_ms), 2),
        "max_ms": round(max(values_ms), 2),
    }


def header(title: str, database_url: str) -> None:
    print(f"# {title}")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {machine(database_url)}")


def make_nodes(site: ServerSite, count: int, prefix: str = "bench") -> list[tuple[str, str]]:
    """Registers `count` nodes in one process; returns (name, agent token) pairs."""
    script = (
        "import json; from nodes.services import create_node; "
        f"print(json.dumps([(n, create_node(name=n)[1]) for n in "
        f"[f'{prefix}-{{i:04d}}' for i in range({count})]]))"
    )
    output = site.manage("shell", "-c", script).strip().splitlines()[-1]
    return [tuple(pair) for pair in json.loads(output)]
