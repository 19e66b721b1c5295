"""The lease protocol through the real agent API: lease, renew, complete, expiry, fencing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from projects import leases
from projects.models import Event, Job
from tests.support.api import AgentSession, assert_projections_match_log, clone_body, event_types

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(agent):
    return AgentSession(agent)


@pytest.fixture
def queued(api, node):
    response = api.post("/api/v1/projects/clone", clone_body(), format="json")
    assert response.status_code == 202
    return response.json()


def test_lease_without_work_answers_204_after_the_wait(session, node):
    assert session.lease(wait=0).status_code == 204


def test_lease_hands_out_the_job_with_everything_the_agent_needs(session, queued, user):
    response = session.lease()

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["job"] == {
        "id": queued["job"]["id"],
        "kind": "clone",
        "project_id": queued["project"]["id"],
        "git_url": "https://git.example.com/group/demo.git",
        "branch": "main",
        "ref": "main",
        "target_path": f"{user.pk}_demo",
        "depth": None,
        "lfs": False,
        "submodules": "none",
        "filter": "",
        "sparse": [],
        "timeout_seconds": 3600,
        "credential": None,
        "use_node_credentials": False,
        "ssh_known_hosts": "",
        "strategy": "ff-only",
        "force": False,
    }
    assert body["lease"]["attempt"] == 1
    assert len(body["lease"]["token"]) >= 24
    assert session.lease().status_code == 204  # one job, leased once
    assert_projections_match_log()


def test_retry_with_the_same_request_id_gets_the_same_lease(session, queued):
    first = session.lease(request_id="req-00000001").json()
    again = session.lease(request_id="req-00000001")

    assert again.status_code == 200
    assert again.json() == first
    assert event_types(queued["project"]["id"]).count("JobLeased") == 1


def test_success_makes_the_project_ready_and_repeats_are_idempotent(session, queued, api):
    lease = session.lease().json()
    job_id, token = lease["job"]["id"], lease["lease"]["token"]

    first = session.succeed(job_id, token)
    events_after_first = Event.objects.count()
    second = session.succeed(job_id, token)

    assert first.status_code == 200 and second.status_code == 200
    assert first.json() == second.json()
    assert Event.objects.count() == events_after_first
    status = api.get(f"/api/v1/projects/{queued['project']['id']}/status").json()
    assert status["status"] == "ready"
    assert status["commit"] == "a" * 40
    assert status["active_job"] is None
    assert_projections_match_log()


def test_stale_token_gets_409_on_renew_and_complete_and_records_nothing(session, queued):
    lease = session.lease().json()
    job_id = lease["job"]["id"]
    before = Event.objects.count()

    renew = session.renew(job_id, "not-the-token")
    complete = session.succeed(job_id, "not-the-token")

    assert renew.status_code == 409 and renew.json()["code"] == "lease_lost"
    assert complete.status_code == 409 and complete.json()["code"] == "lease_lost"
    assert Event.objects.count() == before


def test_renew_extends_the_lease_and_shows_progress(session, queued, api):
    lease = session.lease().json()
    job_id, token = lease["job"]["id"], lease["lease"]["token"]

    response = session.renew(job_id, token, {"phase": "receiving", "percent": 42, "objects": 7})

    assert response.status_code == 200
    assert response.json()["expires_at"] > lease["lease"]["expires_at"]
    status = api.get(f"/api/v1/projects/{queued['project']['id']}/status").json()
    assert status["active_job"]["progress"] == {"phase": "receiving", "percent": 42, "objects": 7}


def _expire_lease(job_id: str) -> None:
    """Moves the clock of one lease into the past by appending nothing: the lease simply ran
    out. Done by renewing with a negative length through the decider, as time would."""
    job = Job.objects.get(pk=job_id)
    from projects import domain
    from projects.eventstore import execute

    execute(
        job.project_id,
        domain.RenewLease(
            job_id=str(job.pk),
            lease_token=job.lease_token,
            now=timezone.now() - timedelta(seconds=120),
            lease_seconds=1,
        ),
        meta={"test": "lease ran out"},
        job_ids=[str(job.pk)],
    )


def test_expired_lease_is_leased_again_with_the_next_attempt(session, queued):
    first = session.lease().json()
    _expire_lease(first["job"]["id"])

    second = session.lease()

    assert second.status_code == 200
    assert second.json()["job"]["id"] == first["job"]["id"]
    assert second.json()["lease"]["attempt"] == 2
    assert session.renew(first["job"]["id"], first["lease"]["token"]).status_code == 409
    types = event_types(queued["project"]["id"])
    assert types[-2:] == ["JobLeaseExpired", "JobLeased"]
    assert_projections_match_log()


def test_after_max_attempts_the_job_fails_for_good(session, queued, api, settings):
    for _ in range(settings.LEASE_MAX_ATTEMPTS):
        lease = session.lease().json()
        _expire_lease(lease["job"]["id"])
    leases.expire_leases()

    assert session.lease().status_code == 204
    status = api.get(f"/api/v1/projects/{queued['project']['id']}/status").json()
    assert status["status"] == "failed"
    assert status["last_error"]["code"] == "lease_expired"
    assert_projections_match_log()


def test_retryable_failure_requeues_with_backoff_and_final_failure_fails(session, queued, settings):
    settings.RETRY_BACKOFF_SECONDS = 0
    lease = session.lease().json()
    assert (
        session.fail(lease["job"]["id"], lease["lease"]["token"], retryable=True).status_code == 200
    )
    assert Job.objects.get(pk=lease["job"]["id"]).state == "queued"

    again = session.lease().json()
    assert again["lease"]["attempt"] == 2
    response = session.fail(again["job"]["id"], again["lease"]["token"], code="branch_not_found")

    assert response.status_code == 200
    assert response.json()["job"]["state"] == "failed"
    assert response.json()["job"]["error"]["code"] == "branch_not_found"


def test_cancelled_job_answers_409_on_renew(session, queued, api):
    lease = session.lease().json()
    project_id, job_id = queued["project"]["id"], lease["job"]["id"]

    cancel = api.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/cancel")
    renew = session.renew(job_id, lease["lease"]["token"])

    assert cancel.status_code == 202
    assert renew.status_code == 409 and renew.json()["code"] == "lease_lost"
    assert_projections_match_log()


def test_another_nodes_job_answers_404(queued, session, make_node):
    lease = session.lease().json()
    _, other_token = make_node("node-2")
    from tests.support.api import bearer_client

    other = AgentSession(bearer_client(other_token))
    response = other.renew(lease["job"]["id"], lease["lease"]["token"])

    assert response.status_code == 404
    assert other.lease().status_code == 204


def test_a_restarted_agent_releases_its_old_leases_at_once(session, queued, agent):
    lease = session.lease().json()
    restarted = AgentSession(agent)

    again = restarted.lease()

    assert again.status_code == 200
    assert again.json()["job"]["id"] == lease["job"]["id"]
    assert again.json()["lease"]["attempt"] == 2
    assert "JobLeaseReleased" in event_types(queued["project"]["id"])
    assert session.renew(lease["job"]["id"], lease["lease"]["token"]).status_code == 409


def test_the_superseded_instance_is_refused_and_the_node_flagged(session, agent, node, api):
    assert session.heartbeat().status_code == 200
    assert AgentSession(agent).heartbeat().status_code == 200

    response = session.heartbeat()

    assert response.status_code == 409
    assert response.json()["code"] == "instance_superseded"
    assert api.get(f"/api/v1/nodes/{node.pk}").json()["duplicate_instance"] is True


def test_an_old_instance_authenticated_before_a_restart_cannot_take_the_node_back(node):
    """The superseded check runs on the locked row, not on the row read at authentication."""
    from nodes.models import Node
    from nodes.services import Heartbeat, InstanceSuperseded, record_presence

    old, new = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
    record_presence(node=Node.objects.get(pk=node.pk), instance_id=old)
    read_by_old_call = Node.objects.get(pk=node.pk)  # authenticated before the restart

    record_presence(node=Node.objects.get(pk=node.pk), instance_id=new)
    with pytest.raises(InstanceSuperseded):  # the old agent's heartbeat lands after
        record_presence(
            node=read_by_old_call,
            instance_id=old,
            heartbeat=Heartbeat(
                agent_version="0.1.0", hostname="h", disk_free_bytes=1, running_jobs=0
            ),
        )

    current = Node.objects.get(pk=node.pk)
    assert str(current.instance_id) == new
    assert current.duplicate_instance_at is not None
