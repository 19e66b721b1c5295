"""Helpers for the schema-driven fuzz (`tests/test_schema_fuzz.py`): the server it runs against,
the data it starts from, and how schemathesis is configured and checked."""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from credentials.validation import KNOWN_HOSTS_MAX_BYTES, SSH_KEY_MAX_BYTES
from tests.support.servers import ServerSite

# Examples generated per operation and identity in the fuzzing phase. The coverage phase adds
# schemathesis' deterministic cases derived from the schema: each documented boundary, a value
# of each wrong type, each required field missing, and the methods an operation does not take.
EXAMPLES_PER_OPERATION = 30

# The fuzz exercises the views, not the throttle or the long-poll hold: lease calls are held at
# most one second, the seeded node stays online for the whole run.
FUZZ_SERVER = {
    "API_USER_RATE": "100000/minute",
    "LONG_POLL_DEFAULT_WAIT": "0",
    "LONG_POLL_MAX_WAIT": "1",
    "LONG_POLL_RECHECK_SECONDS": "0.5",
    "NODE_ONLINE_WINDOW": "3600",
    "NODE_PRESENCE_WRITE_SECONDS": "0",
    "RETRY_BACKOFF_SECONDS": "0",
    # The seeded projects of one person hold leases at once (a running pull, live leases).
    "MAX_RUNNING_JOBS_PER_USER_PER_NODE": "100",
    # Without a key, storing a credential answers 503, which the fuzz counts as a server error.
    "CREDENTIAL_KEYS": Fernet.generate_key().decode(),
    # No sweep while the fuzz runs: it would send notifications to whatever URLs the fuzz
    # subscribed, and only 127.0.0.1 may be reached from the tests.
    "SWEEP_SECONDS": "3600",
}

# A lease token the generator may put in a renew, complete or release body: the test swaps it,
# and the job in the path, for a lease granted just before the call, so that these calls get
# past the lease check too. It is a string of at most 64 characters, like any lease token.
LIVE_LEASE = "live-lease"

# What a clone may ask for on the fuzz server; random strings almost never pass the URL policy.
ACCEPTABLE_CLONE = {
    "name": "fuzz-clone",
    "git_url": "https://git.example.com/group/fuzz.git",
    "ref": "main",
    "node": "node-1",
}
# Optional clone fields whose random values almost never pass; `branch` must equal `ref`.
_ACCEPTABLE_CLONE_OPTIONS = {"branch": "main", "filter": "", "sparse": []}

# A git credential the fuzz server accepts, and a secret to rotate one to; random strings
# almost never pass the token and host checks.
ACCEPTABLE_CREDENTIAL = {
    "name": "fuzz-credential",
    "kind": "https-token",
    "host": "git.example.com",
    "secret": "fuzz-token-0123456789abcdef",
}
ACCEPTABLE_SECRET = {"secret": "fuzz-token-rotated-0123456789"}

# A subscription the fuzz server accepts (a loopback receiver nobody listens on; the fuzz
# server never sweeps, so nothing is sent): random URLs and event names are refused.
ACCEPTABLE_SUBSCRIPTION = {"url": "http://127.0.0.1:9/fuzz", "events": ["JobQueued"]}

FUZZ_CONFIG = schemathesis.Config.from_dict(
    {
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "generation": {
            "mode": "all",  # schema-valid and deliberately invalid requests
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            "database": "none",
            "no-shrink": True,
            # The fuzz authenticates itself; generated credentials would only be refused.
            "with-security-parameters": False,
        },
        "phases": {
            "examples": {"enabled": False},
            "coverage": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "checks": {
            # A body over MAX_REQUEST_BODY_BYTES is refused with 413: a refusal all the same.
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415"]
            },
        },
    }
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


@dataclass
class Seeded:
    """Who the fuzz speaks as, and the objects that exist before it starts."""

    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, list[Any]] = field(default_factory=dict)
    deletable: dict[str, list[Any]] = field(default_factory=dict)
    """Ids a DELETE may use instead of `ids`, so that the other operations keep theirs."""
    protected: dict[str, list[Any]] = field(default_factory=dict)
    """Path values the fuzz must never use: the ids of the tokens it speaks with."""
    live: LiveLeases | None = None
    clients: list[httpx.Client] = field(default_factory=list)

    def known(self, name: str, value: Any, *, deleting: bool = False) -> st.SearchStrategy:
        """The generated path value, or (as often) an id that exists: otherwise every path
        with an id would answer 404 and the views behind it would never run."""
        known = (deleting and self.deletable.get(name)) or self.ids.get(name)
        protected = self.protected.get(name, [])
        if known and any(str(value) == str(kept) for kept in protected):
            return st.sampled_from(known)  # revoking its own credentials would end the fuzz
        if not known or not (_is_uuid(value) or protected):
            return st.just(value)
        # Known ids first: in deterministic generation Hypothesis favours the first choice, and
        # with the generated id first whole runs reached some views through 404s only.
        return st.sampled_from([*known, value])

    def close(self) -> None:
        for client in self.clients:
            client.close()


