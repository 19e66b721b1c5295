"""Helpers for the sync tests: ready projects, forge deliveries signed as each forge signs them,
and a receiver of notifications on 127.0.0.1 that can be told to fail."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from nodes.models import Node
from projects import leases, services
from projects.models import Project
from tests.support.gitservers import serve_in_background


def ready_project(owner, node: Node, name: str, git_url: str, branch: str = "main") -> Project:
    """A project cloned by `node`'s agent through the lease protocol, now `ready`."""
    project = services.request_clone(
        owner=owner, name=name, git_url=git_url, branch=branch, node=node
    )
    finish_head_job(node, project)
    project.refresh_from_db()
    assert project.status == "ready"
    return project


def finish_head_job(node: Node, project: Project) -> None:
    grant = leases.lease(node=node, request_id=uuid.uuid4().hex, instance_id=str(uuid.uuid4()))
    assert grant is not None and grant.project.id == str(project.pk)
    leases.complete(
        node=node,
        job_id=grant.job.id,
        lease_token=grant.job.lease_token,
        result={
            "commit": "c0ffee" * 6 + "abcd",
            "branch": project.branch,
            "local_path": "/data/projects/x",
            "duration_ms": 5,
            "size_bytes": 10,
        },
    )


def _hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_push(secret: str, *, repo: str, branch: str, delivery: str | None = None):
    """A GitHub push delivery: `X-Hub-Signature-256: sha256=<HMAC of the body>`."""
    payload = {
        "ref": f"refs/heads/{branch}",
        "repository": {
            "full_name": repo,
            "clone_url": f"https://github.com/{repo}.git",
            "ssh_url": f"git@github.com:{repo}.git",
            "html_url": f"https://github.com/{repo}",
        },
    }
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + _hex(secret, body),
    }
    return body, headers


def gitlab_push(secret: str, *, repo: str, branch: str, delivery: str | None = None):
    """A GitLab push delivery: the secret itself in `X-Gitlab-Token`."""
    payload = {
        "object_kind": "push",
        "ref": f"refs/heads/{branch}",
        "project": {
            "path_with_namespace": repo,
            "git_http_url": f"https://gitlab.com/{repo}.git",
            "git_ssh_url": f"git@gitlab.com:{repo}.git",
        },
        "repository": {
            "git_http_url": f"https://gitlab.com/{repo}.git",
            "git_ssh_url": f"git@gitlab.com:{repo}.git",
        },
    }
    body = json.dumps(payload).encode()
    headers = {
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()),
        "X-Gitlab-Token": secret,
    }
    return body, headers


def gitea_push(secret: str, *, repo: str, branch: str, delivery: str | None = None):
    """A Gitea or Forgejo push delivery: `X-Gitea-Signature: <HMAC of the body>`."""
    payload = {
        "ref": f"refs/heads/{branch}",
        "repository": {
            "full_name": repo,
            "clone_url": f"https://codeberg.org/{repo}.git",
            "ssh_url": f"ssh://git@codeberg.org/{repo}.git",
            "html_url": f"https://codeberg.org/{repo}",
        },
    }
    body = json.dumps(payload).encode()
    headers = {
        "X-Gitea-Event": "push",
        "X-Gitea-Delivery": delivery or str(uuid.uuid4()),
        "X-Gitea-Signature": _hex(secret, body),
    }
    return body, headers


class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST; `plan` says how to answer the next
    ones: an int status, or "hang" to answer only after `hang_seconds`."""

    def __init__(self, hang_seconds: float = 3.0) -> None:
        self.received: list[dict[str, Any]] = []
        self.plan: list[int | str] = []
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    step = receiver.plan.pop(0) if receiver.plan else 200
                if step == "hang":
                    time.sleep(receiver.hang_seconds)  # the sender has given up by now
                with receiver._lock:
                    receiver.received.append(
                        {"headers": dict(self.headers), "body": body, "answered": step}
                    )
                try:
                    self.send_response(200 if step == "hang" else int(step))
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = serve_in_background(self.server)

    def accepted(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.received if r["answered"] == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HttpAgent:
    """One agent instance speaking the agent protocol over real HTTP, without running git."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.instance_id = str(uuid.uuid4())

    def heartbeat(self) -> None:
        body = {
            "instance_id": self.instance_id,
            "agent_version": "test",
            "hostname": "box",
            "disk_free_bytes": 10**9,
            "running_jobs": [],
        }
        response = self.http.post("/api/v1/agent/heartbeat", json=body)
        assert response.status_code == 200, response.text

    def lease(self, wait: int = 5) -> dict:
        body = {"instance_id": self.instance_id, "request_id": uuid.uuid4().hex, "wait": wait}
        response = self.http.post("/api/v1/agent/lease", json=body, timeout=wait + 15)
        if response.status_code == 204:
            return {}  # nothing to do within the wait
        assert response.status_code == 200, response.text
        return response.json()

    def succeed(self, leased: dict) -> None:
        body = {
            "lease_token": leased["lease"]["token"],
            "outcome": "succeeded",
            "result": {
                "commit": "a" * 40,
                "branch": leased["job"]["branch"],
                "local_path": "/data/projects/x",
                "duration_ms": 1,
                "size_bytes": 1,
            },
        }
        job_id = leased["job"]["id"]
        response = self.http.post(f"/api/v1/agent/jobs/{job_id}/complete", json=body)
        assert response.status_code == 200, response.text
