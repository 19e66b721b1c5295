"""The agent and the git-input policy it ships with import nothing of the server or Django."""

from __future__ import annotations

import subprocess
import sys

SERVER_PACKAGES = (
    "django",
    "rest_framework",
    "drf_spectacular",
    "config",
    "core",
    "nodes",
    "projects",
)


def test_the_agent_and_gitpolicy_import_nothing_of_the_server():
    probe = (
        "import sys, agent.__main__, agent.runner, agent.operations, gitpolicy; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_PACKAGES!r})))"
    )

    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.strip() == "[]", done.stdout