def steer_body(body: Any) -> st.SearchStrategy:
    """The generated body, or the same with values that get past the checks the schema cannot
    express (a live lease, an acceptable clone). Only values the schema allows are replaced, so
    a body generated to be invalid stays invalid."""
    if not isinstance(body, dict):
        return st.just(body)
    if _fits(body, {"lease_token": 64}):
        return st.sampled_from([body, _one_outcome({**body, "lease_token": LIVE_LEASE})])
    if _fits(body, {"name": 100, "git_url": 2048, "ref": 255, "node": 64}):
        options = {k: v for k, v in _ACCEPTABLE_CLONE_OPTIONS.items() if k in body}
        return st.sampled_from([body, {**body, **ACCEPTABLE_CLONE, **options}])
    if _is_credential(body):
        optional = {name: "" for name in ("username", "known_hosts") if name in body}
        return st.sampled_from([body, {**body, **ACCEPTABLE_CREDENTIAL, **optional}])
    if isinstance(body.get("secret"), str) and _fits(body, {"secret": SSH_KEY_MAX_BYTES}):
        # Extra properties are schema-valid but refused, so almost no generated rotation
        # reached the rotation itself; the acceptable secret alone is schema-valid too.
        return st.sampled_from([body, ACCEPTABLE_SECRET])
    if _is_subscription(body):
        return st.sampled_from([body, {**body, **ACCEPTABLE_SUBSCRIPTION}])
    return st.just(body)


def _is_subscription(body: dict) -> bool:
    """A schema-valid subscription body, so that steering keeps an invalid one invalid."""
    events = body.get("events")
    projects = body.get("projects", [])
    return (
        set(body) <= {"url", "events", "projects"}
        and _fits(body, {"url": 2048})
        and isinstance(events, list)
        and 1 <= len(events) <= 64
        and all(isinstance(e, str) and len(e) <= 64 for e in events)
        and isinstance(projects, list)
        and all(isinstance(p, str) and len(p) <= 36 for p in projects)
    )


def _is_credential(body: dict) -> bool:
    """A schema-valid credential body (only its own fields, every one a string within its
    bounds), so that steering it never turns a deliberately invalid body into a valid one."""
    fields = {"name", "kind", "host", "username", "secret", "known_hosts"}
    return (
        set(body) <= fields
        and all(isinstance(value, str) for value in body.values())
        and body.get("kind") in ("https-token", "ssh-key")
        and len(body.get("username", "")) <= 100
        and len(body.get("known_hosts", "")) <= KNOWN_HOSTS_MAX_BYTES
        and _fits(body, {"name": 64, "host": 260, "secret": SSH_KEY_MAX_BYTES})
    )


def _one_outcome(body: dict) -> dict:
    """A completion report with only the part its outcome needs: the schema cannot say that
    `succeeded` takes a `result` and no `error` (and `failed` the reverse), so without this
    almost every generated report is refused before its lease is looked at. Dropping an optional
    property leaves a valid body valid."""
    if body.get("outcome") == "succeeded" and "result" in body:
        return {key: value for key, value in body.items() if key != "error"}
    if body.get("outcome") == "failed" and "error" in body:
        return {key: value for key, value in body.items() if key != "result"}
    return body


def _fits(body: dict, max_lengths: dict[str, int]) -> bool:
    return all(
        isinstance(body.get(name), str) and 1 <= len(body[name]) <= most
        for name, most in max_lengths.items()
    )


_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) ", re.MULTILINE)


def server_errors(log: str) -> list[str]:
    """The ERROR and CRITICAL records of a server log (text format) with their tracebacks, and
    any traceback printed outside a record."""
    starts = sorted({0, *(match.start() for match in _LOG_RECORD.finditer(log)), len(log)})
    chunks = (log[start:end] for start, end in itertools.pairwise(starts))
    return [chunk for chunk in chunks if _is_error(chunk)]


