"""Who may call what: user tokens (`gfu_…`) on the user API, agent tokens (`gfa_…`) on the
agent API, and nothing else on either.

Every refusal is a JSON 401 naming `Authorization`, and leaves no trace: no event, no project,
no change to a node's `last_seen_at` or to any token's `last_used_at`.
"""

from __future__ import annotations

import secrets
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import issue_api_token, revoke_api_token
from nodes.models import AgentToken, Node
from nodes.services import revoke_agent_token, rotate_agent_token
from projects.models import Event, Job, Project
from tests.support.api import AgentSession, bearer_client, clone_body

USER_ENDPOINTS = [
    ("get", "/api/v1/projects/"),
    ("post", "/api/v1/projects/clone"),
    ("get", f"/api/v1/projects/{uuid.uuid4()}"),
    ("get", "/api/v1/nodes/"),
]


def _agent_endpoints() -> list[tuple[str, dict]]:
    job_id = uuid.uuid4()
    instance_id = str(uuid.uuid4())
    return [
        (
            "/api/v1/agent/heartbeat",
            {"instance_id": instance_id, "agent_version": "0.1.0", "hostname": "box"},
        ),
        ("/api/v1/agent/lease", {"instance_id": instance_id, "request_id": "req-00000001"}),
        (f"/api/v1/agent/jobs/{job_id}/renew", {"lease_token": "x" * 32}),
        (
            f"/api/v1/agent/jobs/{job_id}/complete",
            {"lease_token": "x" * 32, "outcome": "failed", "error": _error()},
        ),
        (f"/api/v1/agent/jobs/{job_id}/release", {"lease_token": "x" * 32}),
    ]


def _error() -> dict:
    return {"code": "git_error", "message": "boom", "retryable": False}


AGENT_ENDPOINTS = _agent_endpoints()
AGENT_IDS = ["heartbeat", "lease", "renew", "complete", "release"]


def _well_formed(kind: str) -> str:
    """A token of the right shape that was never issued."""
    return f"{kind}_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def _wrong_secret(token: str) -> str:
    kind, key_id, _ = token.split("_", 2)
    return f"{kind}_{key_id}_{secrets.token_urlsafe(32)}"


MALFORMED_HEADERS = [
    "Bearer",
    "Bearer ",
    "Bearer a b",
    "Basic YWxpY2U6cHc=",
    "Token abc",
    "bearer",
    "Bearer gfu_",
    "Bearer gfu_zzzzzzzzzzzz_" + "a" * 43,
    "Bearer gfu_0123456789ab_short",
    "Bearer not-a-token",
    "Bearer \u0433fu_0123456789ab_" + "a" * 43,
    "Bearer gfu_0123456789ab_" + "a" * 43 + "\u200b",
    "Digest username=alice",
]


def _trace() -> dict:
    """Everything a refused call must leave as it was."""
    return {
        "events": Event.objects.count(),
        "projects": Project.objects.count(),
        "jobs": Job.objects.count(),
        "nodes": sorted(
            str(row)
            for row in Node.objects.values_list(
                "pk", "last_seen_at", "instance_id", "hostname", "duplicate_instance_at"
            )
        ),
        "user_tokens_used": sorted(
            str(used) for used in ApiToken.objects.values_list("last_used_at", flat=True)
        ),
        "agent_tokens_used": sorted(
            str(used) for used in AgentToken.objects.values_list("last_used_at", flat=True)
        ),
    }


def assert_unauthorized(response, realm: str) -> dict:
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response["WWW-Authenticate"] == f'Bearer realm="{realm}"'
    body = response.json()
    assert body["error"] and body["code"] in {"not_authenticated", "authentication_failed"}
    assert body["fields"]["Authorization"], body
    return body


def _client(header: str | None) -> APIClient:
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    return client


def _call_user_api(client: APIClient, method: str, path: str):
    if method == "post":
        return client.post(path, clone_body(), format="json")
    return getattr(client, method)(path)


# --- The user API -----------------------------------------------------------------------------


