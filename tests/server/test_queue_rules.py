"""The queue rules of `projects.queue` in their three forms — the decider's predicate, the ORM
filter and the claim's SQL — give the same answers on one table of cases, and the right ones."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from nodes.models import Node
from projects import domain, projection, queue, selectors
from projects.eventstore import append
from projects.leases import claim_query
from projects.models import Job, Project

pytestmark = pytest.mark.django_db

RESULT = {
    "commit": "a" * 40,
    "branch": "main",
    "local_path": "x",
    "duration_ms": 1,
    "size_bytes": 1,
}

# How each job of a case gets to where it is, as events after its JobQueued.
_HISTORY = {
    "queued": [],
    "leased": ["leased"],
    "succeeded": ["leased", "succeeded"],
    "released": ["leased", "released"],
    "backing_off": ["leased", "attempt_failed"],
    "retry_due": ["leased", "attempt_failed_due"],
}

# (label, owner, node, jobs in queue order). Labels of leasable jobs are `label:index`.
CASES = [
    ("a-after-done", "alice", "n1", ["succeeded", "queued"]),
    ("a-behind-lease", "alice", "n1", ["leased", "queued"]),
    ("a-backing-off", "alice", "n1", ["backing_off"]),
    ("a-retry-due", "alice", "n1", ["retry_due"]),
    ("b-two-queued", "bob", "n1", ["queued", "queued"]),
    ("b-released", "bob", "n1", ["released"]),
    ("c-other-node", "carol", "n2", ["queued"]),
    ("a-other-node", "alice", "n2", ["queued"]),
    ("d-one", "dave", "n1", ["leased"]),
    ("d-two", "dave", "n1", ["leased"]),
    ("d-three", "dave", "n1", ["queued"]),
    ("e-finished", "erin", "n1", ["succeeded"]),
    ("e-disabled-node", "erin", "n3", ["queued"]),
]

# Alice holds one leased job on n1 (a-behind-lease), dave two.
EXPECTED = {
    1: {"a-other-node:0", "b-two-queued:0", "b-released:0", "c-other-node:0"},
    2: {
        "a-after-done:1",
        "a-retry-due:0",
        "a-other-node:0",
        "b-two-queued:0",
        "b-released:0",
        "c-other-node:0",
    },
    3: {
        "a-after-done:1",
        "a-retry-due:0",
        "a-other-node:0",
        "b-two-queued:0",
        "b-released:0",
        "c-other-node:0",
        "d-three:0",
    },
}


def _events(job_ids: list[str], states: list[str], now) -> list[domain.DomainEvent]:
    events: list[domain.DomainEvent] = []
    for job_id, state in zip(job_ids, states, strict=True):
        events.append(domain.JobQueued(job_id, domain.JobKind.PULL, 3))
        for step in _HISTORY[state]:
            match step:
                case "leased":
                    expires = now + timedelta(seconds=90)
                    events.append(domain.JobLeased(job_id, 1, uuid.uuid4().hex, "r", "i", expires))
                case "succeeded":
                    events.append(domain.JobSucceeded(job_id, 1, RESULT))
                case "released":
                    events.append(domain.JobLeaseReleased(job_id, 1, "agent_restarted"))
                case "attempt_failed":
                    retry_at = now + timedelta(hours=1)
                    events.append(domain.JobAttemptFailed(job_id, 1, {"code": "x"}, retry_at))
                case "attempt_failed_due":
                    retry_at = now - timedelta(seconds=1)
                    events.append(domain.JobAttemptFailed(job_id, 1, {"code": "x"}, retry_at))
    return events


@pytest.fixture
def table(make_user, make_node) -> dict[str, object]:
    """The cases as real streams appended through the event store; job labels by job id."""
    now = timezone.now()
    people = {name: make_user(name) for name in ("alice", "bob", "carol", "dave", "erin")}
    nodes = {name: make_node(name)[0] for name in ("n1", "n2", "n3")}
    Node.objects.filter(pk=nodes["n3"].pk).update(enabled=False)  # its jobs are never leasable
    labels: dict[str, str] = {}
    for label, owner, node, states in CASES:
        project_id = str(uuid.uuid4())
        job_ids = [str(uuid.uuid4()) for _ in states]
        created = domain.ProjectCreated(
            owner_id=people[owner].pk,
            name=label,
            node_id=str(nodes[node].pk),
            git_url="https://h/r.git",
            branch="main",
            depth=None,
            target_path=f"{people[owner].pk}_{label}",
        )
        append(project_id, 0, [created, *_events(job_ids, states, now)], meta={})
        labels.update({job_id: f"{label}:{i}" for i, job_id in enumerate(job_ids)})
    return {"labels": labels, "nodes": nodes}


def _by_predicate(node_id: str, now, limit: int) -> set[str]:
    """The decider's form: each project's state as the decider loads it, the owner's leased
    jobs on the node counted from those states."""
    states = [projection.load(pk) for pk in Project.objects.values_list("pk", flat=True)]
    enabled = Node.objects.get(pk=node_id).enabled
    leased = Counter(
        (state.owner_id, state.node_id)
        for state in states
        for job in state.jobs.values()
        if job.state == domain.JobState.LEASED
    )
    return {
        job.id
        for state in states
        if state.node_id == node_id
        for job in state.jobs.values()
        if queue.is_leasable(
            job,
            state.jobs.values(),
            now=now,
            owner_leased=leased[(state.owner_id, state.node_id)],
            limit=limit,
            node_enabled=enabled,
        )
    }


def _by_orm(node_id: str, now, limit: int) -> set[str]:
    jobs = queue.leasable_only(Job.objects.filter(node_id=node_id), now=now, limit=limit)
    return {str(pk) for pk in jobs.values_list("pk", flat=True)}


def _by_sql(node_id: str, now, limit: int) -> set[str]:
    job, project, node = Job._meta.db_table, Project._meta.db_table, Node._meta.db_table
    sql = f"""
        SELECT j.id FROM {job} j JOIN {project} p ON p.id = j.project_id
        WHERE j.node_id = %s AND {queue.leasable_sql(job, project, node)}
    """  # noqa: S608 - table names from the models
    node_key = Job._meta.get_field("node").target_field.get_db_prep_value(node_id, connection)
    params = [
        node_key,
        *queue.leasable_params(node_key, connection.ops.adapt_datetimefield_value(now), limit),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()}


@pytest.mark.parametrize("limit", sorted(EXPECTED))
def test_the_three_forms_of_leasable_agree_and_match_the_table(table, limit, settings):
    settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE = limit
    now = timezone.now()
    labels = table["labels"]
    found = set()
    for node in table["nodes"].values():
        node_id = str(node.pk)
        predicate = _by_predicate(node_id, now, limit)

        assert _by_orm(node_id, now, limit) == predicate
        assert _by_sql(node_id, now, limit) == predicate
        # The claim takes the oldest of them; the long polls' re-check sees the node.
        with connection.cursor() as cursor:
            cursor.execute(*claim_query(node, now))
            row = cursor.fetchone()
        if predicate:
            claimed = str(uuid.UUID(str(row[0])))
            oldest = Job.objects.filter(pk__in=predicate).order_by("queued_at").first()
            assert claimed == str(oldest.project_id)
        else:
            assert row is None
        assert selectors.nodes_with_leasable_jobs([node_id]) == ({node_id} if predicate else set())
        found |= {labels[job_id] for job_id in predicate}

    assert found == EXPECTED[limit]


def test_open_and_head_agree_between_the_decider_and_the_selectors(table):
    labels = table["labels"]
    projects = selectors.with_open_jobs(Project.objects.all())
    for row in projects:
        state = projection.load(row.pk)
        head = state.head_job()
        active = selectors.active_job(row)
        assert (head and head.id) == (active and str(active.pk))
        assert active == selectors.active_job(Project.objects.get(pk=row.pk))
        open_ids = {str(job.pk) for job in queue.open_only(Job.objects.filter(project=row))}
        assert open_ids == {job.id for job in state.open_jobs()}
    assert {labels[str(job.pk)] for job in queue.open_only(Job.objects.all())} >= {
        "a-behind-lease:0",
        "a-behind-lease:1",
        "b-released:0",
    }
