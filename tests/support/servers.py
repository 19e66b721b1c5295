"""Real Gitfleet server processes for end-to-end tests.

Each `ServerSite` is a fresh database (a SQLite file, or a new PostgreSQL database on the server
that DATABASE_URL names) migrated by `manage.py migrate`; `ServerProcess` runs uvicorn on it on
127.0.0.1. Tests talk to it over HTTP only, as agents and people would.

`manage.py migrate` runs once per test run and database server, into a template database; each
site's database is a copy of it (a SQLite backup, or PostgreSQL's `CREATE DATABASE ... TEMPLATE`),
the same schema and rows in a fraction of the time a migrate process takes to start and run.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def site_env(database_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a site's processes: its database, its data folder, `settings`."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "e2e-only-secret-key",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "GIT_ALLOW_PRIVATE_HOSTS": "true",
        "GIT_ALLOWED_SCHEMES": "https,ssh,git,http",
        "GITFLEET_DATA_DIR": str(data_dir),
        "GITFLEET_ENV_FILE": "",
        "LOG_LEVEL": "WARNING",
        **settings,
    }


def manage(env: dict[str, str], *args: str) -> str:
    """Runs a management command in a process of its own with `env`; returns its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def admin_sql(admin_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


def postgres_database_url(admin_url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{dbname}"))


# Template databases already migrated in this run: the SQLite file, or the PostgreSQL database's
# name per server (the admin URL).
_templates: dict[str, str] = {}


def migrated_template(admin_url: str | None) -> str:
    """A database that `manage.py migrate` brought to the latest migration, made on first use
    and dropped when the test run ends: a SQLite file (`admin_url` None) or the name of a
    database on the PostgreSQL server that `admin_url` reaches."""
    key = admin_url or "sqlite"
    if key not in _templates:
        folder = Path(tempfile.mkdtemp(prefix="gitfleet-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        if admin_url is None:
            template = str(folder / "gitfleet.sqlite3")
            database_url = f"sqlite:///{template}"
        else:
            template = f"gitfleet_e2e_template_{uuid.uuid4().hex[:12]}"
            admin_sql(admin_url, f'CREATE DATABASE "{template}"')
            atexit.register(_drop_template, admin_url, template)
            database_url = postgres_database_url(admin_url, template)
        manage(site_env(database_url, folder / "data"), "migrate", "--no-input", "-v", "0")
        _templates[key] = template
    return _templates[key]


def _drop_template(admin_url: str, template: str) -> None:
    import psycopg

    # A private cluster (tests/support/postgres.py) may be gone by the end of the run.
    with contextlib.suppress(psycopg.OperationalError):
        admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


@dataclass(frozen=True)
class Accounts:
    """Tokens of the people (user name -> API token) and nodes (name -> agent token) made."""

    users: dict[str, str]
    nodes: dict[str, str]


class ServerSite:
    """A database of its own, and the environment that server processes on it share."""

    # App labels that `manage.py migrate` runs for on an empty database instead of copying the
    # migrated template: a database on which only some migrations ran.
    migrate_only: tuple[str, ...] = ()

    def __init__(self, tmp_path: Path, **settings: str):
        self.tmp_path = tmp_path
        base_url = os.environ.get("DATABASE_URL", "")
        self.postgres = base_url.startswith(("postgres://", "postgresql://"))
        if self.postgres:
            self.dbname = f"gitfleet_e2e_{uuid.uuid4().hex[:12]}"
            self._admin_url = base_url
            self.database_url = postgres_database_url(base_url, self.dbname)
        else:
            self.database_url = f"sqlite:///{tmp_path / 'gitfleet.sqlite3'}"
        self.env = site_env(self.database_url, tmp_path / "data", **settings)
        self.migrate()

    def migrate(self) -> None:
        """Makes this site's database: a copy of the run's migrated template."""
        if self.migrate_only:
            if self.postgres:
                self._admin_sql(f'CREATE DATABASE "{self.dbname}"')
            self.manage("migrate", *self.migrate_only, "--no-input", "-v", "0")
            return
        if self.postgres:
            template = migrated_template(self._admin_url)
            self._admin_sql(f'CREATE DATABASE "{self.dbname}" TEMPLATE "{template}"')
            return
        database = Path(self.database_url.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)  # as the settings do for migrate
        source = sqlite3.connect(migrated_template(None))
        target = sqlite3.connect(database)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()

    def _admin_sql(self, statement: str) -> None:
        admin_sql(self._admin_url, statement)

    def manage(self, *args: str) -> str:
        """Runs a management command against this site's database; returns its stdout."""
        return manage(self.env, *args)

    def create_accounts(
        self, *, users: Sequence[str] = (), staff: Sequence[str] = (), nodes: Sequence[str] = ()
    ) -> Accounts:
        """People (`staff` ones with staff rights), each with a token from `create_token`, and
        nodes from `create_node`, all in one process: each `manage.py` costs most of a second
        to start."""
        people = [(name, False) for name in users] + [(name, True) for name in staff]
        script = (
            "import io\n"
            "from django.contrib.auth import get_user_model\n"
            "from django.core.management import call_command\n"
            "def last_line(*args):\n"
            "    out = io.StringIO()\n"
            "    call_command(*args, stdout=out, stderr=io.StringIO())\n"
            "    return out.getvalue().strip().splitlines()[-1]\n"
            f"for name, is_staff in {people!r}:\n"
            "    get_user_model().objects.create_user(name, is_staff=is_staff)\n"
            "    print('user', name, last_line('create_token', name))\n"
            f"for name in {list(nodes)!r}:\n"
            "    print('node', name, last_line('create_node', name))\n"
        )
        made: dict[str, dict[str, str]] = {"user": {}, "node": {}}
        for line in self.manage("shell", "-c", script).splitlines():
            kind, _, rest = line.partition(" ")
            if kind in made:
                name, token = rest.split()
                made[kind][name] = token
        return Accounts(users=made["user"], nodes=made["node"])

    def create_user_token(self, username: str = "alice", staff: bool = False) -> str:
        made = self.create_accounts(**{"staff" if staff else "users": [username]})
        return made.users[username]

    def create_node(self, name: str = "node-1") -> str:
        return self.create_accounts(nodes=[name]).nodes[name]

    def close(self) -> None:
        if self.postgres:
            self._admin_sql(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


class ServerProcess:
    """uvicorn serving `config.asgi` on 127.0.0.1 for one `ServerSite`; with `wait=False` the
    process is started and `wait_ready()` is left to the caller."""

    def __init__(
        self,
        site: ServerSite,
        *,
        port: int | None = None,
        workers: int = 1,
        wait: bool = True,
        **settings: str,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = site.tmp_path / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--lifespan",
                "off",
                "--timeout-graceful-shutdown",
                "2",
                *(["--workers", str(workers)] if workers > 1 else []),
            ],
            cwd=ROOT,
            env={**site.env, **settings},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        """Returns once the server answers `/healthz`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


class AgentProcess:
    """`python -m agent` against a server, with JSON logs to a file the test can wait on."""

    def __init__(self, server_url: str, token: str, storage: Path, **settings: str):
        self.storage = storage
        self.projects = storage / "projects"
        self.log_path = storage.parent / f"agent-{uuid.uuid4().hex[:8]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.environ.get("HOME", "/root"),
            "AGENT_SERVER_URL": server_url,
            "AGENT_TOKEN": token,
            "AGENT_STORAGE_PATH": str(storage),
            "AGENT_GIT_ALLOWED_SCHEMES": "git,http",
            "AGENT_GIT_ALLOW_PRIVATE_HOSTS": "true",
            "AGENT_LEASE_WAIT": "2",
            "AGENT_HEARTBEAT_SECONDS": "1",
            "AGENT_DRAIN_SECONDS": "5",
            "AGENT_LOG_FORMAT": "json",
            **settings,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for("agent_started")

    def events(self) -> list[dict]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def wait_for(self, event: str, timeout: float = 30, **fields: object) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.events():
                if entry.get("event") == event and all(
                    entry.get(k) == v for k, v in fields.items()
                ):
                    return entry
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"agent never logged {event} {fields}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no drain, no release, as a crash or an OOM kill would."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if not self._log.closed:
            self._log.close()
        return self.process.returncode


class UserClient:
    """A person using the API with a token, over HTTP."""

    def __init__(self, server_url: str, token: str):
        self.url = server_url
        self.http = httpx.Client(
            base_url=server_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def clone(
        self, name: str, git_url: str, branch: str = "main", node: str = "node-1", **extra: object
    ) -> dict:
        body = {"name": name, "git_url": git_url, "branch": branch, "node": node, **extra}
        response = self.http.post("/api/v1/projects/clone", json=body)
        assert response.status_code == 202, response.text
        return response.json()

    def status(self, project_id: str) -> dict:
        response = self.http.get(f"/api/v1/projects/{project_id}/status")
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, project_id: str) -> list[dict]:
        response = self.http.get(f"/api/v1/projects/{project_id}/events", params={"limit": 1000})
        assert response.status_code == 200, response.text
        return response.json()["results"]

    def wait_for_node_online(self, name: str, timeout: float = 30) -> None:
        """Polls the node list (bounded) until node `name` is online."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.http.get("/api/v1/nodes/")
            assert response.status_code == 200, response.text
            if any(n["name"] == name and n["online"] for n in response.json()["results"]):
                return
            time.sleep(0.1)
        raise AssertionError(f"node {name} did not come online within {timeout} s")

    def wait_until(self, project_id: str, predicate, timeout: float = 60, what: str = "") -> dict:
        """Polls the status (bounded) until `predicate(status)` holds."""
        deadline = time.monotonic() + timeout
        status = self.status(project_id)
        while time.monotonic() < deadline:
            if predicate(status):
                return status
            time.sleep(0.1)
            status = self.status(project_id)
        raise AssertionError(f"timed out waiting for {what or predicate}: last status {status}")