@pytest.mark.django_db
class TestUserApi:
    @pytest.fixture(autouse=True)
    def _world(self, user, node):
        """A person with a used token and an online node, so there is state to leave alone."""
        self.token_row, self.token = issue_api_token(user=user, name="laptop")
        assert bearer_client(self.token).get("/api/v1/projects/").status_code == 200

    @pytest.mark.parametrize(("method", "path"), USER_ENDPOINTS)
    def test_no_authorization_answers_401(self, method, path):
        before = _trace()

        response = _call_user_api(_client(None), method, path)

        assert_unauthorized(response, "api")
        assert _trace() == before

    @pytest.mark.parametrize("header", MALFORMED_HEADERS)
    @pytest.mark.parametrize(("method", "path"), USER_ENDPOINTS[:2])
    def test_malformed_authorization_answers_401(self, method, path, header):
        before = _trace()

        response = _call_user_api(_client(header), method, path)

        assert_unauthorized(response, "api")
        assert _trace() == before

    @pytest.mark.parametrize(("method", "path"), USER_ENDPOINTS[:2])
    def test_unknown_token_answers_401(self, method, path):
        before = _trace()

        response = _call_user_api(_client(f"Bearer {_well_formed('gfu')}"), method, path)

        body = assert_unauthorized(response, "api")
        assert body["error"] == "Invalid token."
        assert _trace() == before

    @pytest.mark.parametrize(("method", "path"), USER_ENDPOINTS[:2])
    def test_right_key_id_with_wrong_secret_answers_401(self, method, path):
        before = _trace()

        response = _call_user_api(_client(f"Bearer {_wrong_secret(self.token)}"), method, path)

        body = assert_unauthorized(response, "api")
        assert body["error"] == "Invalid token."
        assert _trace() == before

    @pytest.mark.parametrize(("method", "path"), USER_ENDPOINTS[:2])
    def test_revoked_token_answers_401(self, method, path):
        revoke_api_token(token=self.token_row)
        before = _trace()

        response = _call_user_api(bearer_client(self.token), method, path)

        body = assert_unauthorized(response, "api")
        assert "revoked" in body["error"]
        assert _trace() == before

    def test_token_of_an_inactive_user_answers_401(self, user):
        user.is_active = False
        user.save()
        before = _trace()

        response = bearer_client(self.token).post(
            "/api/v1/projects/clone", clone_body(), format="json"
        )

        assert_unauthorized(response, "api")
        assert _trace() == before

    @pytest.mark.parametrize(("method", "path"), USER_ENDPOINTS)
    def test_agent_token_answers_401_on_the_user_api(self, node_and_token, method, path):
        before = _trace()

        response = _call_user_api(bearer_client(node_and_token[1]), method, path)

        body = assert_unauthorized(response, "api")
        assert "Agent tokens" in body["error"]
        assert _trace() == before

    def test_a_good_token_works_and_the_scheme_is_case_insensitive(self):
        assert _client(f"Bearer {self.token}").get("/api/v1/projects/").status_code == 200
        assert _client(f"bearer {self.token}").get("/api/v1/projects/").status_code == 200

    def test_one_persons_revoked_token_leaves_their_other_tokens_working(self, user):
        _, other = issue_api_token(user=user, name="ci")
        revoke_api_token(token=self.token_row)

        assert bearer_client(other).get("/api/v1/projects/").status_code == 200


