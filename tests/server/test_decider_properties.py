"""Properties of the project decider, over arbitrary sequences of commands.

The pure tests run the decider alone (no database). The last one runs sequences through the
real event store and checks that the stored projection equals a replay of the stored events.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.exceptions import DomainError
from projects import domain

T0 = datetime(2026, 1, 1, tzinfo=UTC)

actions = st.lists(
    st.tuples(
        # Weighted towards the happy path so that sequences reach ready projects and pulls.
        st.sampled_from(
            ["lease"] * 4
            + ["succeed"] * 3
            + ["pull"] * 2
            + [
                "delete",
                "cancel",
                "retry",
                "renew",
                "fail",
                "fail_retryable",
                "expire",
                "release",
                "timeout",
                "wait",
            ]
        ),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=40,
)


class Simulation:
    """Drives the decider with a clock, as the services would."""

    def __init__(self, max_attempts: int = 3, max_releases: int = 4):
        self.state = domain.initial_state(str(uuid.uuid4()))
        self.now = T0
        self.max_attempts = max_attempts
        self.max_releases = max_releases
        self.log: list[domain.Recorded] = []
        self.run(
            domain.CreateProject(
                owner_id=1,
                name="p",
                node_id=str(uuid.uuid4()),
                git_url="https://h/r.git",
                branch="main",
                depth=None,
                job_id=str(uuid.uuid4()),
                max_attempts=max_attempts,
            )
        )

    def run(self, command) -> bool:
        try:
            new_events = domain.decide(self.state, command)
        except DomainError:
            return False
        for new in new_events:
            event = domain.Recorded(event=new, version=self.state.version + 1, recorded_at=self.now)
            self.log.append(event)
            self.state = domain.evolve(self.state, event)
        return True

    def pick(self, index: int, *states: domain.JobState) -> domain.Job | None:
        jobs = sorted(self.state.jobs.values(), key=lambda j: j.seq)
        jobs = [j for j in jobs if not states or j.state in states]
        return jobs[index % len(jobs)] if jobs else None

    def act(self, action: str, index: int) -> None:
        leased = self.pick(index, domain.JobState.LEASED)
        new_id = str(uuid.uuid4())
        match action:
            case "pull":
                self.run(domain.RequestPull(job_id=new_id, max_attempts=self.max_attempts))
            case "delete":
                self.run(domain.RequestDelete(job_id=new_id, max_attempts=self.max_attempts))
            case "cancel":
                job = self.pick(index)
                if job:
                    self.run(domain.CancelJob(job_id=job.id, reason="test"))
            case "retry":
                job = self.pick(index, domain.JobState.FAILED, domain.JobState.CANCELLED)
                if job:
                    self.run(
                        domain.RetryJob(
                            failed_job_id=job.id, job_id=new_id, max_attempts=self.max_attempts
                        )
                    )
            case "lease":
                head = self.state.head_job()
                if head:
                    self.run(
                        domain.LeaseJob(
                            job_id=head.id,
                            lease_token=uuid.uuid4().hex,
                            request_id="r",
                            instance_id="i",
                            now=self.now,
                            lease_seconds=60,
                        )
                    )
            case "renew" if leased:
                self.run(
                    domain.RenewLease(
                        job_id=leased.id,
                        lease_token=leased.lease_token,
                        now=self.now,
                        lease_seconds=60,
                    )
                )
            case "succeed" if leased:
                self.run(
                    domain.CompleteJob(
                        job_id=leased.id,
                        lease_token=leased.lease_token,
                        now=self.now,
                        result={
                            "commit": "c" * 40,
                            "branch": "main",
                            "local_path": "/p",
                            "duration_ms": 1,
                            "size_bytes": 1,
                        },
                    )
                )
            case "timeout" if leased:
                self.run(
                    domain.CompleteJob(
                        job_id=leased.id,
                        lease_token=leased.lease_token,
                        now=self.now,
                        error={"code": "timeout", "message": "x", "retryable": True},
                        retry_backoff_seconds=5,
                    )
                )
            case "fail" | "fail_retryable" if leased:
                self.run(
                    domain.CompleteJob(
                        job_id=leased.id,
                        lease_token=leased.lease_token,
                        now=self.now,
                        error={
                            "code": "git_error",
                            "message": "x",
                            "retryable": action == "fail_retryable",
                        },
                        retry_backoff_seconds=5,
                    )
                )
            case "expire" if leased:
                self.now += timedelta(seconds=61)
                self.run(domain.ExpireLease(job_id=leased.id, now=self.now))
            case "release" if leased:
                self.run(
                    domain.ReleaseLease(
                        job_id=leased.id, reason="agent_restarted", max_releases=self.max_releases
                    )
                )
            case "wait":
                self.now += timedelta(seconds=10 * (index + 1))

    def check_invariants(self) -> None:
        jobs = self.state.jobs.values()
        leased = [j for j in jobs if j.state == domain.JobState.LEASED]
        assert len(leased) <= 1, "two jobs of one project leased at once"
        if leased:
            assert self.state.head_job().id == leased[0].id, "a job ran ahead of an older one"
        for job in jobs:
            assert job.failures <= job.max_attempts
            if job.is_open:
                assert job.releases < self.max_releases, "released past the bound"
            assert job.timeouts <= 2, "a timeout was retried more than once"
            if job.state == domain.JobState.LEASED:
                assert job.lease_token and job.lease_expires_at is not None
        if self.state.status == domain.ProjectStatus.DELETED:
            assert not self.state.open_jobs()
            assert self.state.commit == ""
        if self.state.status == domain.ProjectStatus.READY:
            assert len(self.state.commit) == 40
        assert self.state.version == len(self.log)


@settings(max_examples=300, deadline=None)
@given(actions)
# Found by this test: a clone finishing under a queued delete made the project ready again,
# which let a pull in behind the delete.
@example([("lease", 0), ("delete", 0), ("succeed", 0), ("lease", 0), ("pull", 0), ("succeed", 0)])
def test_any_command_sequence_keeps_one_running_job_per_project_in_order(steps):
    sim = Simulation()
    for action, index in steps:
        sim.act(action, index)
        sim.check_invariants()


@settings(max_examples=200, deadline=None)
@given(actions)
def test_folding_the_log_from_scratch_gives_the_same_state(steps):
    sim = Simulation()
    for action, index in steps:
        sim.act(action, index)
    assert domain.fold(domain.initial_state(sim.state.id), sim.log) == sim.state


@settings(max_examples=200, deadline=None)
@given(actions)
def test_evolve_makes_the_states_that_dataclasses_replace_would(steps):
    """`evolve` copies its frozen state without re-running `__init__`, for speed; the states
    must be the very ones `dataclasses.replace` would make."""
    sim = Simulation()
    for action, index in steps:
        sim.act(action, index)
    with patch.object(domain, "_changed", replace):
        replaced = domain.fold(domain.initial_state(sim.state.id), sim.log)
    assert replaced == sim.state
    assert repr(replaced) == repr(sim.state)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_deleted_is_final(steps):
    sim = Simulation()
    seen_deleted = False
    for action, index in steps:
        sim.act(action, index)
        if seen_deleted:
            assert sim.state.status == domain.ProjectStatus.DELETED
        seen_deleted = sim.state.status == domain.ProjectStatus.DELETED


@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=actions)
def test_stored_projection_always_equals_the_replayed_log(steps, make_user, make_node):
    """Through the real event store and database: append, project, replay, compare."""
    from django.contrib.auth import get_user_model

    from nodes.models import Node
    from projects import projection
    from projects.eventstore import append
    from projects.models import Event

    # Hypothesis runs many examples inside one test: people and nodes are made once.
    user = get_user_model().objects.filter(username="prop").first() or make_user("prop")
    node = Node.objects.filter(name="prop-node").first() or make_node("prop-node")[0]
    sim = Simulation()
    sim.log.clear()
    project_id = str(uuid.uuid4())
    sim.state = domain.initial_state(project_id)
    sim.run(
        domain.CreateProject(
            owner_id=user.pk,
            name=f"p{uuid.uuid4().hex[:8]}",
            node_id=str(node.pk),
            git_url="https://h/r.git",
            branch="main",
            depth=None,
            job_id=str(uuid.uuid4()),
            max_attempts=3,
        )
    )
    for action, index in steps:
        sim.act(action, index)

    for version, event in enumerate(sim.log):
        append(
            project_id,
            version,
            [event.event],
            meta={"test": "property"},
        )

    assert Event.objects.filter(project_id=project_id).count() == len(sim.log)
    assert projection.check(project_id) == []
    # And every stream of the examples so far, read as one log in chunks that cut through them.
    replayed = projection.replay_all(batch_size=7)
    assert [drifts for _, drifts in projection.diffs(replayed, batch_size=4) if drifts] == []
