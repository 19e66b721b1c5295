"""The local demo: a small git repository served on 127.0.0.1 and a clone of it requested
through the API, so a newcomer without network access sees a project reach `ready`.

Run by `make demo` (platform/local/run.sh with GITFLEET_DEMO=1). Two steps:
  demo.py prepare DIR            make DIR/served/hello.git with a few commits (once)
  demo.py request URL TOKEN GIT  ask the server to clone GIT onto node 'local', then wait
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": tempfile.gettempdir(),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Gitfleet demo",
    "GIT_AUTHOR_EMAIL": "demo@localhost",
    "GIT_COMMITTER_NAME": "Gitfleet demo",
    "GIT_COMMITTER_EMAIL": "demo@localhost",
}


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def prepare(directory: Path) -> None:
    bare = directory / "served" / "hello.git"
    if bare.exists():
        return
    work = directory / "hello-work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("init", "--quiet", "--initial-branch=main", str(work))
    (work / "README.md").write_text("# hello\n\nA project cloned by Gitfleet's local demo.\n")
    (work / "train.py").write_text('print("training on the node")\n')
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "First commit", cwd=work)
    git("push", "--quiet", str(bare), "main", cwd=work)
    print(f"Demo repository ready: {bare}")


def call(method: str, url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - local URL
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def request_clone(server: str, token: str, git_url: str) -> None:
    status, body = call("GET", f"{server}/api/v1/projects/?limit=100", token)
    existing = [
        p for p in body.get("results", []) if p["name"] == "hello" and p["status"] != "deleted"
    ]
    if existing:
        project = existing[0]
        print(f"Demo project 'hello' exists ({project['status']}).")
    else:
        status, body = call(
            "POST",
            f"{server}/api/v1/projects/clone",
            token,
            {"name": "hello", "git_url": git_url, "branch": "main", "node": "local"},
        )
        if status != 202:
            print(f"The demo clone was refused ({status}): {body}", file=sys.stderr)
            return
        project = body["project"]
        print(f"Asked for a clone of {git_url} onto node 'local' (project {project['id']}).")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, state = call("GET", f"{server}/api/v1/projects/{project['id']}/status", token)
        if state.get("status") in ("ready", "failed"):
            break
        time.sleep(0.5)
    print(f"Demo project 'hello' is {state.get('status')} at commit {state.get('commit') or '-'}.")
    print(f"  Its checkout:   {state.get('local_path') or '-'}")
    print(f"  Its timeline:   {server}/api/v1/projects/{project['id']}/events")
    print(f"  In the console: {server}/admin/projects/project/{project['id']}/change/")


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        prepare(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["request"]:
        request_clone(*sys.argv[2:5])
    else:
        raise SystemExit(__doc__)