# --- The agent API ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
class TestAgentApi:
    @pytest.fixture(autouse=True)
    def _world(self, node_and_token):
        self.node, self.token = node_and_token

    @pytest.mark.parametrize(("path", "body"), AGENT_ENDPOINTS, ids=AGENT_IDS)
    def test_no_authorization_answers_401(self, path, body):
        before = _trace()

        response = _client(None).post(path, body, format="json")

        assert_unauthorized(response, "agent")
        assert _trace() == before

    @pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Basic YWdlbnQ6cHc=", "Token x"])
    @pytest.mark.parametrize(("path", "body"), AGENT_ENDPOINTS, ids=AGENT_IDS)
    def test_malformed_authorization_answers_401(self, path, body, header):
        before = _trace()

        response = _client(header).post(path, body, format="json")

        assert_unauthorized(response, "agent")
        assert _trace() == before

    @pytest.mark.parametrize(("path", "body"), AGENT_ENDPOINTS, ids=AGENT_IDS)
    def test_user_token_answers_401_on_the_agent_api(self, user, path, body):
        _, user_token = issue_api_token(user=user, name="laptop")
        before = _trace()

        response = bearer_client(user_token).post(path, body, format="json")

        assert_unauthorized(response, "agent")
        assert _trace() == before

    @pytest.mark.parametrize(("path", "body"), AGENT_ENDPOINTS, ids=AGENT_IDS)
    def test_unknown_agent_token_answers_401(self, path, body):
        before = _trace()

        response = bearer_client(_well_formed("gfa")).post(path, body, format="json")

        assert_unauthorized(response, "agent")
        assert _trace() == before

    @pytest.mark.parametrize(("path", "body"), AGENT_ENDPOINTS, ids=AGENT_IDS)
    def test_right_key_id_with_wrong_secret_answers_401(self, path, body):
        before = _trace()

        response = bearer_client(_wrong_secret(self.token)).post(path, body, format="json")

        assert_unauthorized(response, "agent")
        assert _trace() == before

    @pytest.mark.parametrize(("path", "body"), AGENT_ENDPOINTS, ids=AGENT_IDS)
    def test_revoked_agent_token_answers_401(self, path, body):
        revoke_agent_token(token=AgentToken.objects.get(node=self.node))
        before = _trace()

        response = bearer_client(self.token).post(path, body, format="json")

        body = assert_unauthorized(response, "agent")
        assert "revoked" in body["error"]
        assert _trace() == before

    def test_rotated_token_stops_working_and_the_new_one_works(self):
        new_token = rotate_agent_token(node=self.node)

        old = AgentSession(bearer_client(self.token)).heartbeat()
        new = AgentSession(bearer_client(new_token)).heartbeat()

        assert_unauthorized(old, "agent")
        assert new.status_code == 200, new.content

    def test_revoked_token_cannot_lease_a_queued_job(self, api):
        assert api.post("/api/v1/projects/clone", clone_body(), format="json").status_code == 202
        revoke_agent_token(token=AgentToken.objects.get(node=self.node))
        events_before = Event.objects.count()

        response = AgentSession(bearer_client(self.token)).lease()

        assert_unauthorized(response, "agent")
        assert Event.objects.count() == events_before
        assert Job.objects.get().state == "queued"


# --- Tokens made on the command line ----------------------------------------------------------


def _last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


@pytest.mark.django_db
def test_create_token_prints_a_token_that_authenticates(user):
    out, err = StringIO(), StringIO()

    call_command("create_token", user.username, stdout=out, stderr=err)

    token = _last_line(out.getvalue())
    assert token.startswith("gfu_")
    assert token not in err.getvalue()
    response = bearer_client(token).get("/api/v1/projects/")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_create_token_for_an_unknown_user_fails_and_issues_nothing():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_token", "nobody", stdout=StringIO(), stderr=StringIO())
    assert not ApiToken.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_create_node_prints_an_agent_token_that_authenticates():
    out = StringIO()

    call_command("create_node", "cli-node", stdout=out, stderr=StringIO())

    token = _last_line(out.getvalue())
    assert token.startswith("gfa_")
    session = AgentSession(bearer_client(token))
    assert session.heartbeat().status_code == 200
    assert session.lease(wait=0).status_code == 204
    assert Node.objects.get(name="cli-node").last_seen_at is not None
    assert_unauthorized(bearer_client(token).get("/api/v1/projects/"), "api")


@pytest.mark.django_db(transaction=True)
def test_create_node_rotate_prints_a_new_token_and_revokes_the_old():
    first = _last_line(_run("create_node", "cli-node"))

    second = _last_line(_run("create_node", "cli-node", "--rotate-if-exists"))

    assert second != first
    assert AgentSession(bearer_client(second)).heartbeat().status_code == 200
    assert_unauthorized(AgentSession(bearer_client(first)).heartbeat(), "agent")


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()
