"""`make demo` as a newcomer runs it, on ports of their choosing: the server, the agent and the
demo's git daemon start, the demo clone reaches `ready`, and Ctrl-C stops every one of them,
leaving the ports free for the next run."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.gitservers import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RUN_SH = ROOT / "platform" / "local" / "run.sh"


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's output, line by line, read on a thread so that waiting can be bounded."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str], wanted: str, seen: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if wanted in line:
            return
    raise AssertionError(f"{wanted!r} not printed within {timeout} s:\n{''.join(seen)}")


def processes_in_group(group: int) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(f"{proc.name}: {command}")
    return found


def test_make_demo_on_other_ports_clones_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port, git_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp_path),
        "PY": sys.executable,
        "GITFLEET_DEMO": "1",
        "GITFLEET_DATA_DIR": str(tmp_path / "data"),
        "GITFLEET_PORT": str(port),
        "GITFLEET_DEMO_GIT_PORT": str(git_port),
        "GITFLEET_ADMIN_PASSWORD": "a-long-demo-password",
    }
    # Its own session, like a terminal's foreground job: Ctrl-C reaches the whole group.
    process = subprocess.Popen(
        ["bash", str(RUN_SH)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    try:
        lines = lines_of(process)
        wait_for_line(lines, "Demo project 'hello' is ready", seen, timeout=120)
        assert any(f"GITFLEET=http://127.0.0.1:{port}" in line for line in seen), "".join(seen)
        assert not port_is_free(port) and not port_is_free(git_port)

        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    deadline = time.monotonic() + 10
    while processes_in_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_in_group(process.pid)
    for line in left:  # the test's own leftovers are stopped here, then reported
        os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
    assert left == [], "still running after Ctrl-C:\n" + "\n".join(left)
    assert port_is_free(port) and port_is_free(git_port)
