"""Running `gitfleet` as people do: a separate process with its own HOME and config folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


CliRunner = Callable[..., Run]


def cli_runner(home: Path) -> CliRunner:
    """`run("ls", "--json", input=..., env={...})` runs `python -m gitfleet_cli` in `home`."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Run:
        environment = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            **(env or {}),
        }
        done = subprocess.run(
            [sys.executable, "-m", "gitfleet_cli", *args],
            cwd=ROOT,
            env=environment,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def run_cli(tmp_path: Path) -> CliRunner:
    home = tmp_path / "home"
    home.mkdir()
    return cli_runner(home)
