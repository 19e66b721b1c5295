"""`make run` keeps one local credential key: made once in data/secrets (0600), then reused,
unless CREDENTIAL_KEYS is given."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

RUN_SH = Path(__file__).resolve().parents[2] / "platform" / "local" / "run.sh"


def key_block() -> str:
    """The part of run.sh that makes or reads the key, run here on its own (the whole script
    also starts the server and an agent)."""
    match = re.search(r"^CREDENTIAL_KEYS_FILE=.*?^fi$", RUN_SH.read_text(), re.M | re.S)
    assert match, "run.sh no longer makes a credential key"
    return match.group(0)


def run_block(secrets: Path, **environment: str) -> str:
    script = f'set -euo pipefail\nSECRETS="$1"\nPY="$2"\n{key_block()}\nprintf "\\n%s" "$CREDENTIAL_KEYS"'
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIAL_KEYS"} | environment
    done = subprocess.run(
        ["bash", "-c", script, "run.sh", str(secrets), sys.executable],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()[-1]  # after what run.sh says it did


def test_a_key_is_made_once_private_and_reused(tmp_path):
    secrets = tmp_path / "secrets"

    first = run_block(secrets)
    second = run_block(secrets)

    key_file = secrets / "credential-keys"
    assert first == second == key_file.read_text().strip()
    Fernet(first)  # a real Fernet key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(secrets.glob("*.new"))


def test_given_keys_win_and_nothing_is_written(tmp_path):
    secrets = tmp_path / "secrets"

    assert run_block(secrets, CREDENTIAL_KEYS="given-key") == "given-key"
    assert not secrets.exists()
