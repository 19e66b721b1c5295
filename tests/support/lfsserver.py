"""A real Git LFS server for the tests: giftless with local storage on 127.0.0.1, anonymous
reads and writes, in a subprocess of its own; and the upstream side of an LFS repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.gitservers import TEST_GIT_ENV, Upstream, free_port, git, wait_for_port

_SERVE = """
import sys
from werkzeug.serving import run_simple
from giftless.app import init_app
run_simple("127.0.0.1", int(sys.argv[1]), init_app(), threaded=True)
"""


@dataclass
class LfsServer:
    """A running giftless; `endpoint("org/repo")` is the LFS URL git-lfs and the agent use."""

    base_url: str
    process: subprocess.Popen[bytes]
    storage: Path

    def endpoint(self, repo: str = "org/repo") -> str:
        return f"{self.base_url}/{repo}"

    def stored(self) -> list[Path]:
        return [path for path in self.storage.rglob("*") if path.is_file()]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_lfs_server(storage: Path) -> LfsServer:
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "AUTH_PROVIDERS": ["giftless.auth.allow_anon:read_write"],
        "TRANSFER_ADAPTERS": {
            "basic": {
                "factory": "giftless.transfer.basic_streaming:factory",
                "options": {
                    "storage_class": "giftless.storage.local_storage:LocalStorage",
                    "storage_options": {"path": str(storage)},
                },
            }
        },
    }
    port = free_port()
    env = {**os.environ, "GIFTLESS_CONFIG_STR": json.dumps(config), "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=20)
    except OSError:
        process.kill()
        process.wait()
        raise
    return LfsServer(base_url=f"http://127.0.0.1:{port}", process=process, storage=storage)


def lfs_git(*args: str, cwd: Path) -> str:
    """git with git-lfs's filter and pre-push upload enabled for the test's own work tree."""
    completed = subprocess.run(
        ["git", "-c", "filter.lfs.clean=git-lfs clean -- %f",
         "-c", "filter.lfs.smudge=git-lfs smudge -- %f",
         "-c", "filter.lfs.process=git-lfs filter-process", "-c", "filter.lfs.required=true",
         *args],
        cwd=cwd, env=TEST_GIT_ENV, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{completed.stderr}")
    return completed.stdout


def commit_lfs_files(
    upstream: Upstream,
    endpoint: str,
    files: dict[str, bytes],
    *,
    plain: dict[str, str] | None = None,
    upload_to: str = "",
) -> str:
    """Commit `files` as LFS objects (patterns from their suffixes) with a .lfsconfig naming
    `endpoint`, upload the objects to the LFS server (at `upload_to` when the endpoint is a
    front that asks for a password), push; return the commit id. Later commits of LFS files
    must come through here too: a plain `git add` would store them whole."""
    work = upstream.work
    (work / ".lfsconfig").write_text(f'[lfs]\n\turl = "{endpoint}"\n')
    attributes = work / ".gitattributes"
    lines = attributes.read_text().splitlines() if attributes.exists() else []
    for suffix in sorted({Path(name).suffix for name in files}):
        line = f"*{suffix} filter=lfs diff=lfs merge=lfs -text"
        if line not in lines:
            lines.append(line)
    attributes.write_text("".join(f"{line}\n" for line in lines))
    for name, content in {**files, **(plain or {})}.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    lfs_git("add", "--all", cwd=work)
    lfs_git("commit", "--quiet", "-m", "lfs files", cwd=work)
    # lfs.url from the command line beats the .lfsconfig just written.
    target = upload_to or endpoint
    lfs_git("-c", f"lfs.url={target}", "lfs", "push", "--all", target, cwd=work)
    git(
        "-c", f"lfs.url={target}", "push", "--quiet", "--force", "origin",
        f"HEAD:refs/heads/{upstream.branch}", cwd=work,
    )  # fmt: skip
    return upstream.head()
