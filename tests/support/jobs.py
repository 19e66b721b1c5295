"""Helpers for the agent's tests: its configuration, jobs as the server sends them, and
snapshots and mounts of the node's disk."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.git import JobControl
from agent.operations import JobResult, perform
from agent.validation import Job, parse_job


def config_env(storage: Path, **overrides: str) -> dict[str, str]:
    """Environment for an agent that may reach git servers on 127.0.0.1."""
    env = {
        "AGENT_SERVER_URL": "http://127.0.0.1:9",
        "AGENT_TOKEN": "gfa_test_token",
        "AGENT_STORAGE_PATH": str(storage),
        "AGENT_GIT_ALLOWED_SCHEMES": "git,http,file",
        "AGENT_GIT_ALLOW_PRIVATE_HOSTS": "true",
        "AGENT_GIT_TIMEOUT": "60",
    }
    env.update(overrides)
    return env


def job_data(**overrides: Any) -> dict[str, Any]:
    """A job as the server would send it."""
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "kind": "clone",
        "project_id": str(uuid.uuid4()),
        "git_url": "https://example.com/group/repo.git",
        "branch": "main",
        "target_path": "42_my-project",
        "depth": None,
        "timeout_seconds": 60,
    }
    data.update(overrides)
    return data


def make_job(config: AgentConfig, **overrides: Any) -> Job:
    return parse_job(
        job_data(**overrides),
        allowed_schemes=config.git_allowed_schemes,
        allow_private_hosts=config.git_allow_private_hosts,
    )


def run_job(config: AgentConfig, control: JobControl | None = None, **overrides: Any) -> JobResult:
    """Validate and perform one job, as the runner would."""
    return perform(make_job(config, **overrides), config, control or JobControl())


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry below `root` (not following symlinks) with its content, for exact comparison."""
    entries: dict[str, tuple[str, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            entries[relative] = ("link", str(path.readlink()))
        elif path.is_dir():
            entries[relative] = ("dir", b"")
        else:
            entries[relative] = (oct(path.stat().st_mode), path.read_bytes())
    return entries


def make_deep_folders(root: Path, levels: int, name: str, content: bytes) -> None:
    """`root/d/d/.../d/<name>`, `levels` folders deep, made relative to each folder's fd."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(file_fd, content)
        os.close(file_fd)
    finally:
        os.close(fd)


def read_deep_file(root: Path, levels: int, name: str) -> bytes:
    """The file that `make_deep_folders` made, read the same way."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            return os.read(file_fd, 1024)
        finally:
            os.close(file_fd)
    finally:
        os.close(fd)


def mount(*args: str) -> None:
    """`mount args...`; the test is skipped, saying why, where mounting is not permitted."""
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return
    refused = ("permission denied", "only root", "not permitted", "must be superuser")
    if os.geteuid() != 0 or any(word in done.stderr.lower() for word in refused):
        pytest.skip(f"mounting is not permitted here: {done.stderr.strip()}")
    raise AssertionError(f"mount {' '.join(args)} failed: {done.stderr}")


def unmount(target: Path) -> None:
    done = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0:  # still busy: detach it now, the kernel frees it when it can
        subprocess.run(["umount", "--lazy", str(target)], check=True)


def mount_tmpfs(target: Path, size: str) -> None:
    """A tmpfs of `size` (e.g. "2m") on `target`: a small disk that fills up for real."""
    mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target))


def worktree_snapshot(checkout: Path) -> dict[str, tuple[str, bytes | str]]:
    """A checkout's files and what HEAD and its branch point at (fetch may add objects)."""
    files = {k: v for k, v in snapshot(checkout).items() if not k.startswith(".git")}
    git_dir = checkout / ".git"
    files[".git/HEAD"] = ("ref", (git_dir / "HEAD").read_bytes())
    files[".git/index"] = ("index", (git_dir / "index").read_bytes())
    for ref in sorted((git_dir / "refs" / "heads").rglob("*")):
        files[str(ref.relative_to(checkout))] = ("ref", ref.read_bytes())
    return files
