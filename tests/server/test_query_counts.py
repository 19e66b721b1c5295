"""Reads stay cheap as data grows: listing does not run a query per project."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projects import leases, services

pytestmark = pytest.mark.django_db


def test_listing_projects_runs_the_same_queries_for_3_or_30(
    api, user, node, django_assert_max_num_queries
):
    def make(count: int) -> None:
        for index in range(count):
            services.request_clone(
                owner=user,
                name=f"p{index}-{count}",
                git_url="https://h/r.git",
                branch="main",
                node=node,
            )

    make(3)
    with django_assert_max_num_queries(10) as few:
        assert api.get("/api/v1/projects/").status_code == 200
    make(27)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = api.get("/api/v1/projects/")

    assert response.json()["count"] == 30
    assert all(p["active_job"]["kind"] == "clone" for p in response.json()["results"])


@pytest.mark.django_db(transaction=True)  # as in production: the lease is the outer transaction
def test_a_lease_and_its_completion_take_a_fixed_handful_of_statements(user, node):
    """The agent's hot path: no savepoints, no re-reads after the append, only changed columns.

    Counted in calls to the database, each one round trip (Django does not capture
    PostgreSQL's BEGIN and COMMIT, which psycopg sends). SQLite: lease = the first look (the
    lease given for this request id, lapsed leases and whether anything is leasable, in one
    statement), BEGIN, claim, project, open jobs, two UPDATEs, INSERT, COMMIT; complete = the
    job's owner check, BEGIN, project, jobs, two UPDATEs, INSERT, COMMIT. PostgreSQL takes
    several statements per call: the claim goes with the advisory lock that makes one node's
    claims take turns (the per-person limit counts committed leases), the project's jobs with
    the project, and the projection's UPDATEs with the watch API's pg_notify, the feed's LOCK
    TABLE and the event INSERT; it adds a pg_notify to the completion (it may free the
    project's next job).
    """
    postgres = connection.vendor == "postgresql"
    services.request_clone(
        owner=user, name="p", git_url="https://h/r.git", branch="main", node=node
    )

    with CaptureQueriesContext(connection) as leasing:
        grant = leases.lease(node=node, request_id="req-00001", instance_id=str(uuid.uuid4()))
    with CaptureQueriesContext(connection) as completing:
        job = leases.complete(
            node=node,
            job_id=grant.job.id,
            lease_token=grant.job.lease_token,
            result={
                "commit": "a" * 40,
                "branch": "main",
                "local_path": "1_p",
                "duration_ms": 1,
                "size_bytes": 1,
            },
        )

    assert job.state == "succeeded"
    statements = [q["sql"] for q in leasing.captured_queries + completing.captured_queries]
    assert not [sql for sql in statements if "SAVEPOINT" in sql]
    assert len(leasing.captured_queries) == (6 if postgres else 9), statements
    assert len(completing.captured_queries) == (6 if postgres else 8), statements
    job_update = next(
        statement
        for query in completing.captured_queries[::-1]
        for statement in query["sql"].split("; ")
        if statement.startswith('UPDATE "projects_job"')
    )
    assert '"max_attempts"' not in job_update and '"kind"' not in job_update


def test_the_claim_reads_a_node_s_queue_in_order_without_sorting_it(user, node):
    """With thousands of jobs queued for one node, a lease must not read and sort them all:
    the plan walks the `job_claim` index in queue order and stops at the first leasable job.
    The owners at their limit are found once (grouping the node's few leased jobs), not counted
    again for each queued job."""
    for index in range(30):
        services.request_clone(
            owner=user, name=f"p{index}", git_url="https://h/r.git", branch="main", node=node
        )
    sql, params = leases.claim_query(node, timezone.now())

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # 30 rows would not need an index
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = "\n".join(str(row) for row in cursor.fetchall())

    assert "job_claim" in plan, plan
    assert "Sort Key: j." not in plan and "TEMP B-TREE FOR ORDER BY" not in plan, plan
    if connection.vendor == "postgresql":
        assert "hashed SubPlan" in plan, plan
    else:
        assert "LIST SUBQUERY" in plan and "CORRELATED" not in plan.split("LIST SUBQUERY")[1]


@pytest.mark.django_db(transaction=True)
def test_an_idle_node_s_poll_reads_once_and_writes_nothing(user, node, make_node):
    """Most polls of a fleet find nothing: they must not open a write transaction."""
    other, _ = make_node("node-2")
    services.request_clone(
        owner=user, name="p", git_url="https://h/r.git", branch="main", node=other
    )

    with CaptureQueriesContext(connection) as polling:
        grant = leases.lease(node=node, request_id="req-00001", instance_id=str(uuid.uuid4()))

    assert grant is None
    statements = [q["sql"] for q in polling.captured_queries]
    assert len(statements) == 1, statements
    assert statements[0].startswith("SELECT"), statements