def _is_error(chunk: str) -> bool:
    record = _LOG_RECORD.match(chunk)
    return "Traceback" in chunk or (record is not None and record["level"] in ("ERROR", "CRITICAL"))


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def seed_site(site: ServerSite, url: str, seeded: Seeded) -> None:
    """People, a node, and projects in several states, made the way clients make them."""
    accounts = site.create_accounts(users=["alice"], staff=["root"], nodes=["node-1"])
    seeded.tokens["owner"] = accounts.users["alice"]
    seeded.tokens["staff"] = accounts.users["root"]
    seeded.tokens["agent"] = accounts.nodes["node-1"]
    person = _client(url, seeded.tokens["owner"])
    agent = Agent(_client(url, seeded.tokens["agent"]))
    seeded.clients += [person, agent.http]
    agent.heartbeat()

    ready = _clone(person, "fuzz-ready")
    leased = agent.lease()
    agent.complete(leased, {"outcome": "succeeded", "result": _RESULT})

    failed = _clone(person, "fuzz-failed")
    leased_failed = agent.lease()
    error = {"code": "branch_not_found", "message": "no such branch", "retryable": False}
    agent.complete(leased_failed, {"outcome": "failed", "error": error})

    pull = person.post(f"/api/v1/projects/{ready['project']['id']}/pull")
    assert pull.status_code == 202, pull.text
    running = agent.lease()

    # Kept out of `ids`, so the user API fuzz never deletes it: live leases are pulls of it.
    spare = _clone(person, "fuzz-live")
    agent.complete(agent.lease(), {"outcome": "succeeded", "result": _RESULT})

    # Tokens the fuzz may revoke, and the ones it speaks with, which it must not.
    staff = _client(url, seeded.tokens["staff"])
    seeded.clients.append(staff)
    protected = [
        row["id"] for who in (person, staff) for row in who.get("/api/v1/tokens/").json()["results"]
    ]
    disposable = [
        who.post("/api/v1/tokens/", json={"name": f"fuzz-{n}"}).json()["id"]
        for who in (person, staff)
        for n in range(3)
    ]
    seeded.protected = {"token_id": protected}

    credential = person.post(
        "/api/v1/credentials/", json={**ACCEPTABLE_CREDENTIAL, "name": "seeded"}
    )
    assert credential.status_code == 201, credential.text

    hooks = [person.post("/api/v1/hooks/", json={"name": f"seeded-{n}"}) for n in range(2)]
    subscriptions = [
        person.post("/api/v1/subscriptions/", json=ACCEPTABLE_SUBSCRIPTION) for _ in range(2)
    ]
    for created in (*hooks, *subscriptions):
        assert created.status_code == 201, created.text

    nodes = person.get("/api/v1/nodes/").json()["results"]
    seeded.ids = {
        "token_id": disposable,
        "project_id": [ready["project"]["id"], failed["project"]["id"]],
        "job_id": [ready["job"]["id"], failed["job"]["id"], running["job"]["id"]],
        "node_id": [node["id"] for node in nodes],
        "credential_id": [credential.json()["id"]],
        "hook_id": [hooks[0].json()["id"]],
        "subscription_id": [subscriptions[0].json()["id"]],
    }
    seeded.deletable = {
        "hook_id": [hooks[1].json()["id"]],
        "subscription_id": [subscriptions[1].json()["id"]],
    }
    seeded.live = LiveLeases(person, agent.http, spare["project"]["id"])


_RESULT = {
    "commit": "a" * 40,
    "branch": "main",
    "local_path": "/data/projects/1_fuzz-ready",
    "duration_ms": 5,
    "size_bytes": 10,
}


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=15)


def _clone(person: httpx.Client, name: str) -> dict:
    body = {
        "name": name,
        "git_url": "https://git.example.com/group/demo.git",
        "branch": "main",
        "node": "node-1",
    }
    response = person.post("/api/v1/projects/clone", json=body)
    assert response.status_code == 202, response.text
    return response.json()


class LiveLeases:
    """Leases granted on demand, for the fuzz of the calls that need one."""

    def __init__(self, person: httpx.Client, agent: httpx.Client, project_id: str):
        self.person = person
        self.agent = agent
        self.project_id = project_id

    def grant(self) -> tuple[str, str]:
        """(job id, lease token) of a job leased just now. The lease is taken as a fresh agent
        instance, which releases whatever earlier instances held, so a job is always free."""
        pull = self.person.post(f"/api/v1/projects/{self.project_id}/pull")
        assert pull.status_code == 202 or pull.json()["code"] == "pull_already_queued", pull.text
        leased = Agent(self.agent).lease()
        return leased["job"]["id"], leased["lease"]["token"]


class Agent:
    """Just enough of the agent protocol to put jobs into known states."""

    def __init__(self, http: httpx.Client):
        self.http = http
        self.instance_id = str(uuid.uuid4())

    def heartbeat(self) -> None:
        body = {"instance_id": self.instance_id, "agent_version": "fuzz", "hostname": "fuzz"}
        response = self.http.post("/api/v1/agent/heartbeat", json=body)
        assert response.status_code == 200, response.text

    def lease(self) -> dict:
        body = {"instance_id": self.instance_id, "request_id": uuid.uuid4().hex, "wait": 0}
        response = self.http.post("/api/v1/agent/lease", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def complete(self, leased: dict, report: dict) -> None:
        body = {"lease_token": leased["lease"]["token"], **report}
        response = self.http.post(f"/api/v1/agent/jobs/{leased['job']['id']}/complete", json=body)
        assert response.status_code == 200, response.text
