"""`make run` on a newcomer's machine: taken ports stop it with one clear line, and the local
settings it writes are read by every later `manage.py` command, in any shell."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ports_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "platform" / "local" / "ports.py"), *args],
        env={**os.environ, "GITFLEET_RUN_COMMAND": "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_taken_port_is_named_with_what_holds_it_and_the_setting_that_moves_it():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        done = ports_check("127.0.0.1", f"{port}:GITFLEET_PORT")

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in lines[0]
    assert f"pid {os.getpid()}" in lines[0]  # this test process holds it
    assert f"GITFLEET_PORT={port + 1} make run" in lines[0]


def test_the_advice_names_the_command_that_was_run():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        done = ports_check(
            "127.0.0.1", f"{port}:GITFLEET_DEMO_GIT_PORT", env={"GITFLEET_RUN_COMMAND": "make demo"}
        )

    assert done.returncode == 1
    assert f"GITFLEET_DEMO_GIT_PORT={port + 1} make demo" in done.stderr


def test_free_ports_pass_silently():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    done = ports_check("127.0.0.1", f"{port}:GITFLEET_PORT")

    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def manage(env_file: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE", "DATABASE_URL"}
    }
    env["GITFLEET_ENV_FILE"] = env_file
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


PRINT_SETTINGS = "from django.conf import settings; print(settings.SECRET_KEY, settings.DEBUG)"


def test_manage_py_reads_the_local_settings_file_in_a_new_shell(tmp_path):
    env_file = tmp_path / "local.env"
    env_file.write_text(
        f"SECRET_KEY=local-key-from-the-file\nDEBUG=true\nGITFLEET_DATA_DIR={tmp_path}\n"
    )

    done = manage(str(env_file), "shell", "-c", PRINT_SETTINGS)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["local-key-from-the-file", "True"]


def test_without_the_local_settings_file_production_still_demands_a_secret_key(tmp_path):
    done = manage("", "shell", "-c", PRINT_SETTINGS)

    assert done.returncode != 0
    assert "SECRET_KEY" in done.stderr
