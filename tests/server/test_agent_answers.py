"""The agent API's answers are rendered by the serializers that describe them in the schema."""

from __future__ import annotations

import pytest
import yaml
from django.conf import settings

from projects.agent_api import (
    CompleteResponseSerializer,
    HeartbeatResponseSerializer,
    LeaseResponseSerializer,
    RenewResponseSerializer,
)
from tests.support.api import AgentSession, clone_body

pytestmark = pytest.mark.django_db(transaction=True)


def _schema_properties(component: str) -> set[str]:
    schema = yaml.safe_load((settings.BASE_DIR / "openapi.yaml").read_text())
    return set(schema["components"]["schemas"][component]["properties"])


@pytest.fixture
def session(agent):
    return AgentSession(agent)


@pytest.fixture
def leased(api, session):
    api.post("/api/v1/projects/clone", clone_body(), format="json")
    response = session.lease()
    assert response.status_code == 200, response.content
    return response.json()


def test_the_lease_answer_has_exactly_the_described_fields(leased):
    fields = LeaseResponseSerializer().fields

    assert set(leased) == set(fields) == _schema_properties("LeaseResponse")
    assert set(leased["job"]) == set(fields["job"].fields) == _schema_properties("LeasedJob")
    assert set(leased["lease"]) == set(fields["lease"].fields) == _schema_properties("Lease")
    assert leased["lease"]["renew_every_seconds"] == settings.LEASE_RENEW_SECONDS


def test_complete_and_release_answer_the_job_as_described(session, leased, api):
    job_id, token = leased["job"]["id"], leased["lease"]["token"]

    completed = session.succeed(job_id, token)

    assert completed.status_code == 200, completed.content
    body = completed.json()
    assert set(body) == set(CompleteResponseSerializer().fields)
    assert set(body["job"]) == _schema_properties("JobOutcome")
    assert body["job"]["id"] == job_id
    assert (body["job"]["kind"], body["job"]["state"]) == ("clone", "succeeded")
    assert body["job"]["result"]["commit"] == "a" * 40
    assert body["job"]["error"] is None


def test_release_answers_the_requeued_job(agent, session, leased):
    job_id, token = leased["job"]["id"], leased["lease"]["token"]

    released = agent.post(
        f"/api/v1/agent/jobs/{job_id}/release", {"lease_token": token}, format="json"
    )

    assert released.status_code == 200, released.content
    assert set(released.json()["job"]) == _schema_properties("JobOutcome")
    assert released.json()["job"]["state"] == "queued"


def test_heartbeat_and_renew_answers_match_their_serializers(session, leased):
    heartbeat = session.heartbeat()
    renewed = session.renew(leased["job"]["id"], leased["lease"]["token"])

    assert set(heartbeat.json()) == set(HeartbeatResponseSerializer().fields)
    assert set(renewed.json()) == set(RenewResponseSerializer().fields)


def test_slots_is_no_longer_part_of_the_lease_request(agent, session):
    body = {"instance_id": session.instance_id, "request_id": "req-00000001", "slots": 2}

    response = agent.post("/api/v1/agent/lease", body, format="json")

    assert response.status_code == 400
    assert "slots" in response.json()["fields"]


def test_the_lease_call_answers_other_methods_as_every_drf_view_does(agent, client):
    assert agent.get("/api/v1/agent/lease").status_code == 405
    assert agent.get("/api/v1/agent/lease").json()["code"] == "method_not_allowed"
    assert (
        client.post("/api/v1/agent/lease", {}, content_type="application/json").status_code == 401
    )
