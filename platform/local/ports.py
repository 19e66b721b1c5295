"""Checks that the ports `make run` and `make demo` need are free, before anything starts.

    ports.py HOST PORT:SETTING [PORT:SETTING ...]

Exits 0 when every port can be bound on HOST. Otherwise prints one line per taken port, naming
the port, what holds it when this user may see that, and the setting that moves it with the
command that was run (`GITFLEET_RUN_COMMAND`, `make run` unless told); exits 1.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server will bind: a port left in TIME_WAIT by a previous run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == _LISTEN:
                inodes.add(fields[9])
    return inodes


def holder(port: int) -> str | None:
    """`pid N: command line` of the process listening on `port`, where /proc shows it."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
            if links & wanted:
                command = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
                return f"pid {proc.name}: {command.strip()[:120]}"
        except OSError:
            continue
    return None


def main(argv: list[str]) -> int:
    host, wanted = argv[0], argv[1:]
    command = os.environ.get("GITFLEET_RUN_COMMAND") or "make run"
    taken = 0
    for item in wanted:
        port_text, setting = item.split(":", 1)
        port = int(port_text)
        if port_is_free(host, port):
            continue
        taken += 1
        held_by = holder(port)
        by = f" by {held_by}" if held_by else " by another program"
        print(
            f"Port {port} on {host} is already in use{by}; "
            f"stop it or choose another port, e.g. {setting}={port + 1} {command}",
            file=sys.stderr,
        )
    return 1 if taken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
