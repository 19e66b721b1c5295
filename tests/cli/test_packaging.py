"""`gitfleet` installs and runs on its own: declared in pyproject, nothing of the server inside."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULES = {
    "django", "rest_framework", "agent", "gitpolicy", "projects", "nodes", "credentials",
    "accounts", "core", "config",
}  # fmt: skip


def test_pyproject_installs_the_command_with_requests_as_its_only_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    entry = project["project"]["scripts"]["gitfleet"]
    assert entry == "gitfleet_cli.__main__:main"
    module, function = entry.split(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert "gitfleet_cli" in project["tool"]["setuptools"]["packages"]
    assert [d.split(">")[0].split("=")[0] for d in project["project"]["dependencies"]] == [
        "requests"
    ]
    pinned = (ROOT / "requirements" / "cli.txt").read_text().split()
    assert [line for line in pinned if not line.startswith("#") and "==" in line] == [
        "requests==2.34.2"
    ]


def test_a_copy_of_the_package_alone_runs_and_imports_nothing_of_the_server(tmp_path: Path):
    shutil.copytree(ROOT / "gitfleet_cli", tmp_path / "gitfleet_cli")
    code = (
        "import sys, runpy\n"
        "sys.argv = ['gitfleet', '--help']\n"
        "try:\n"
        "    runpy.run_module('gitfleet_cli', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"loaded = {{name.split('.')[0] for name in sys.modules}} & {SERVER_MODULES!r}\n"
        "assert not loaded, loaded\n"
        "import os\n"
        "where = os.path.abspath(sys.modules['gitfleet_cli'].__file__)\n"
        "assert where.startswith(os.getcwd()), where\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", os.defpath)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "exit codes:" in done.stdout
