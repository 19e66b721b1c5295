"""The bounds on a job and on a person: leases given back are not failed attempts but have their
own bound, a timeout is retried once at most, and one person's jobs take at most
`MAX_RUNNING_JOBS_PER_USER_PER_NODE` of a node's slots."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection, connections
from django.utils import timezone

from nodes.models import Node
from projects import domain, leases, selectors, services
from projects.eventstore import execute
from projects.models import Event, Job
from tests.support.api import assert_projections_match_log, event_types

pytestmark = pytest.mark.django_db(transaction=True)

RESULT = {
    "commit": "a" * 40,
    "branch": "main",
    "local_path": "x",
    "duration_ms": 1,
    "size_bytes": 1,
}


def _clone(owner, node, name: str = "demo") -> Job:
    project = services.request_clone(
        owner=owner, name=name, git_url="https://h/r.git", branch="main", node=node
    )
    return Job.objects.get(project_id=project.pk)


def _lease(node: Node, instance_id: str = "00000000-0000-4000-8000-000000000001"):
    return leases.lease(node=node, request_id=uuid.uuid4().hex, instance_id=instance_id)


def _run_out(job_id: str) -> None:
    """The lease's clock runs out: renewed through the decider to a time already past."""
    job = Job.objects.get(pk=job_id)
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


def _fail(node: Node, grant, code: str, retryable: bool = True) -> domain.Job:
    return leases.complete(
        node=node,
        job_id=grant.job.id,
        lease_token=grant.job.lease_token,
        error={"code": code, "message": code, "retryable": retryable},
    )


# --- Leases given back (review finding 5) -------------------------------------------------------


def test_agent_restarts_do_not_use_up_attempts_and_a_later_expiry_is_the_first_failure(
    user, node, settings
):
    """The review's case: the agent restarted twice, then its lease lapsed."""
    job = _clone(user, node)
    for restart in range(2):
        assert _lease(node, instance_id=f"00000000-0000-4000-8000-00000000000{restart}")
        released = leases.release_other_instances(
            node=node, instance_id=f"00000000-0000-4000-8000-00000000001{restart}"
        )
        assert released == 1
    grant = _lease(node)
    _run_out(grant.job.id)

    assert leases.expire_leases() == 1
    job.refresh_from_db()
    assert (job.state, job.attempt, job.failures) == ("queued", 3, 1)
    assert _lease(node).job.attempt == 4
    assert_projections_match_log()


def test_the_max_releases_th_release_fails_the_job_and_says_which_bound(user, node, api, settings):
    settings.LEASE_MAX_RELEASES = 3
    job = _clone(user, node)
    for _ in range(2):
        grant = _lease(node)
        leases.release(
            node=node, job_id=grant.job.id, lease_token=grant.job.lease_token, reason="draining"
        )
    assert Job.objects.get(pk=job.pk).state == "queued"

    grant = _lease(node)
    released = leases.release(
        node=node, job_id=grant.job.id, lease_token=grant.job.lease_token, reason="draining"
    )

    assert released.state == domain.JobState.FAILED
    assert released.failures == 0
    assert released.error["code"] == "lease_released"
    assert "LEASE_MAX_RELEASES" in released.error["message"]
    assert "3 time(s)" in released.error["message"]
    status = api.get(f"/api/v1/projects/{job.project_id}/status").json()
    assert status["status"] == "failed"
    assert status["last_error"]["code"] == "lease_released"
    assert event_types(job.project_id)[-2:] == ["JobLeaseReleased", "JobFailed"]
    assert_projections_match_log()


def test_releases_by_a_restarted_agent_count_toward_the_release_bound(user, node, settings):
    settings.LEASE_MAX_RELEASES = 2
    job = _clone(user, node)
    for restart in range(2):
        _lease(node, instance_id=f"00000000-0000-4000-8000-00000000000{restart}")
        leases.release_other_instances(
            node=node, instance_id=f"00000000-0000-4000-8000-00000000001{restart}"
        )

    job.refresh_from_db()
    assert job.state == "failed"
    assert job.error["code"] == "lease_released"
    assert "agent_restarted" in job.error["message"]


def test_the_attempts_bound_says_it_is_the_attempts_bound(user, node, settings):
    job = _clone(user, node)
    for _ in range(settings.LEASE_MAX_ATTEMPTS):
        _run_out(_lease(node).job.id)
        leases.expire_leases()

    job.refresh_from_db()
    assert job.state == "failed"
    assert job.error["code"] == "lease_expired"
    assert (
        f"the bound of {settings.LEASE_MAX_ATTEMPTS} (LEASE_MAX_ATTEMPTS)" in job.error["message"]
    )


