"""Helpers for tests that speak to the API in-process: clients, request bodies, log checks."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
from django.utils import timezone
from rest_framework.test import APIClient

from nodes.models import Node
from projects import projection
from projects.models import Event


def bearer_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


class ASGIClient:
    """Calls the site's ASGI application in this process, as uvicorn would (with the layers in
    front of Django, such as the one that holds long polls), with a bearer token. Each call runs
    on an event loop of the calling thread; its answer is an `httpx.Response`."""

    def __init__(self, token: str):
        from config.handlers import application

        self._app = application()
        self._token = token

    def post(self, path: str, data: dict, format: str = "json") -> httpx.Response:
        assert format == "json"
        return asyncio.run(self._post(path, data))

    async def _post(self, path: str, data: dict) -> httpx.Response:
        transport = httpx.ASGITransport(app=self._app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post(
                path,
                content=json.dumps(data),
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "Content-Type": "application/json",
                },
                timeout=60,
            )


def bring_online(node: Node) -> Node:
    Node.objects.filter(pk=node.pk).update(last_seen_at=timezone.now())
    node.refresh_from_db()
    return node


def clone_body(**overrides) -> dict:
    body = {
        "name": "demo",
        "git_url": "https://git.example.com/group/demo.git",
        "branch": "main",
        "node": "node-1",
    }
    body.update(overrides)
    return body


def other_uuid_spellings(value: uuid.UUID) -> list[str]:
    """Forms `uuid.UUID` reads besides the canonical lower-case 8-4-4-4-12 one."""
    text = str(value)
    return [
        f"{{{text}}}",
        f"urn:uuid:{text}",
        text.upper(),
        text.replace("-", ""),
        f"{{{text.upper()}}}",
    ]


def assert_projections_match_log() -> None:
    """Replay == stored for every project, as `rebuild_projections --check` would say."""
    drifts = [str(d) for _, found in projection.diffs(projection.replay_all()) for d in found]
    drifts += [str(d) for d in projection.orphans()]
    assert drifts == []


def event_types(project_id) -> list[str]:
    return list(
        Event.objects.filter(project_id=project_id)
        .order_by("version")
        .values_list("type", flat=True)
    )


class AgentSession:
    """Speaks the agent protocol through the test client, as one agent instance."""

    def __init__(self, client: APIClient, instance_id: str | None = None):
        self.client = client
        self.instance_id = instance_id or str(uuid.uuid4())

    def lease(self, *, wait: int = 0, request_id: str | None = None):
        body = {
            "instance_id": self.instance_id,
            "request_id": request_id or str(uuid.uuid4()),
            "wait": wait,
        }
        return self.client.post("/api/v1/agent/lease", body, format="json")

    def renew(self, job_id: str, token: str, progress: dict | None = None):
        body = {"lease_token": token}
        if progress is not None:
            body["progress"] = progress
        return self.client.post(f"/api/v1/agent/jobs/{job_id}/renew", body, format="json")

    def succeed(self, job_id: str, token: str, commit: str = "a" * 40):
        body = {
            "lease_token": token,
            "outcome": "succeeded",
            "result": {
                "commit": commit,
                "branch": "main",
                "local_path": "/data/projects/x",
                "duration_ms": 12,
                "size_bytes": 345,
            },
        }
        return self.client.post(f"/api/v1/agent/jobs/{job_id}/complete", body, format="json")

    def fail(self, job_id: str, token: str, *, code: str = "git_error", retryable: bool = False):
        body = {
            "lease_token": token,
            "outcome": "failed",
            "error": {"code": code, "message": "it broke", "retryable": retryable},
        }
        return self.client.post(f"/api/v1/agent/jobs/{job_id}/complete", body, format="json")

    def heartbeat(self, **overrides):
        body = {
            "instance_id": self.instance_id,
            "agent_version": "0.1.0",
            "hostname": "box",
            "disk_free_bytes": 10**9,
            "running_jobs": [],
        }
        body.update(overrides)
        return self.client.post("/api/v1/agent/heartbeat", body, format="json")
