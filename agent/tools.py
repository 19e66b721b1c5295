"""The versions of git and git-lfs on this node, reported in every heartbeat."""

from __future__ import annotations

import functools
import os
import re
import subprocess


@functools.cache
def versions() -> dict[str, str]:
    """`git_version` and `git_lfs_version` ("" for a tool that is missing), read once."""
    return {
        "git_version": _version(["git", "--version"], r"git version (\S+)"),
        "git_lfs_version": _version(["git-lfs", "version"], r"git-lfs/(\S+)"),
    }


def _version(command: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=False,
            stdin=subprocess.DEVNULL, env={"PATH": _path(), "LC_ALL": "C"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.match(pattern, done.stdout)
    return match[1][:50] if match and done.returncode == 0 else ""


def _path() -> str:
    return os.environ.get("PATH", os.defpath)