# --- Timeouts (review finding 11) --------------------------------------------------------------


def test_a_second_timeout_fails_the_job_although_attempts_remain(user, node, settings):
    settings.LEASE_MAX_ATTEMPTS = 5
    settings.RETRY_BACKOFF_SECONDS = 0
    _clone(user, node)

    first = _fail(node, _lease(node), "timeout")
    assert (first.state, first.timeouts) == (domain.JobState.QUEUED, 1)
    other = _fail(node, _lease(node), "network_error")
    assert other.state == domain.JobState.QUEUED  # other retryable failures still retry
    second = _fail(node, _lease(node), "timeout")

    assert second.state == domain.JobState.FAILED
    assert (second.failures, second.timeouts) == (2, 2)
    assert second.error["code"] == "timeout"
    assert_projections_match_log()


def test_the_timeout_count_of_existing_jobs_is_filled_from_the_log(user, node, settings):
    """Migration 0004 counts the timeouts each job had before the column existed."""
    settings.RETRY_BACKOFF_SECONDS = 0
    job = _clone(user, node)
    _fail(node, _lease(node), "timeout")
    Job.objects.filter(pk=job.pk).update(timeouts=0)  # as the column's default leaves it
    migration = __import__("projects.migrations.0004_job_timeouts", fromlist=["count_timeouts"])

    migration.count_timeouts(apps, None)

    assert Job.objects.get(pk=job.pk).timeouts == 1
    assert_projections_match_log()


# --- One person's share of a node (review finding 11) -----------------------------------------


def test_a_person_at_the_limit_waits_while_other_people_s_jobs_are_leased(
    make_user, node, settings
):
    settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE = 1
    alice, bob = make_user("alice"), make_user("bob")
    first, second = _clone(alice, node, "one"), _clone(alice, node, "two")
    bobs = _clone(bob, node, "three")

    taken = [_lease(node).job.id for _ in range(2)]
    assert taken == [str(first.pk), str(bobs.pk)]  # bob's job, though alice's second is older
    assert _lease(node) is None
    assert selectors.nodes_with_leasable_jobs([str(node.pk)]) == set()

    leases.complete(
        node=node,
        job_id=str(first.pk),
        lease_token=Job.objects.get(pk=first.pk).lease_token,
        result=RESULT,
    )

    assert selectors.nodes_with_leasable_jobs([str(node.pk)]) == {str(node.pk)}
    assert _lease(node).job.id == str(second.pk)
    assert_projections_match_log()


def test_the_limit_is_per_node(make_user, make_node, settings):
    settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE = 1
    alice = make_user("alice")
    one, _ = make_node("n1")
    two, _ = make_node("n2")
    _clone(alice, one, "a")
    _clone(alice, one, "b")
    _clone(alice, two, "c")

    assert _lease(one) is not None
    assert _lease(one) is None
    assert _lease(two) is not None


def test_a_higher_limit_lets_one_person_run_that_many(user, node, settings):
    settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE = 2
    for name in ("a", "b", "c"):
        _clone(user, node, name)

    assert _lease(node) is not None and _lease(node) is not None
    assert _lease(node) is None


def test_concurrent_claims_of_one_node_keep_the_limit(make_user, node, settings):
    """Real threads with their own connections claim at once; only one of alice's jobs runs."""
    settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE = 1
    alice = make_user("alice")
    for index in range(6):
        _clone(alice, node, f"p{index}")
    barrier = threading.Barrier(6)
    grants: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim() -> None:
        try:
            mine = Node.objects.get(pk=node.pk)
            barrier.wait(timeout=10)
            grant = leases.lease(
                node=mine, request_id=uuid.uuid4().hex, instance_id=str(uuid.uuid4()), woken=True
            )
            with lock:
                grants.append(grant)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len([grant for grant in grants if grant is not None]) == 1
    assert Job.objects.filter(state="leased").count() == 1
    assert Event.objects.filter(type="JobLeased").count() == 1


def test_an_idle_poll_of_a_person_at_the_limit_opens_no_write_transaction(user, node):
    _clone(user, node, "a")
    _clone(user, node, "b")
    assert _lease(node) is not None

    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as polling:
        assert _lease(node) is None

    statements = [q["sql"] for q in polling.captured_queries]
    assert len(statements) == 1 and statements[0].startswith("SELECT"), statements  # the first look
