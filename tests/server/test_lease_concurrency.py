"""Many agents leasing at once: every job leased once per attempt, one running job per project,
every completion recorded once. Real threads, each with its own database connection."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict

import pytest
from django.db import connections

from nodes.models import Node
from projects import leases, services
from projects.models import Event, Job, Project
from tests.support.api import bring_online

pytestmark = pytest.mark.django_db(transaction=True)

PROJECTS = 50
JOBS_PER_PROJECT = 4  # clone, pull, pull, delete
WORKERS = 20
DEADLINE_SECONDS = 120


def test_200_jobs_50_projects_20_concurrent_agents(make_user, make_node, settings):
    # One person owns every project here: let all 20 agents run their jobs at once.
    settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE = WORKERS
    owner = make_user("fleet")
    node, _ = make_node("busy-node")
    for index in range(PROJECTS):
        services.request_clone(
            owner=owner, name=f"p{index:02d}", git_url="https://h/r.git", branch="main", node=node
        )
    done = threading.Event()
    errors: list[BaseException] = []
    deadline = time.monotonic() + DEADLINE_SECONDS

    def agent_worker() -> None:
        instance = str(uuid.uuid4())
        worker_node = Node.objects.get(pk=node.pk)
        try:
            while not done.is_set() and time.monotonic() < deadline:
                grant = leases.lease(
                    node=worker_node, request_id=uuid.uuid4().hex, instance_id=instance
                )
                if grant is None:
                    time.sleep(0.01)
                    continue
                job = grant.job
                leases.complete(
                    node=worker_node,
                    job_id=job.id,
                    lease_token=job.lease_token,
                    result={
                        "commit": "" if job.kind == "delete" else "c" * 40,
                        "branch": "main",
                        "local_path": "/data/projects/x",
                        "duration_ms": 1,
                        "size_bytes": 1,
                    },
                )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    def requester() -> None:
        """Plays the users: asks for the next job of each project once the last one is done."""
        try:
            while not done.is_set() and time.monotonic() < deadline:
                bring_online(node)
                for project in Project.objects.filter(status="ready"):
                    kinds = list(project.jobs.values_list("kind", flat=True))
                    if project.jobs.filter(state__in=["queued", "leased"]).exists():
                        continue
                    if kinds.count("pull") < 2:
                        services.request_pull(project=project, actor=owner)
                    else:
                        services.request_delete(project=project, actor=owner)
                if Project.objects.filter(status="deleted").count() == PROJECTS:
                    done.set()
                time.sleep(0.02)
        except BaseException as exc:
            errors.append(exc)
            done.set()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=agent_worker) for _ in range(WORKERS)]
    threads.append(threading.Thread(target=requester))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS + 30)

    assert errors == []
    assert done.is_set(), "not every project reached deleted before the deadline"
    assert Job.objects.count() == PROJECTS * JOBS_PER_PROJECT
    assert set(Job.objects.values_list("state", flat=True)) == {"succeeded"}

    leased = Counter()
    succeeded = Counter()
    running: dict[str, set[str]] = defaultdict(set)
    for event in Event.objects.order_by("position"):
        job_id = event.data.get("job_id")
        project = str(event.project_id)
        if event.type == "JobLeased":
            leased[(job_id, event.data["attempt"])] += 1
            running[project].add(job_id)
            assert len(running[project]) == 1, f"two jobs of {project} leased at once"
        elif event.type in {
            "JobSucceeded",
            "JobFailed",
            "JobCancelled",
            "JobLeaseExpired",
            "JobLeaseReleased",
            "JobAttemptFailed",
        }:
            running[project].discard(job_id)
        if event.type == "JobSucceeded":
            succeeded[job_id] += 1
    assert set(leased.values()) == {1}, "a job was leased twice in one attempt"
    assert len(succeeded) == PROJECTS * JOBS_PER_PROJECT
    assert set(succeeded.values()) == {1}, "a completion was recorded twice"

    from django.core.management import call_command

    call_command("rebuild_projections", "--check")
