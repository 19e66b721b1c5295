"""A private PostgreSQL cluster for tests that stop and restart the database.

`initdb` and `pg_ctl` from the machine's PostgreSQL packages run as the `postgres` Unix user on
a free port of 127.0.0.1, with the data folder under /tmp. Nothing else uses the cluster, so
restarting it disturbs no one, and it does not depend on DATABASE_URL.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.servers import free_port

UNIX_USER = "postgres"


def postgres_bin() -> Path:
    """The newest PostgreSQL bin folder that has `initdb`; AssertionError when none does."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not found:
        raise AssertionError(
            "initdb was not found under /usr/lib/postgresql/*/bin: the database-restart tests "
            "need the PostgreSQL server package (e.g. apt-get install postgresql)."
        )
    return Path(found[-1]).parent


class PrivateCluster:
    """One PostgreSQL cluster of the test's own: `start`, `stop`, `restart`, `url`."""

    def __init__(self) -> None:
        try:
            account = pwd.getpwnam(UNIX_USER)
        except KeyError as exc:
            raise AssertionError(
                f"the Unix user {UNIX_USER!r} (made by the PostgreSQL package) is missing"
            ) from exc
        self.bin = postgres_bin()
        self.port = free_port()
        # Under /tmp, not pytest's tmp_path: that is private to root (mode 0700).
        self.root = Path(tempfile.mkdtemp(prefix="gitfleet-pg-", dir="/tmp"))
        os.chown(self.root, account.pw_uid, account.pw_gid)
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", UNIX_USER, "--", str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log_path), "-w",
            "-o", options, *extra,
        )  # fmt: skip

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        """A fast shutdown: every session is terminated, as on a real restart."""
        self._pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def close(self) -> None:
        with contextlib.suppress(AssertionError):  # already stopped
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)
