"""The event log: append-only in the database, one writer wins per version, drift is caught."""

import threading
import uuid
from datetime import UTC, datetime
from functools import partial
from itertools import groupby
from typing import NamedTuple

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction

from projects import domain, leases, projection
from projects.eventstore import ConcurrencyError, append
from projects.models import Event, Job, Project
from projects.projection import Drift
from tests.support.api import clone_body


@pytest.fixture
def project_id(api, node) -> str:
    response = api.post("/api/v1/projects/clone", clone_body(), format="json")
    assert response.status_code == 202
    return response.json()["project"]["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE projects_event SET type = 'Forged'",
        "UPDATE projects_event SET data = '{}' WHERE version = 1",
        "DELETE FROM projects_event",
        "DELETE FROM projects_event WHERE version = 2",
    ],
)
def test_raw_sql_cannot_change_or_remove_events(project_id, statement):
    before = list(Event.objects.values_list("position", "type", "data"))

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)

    assert list(Event.objects.values_list("position", "type", "data")) == before


@pytest.mark.django_db
def test_truncate_is_refused_on_postgresql(project_id):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; DELETE is covered above")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("TRUNCATE projects_event")
    assert Event.objects.count() == 2


@pytest.mark.django_db
def test_append_with_a_stale_expected_version_is_a_conflict(project_id):
    event = domain.JobQueued(job_id=str(uuid.uuid4()), kind=domain.JobKind.PULL, max_attempts=3)

    with pytest.raises(ConcurrencyError):
        append(project_id, 1, [event], meta={})

    assert Event.objects.filter(project_id=project_id).count() == 2


@pytest.mark.django_db
def test_a_lost_compare_and_set_is_a_conflict_even_where_the_log_has_room(project_id):
    """The project row moved on (here by hand, to a version the log does not hold, so that the
    event INSERT meets no UNIQUE(project_id, version) to stop it): the append is refused on the
    row count of its compare-and-set, sent in the same round trip as the INSERT, and leaves
    nothing behind (no event, no job row, the project row as it was)."""
    state = projection.load(project_id)
    Project.objects.filter(pk=project_id).update(version=7)
    job_id = str(uuid.uuid4())
    event = domain.JobQueued(job_id=job_id, kind=domain.JobKind.PULL, max_attempts=3)
    events_before = list(Event.objects.values_list("position", flat=True))

    with pytest.raises(ConcurrencyError, match="changed concurrently at version 2"):
        append(project_id, 2, [event], meta={}, state=state)

    assert list(Event.objects.values_list("position", flat=True)) == events_before
    assert not Job.objects.filter(pk=job_id).exists()
    assert Project.objects.get(pk=project_id).version == 7


@pytest.mark.django_db(transaction=True)
def test_two_writers_at_the_same_version_one_wins_the_other_gets_a_clean_conflict(project_id):
    """Real threads, each with its own database connection, appending at the same version."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer() -> None:
        try:
            event = domain.JobQueued(
                job_id=str(uuid.uuid4()), kind=domain.JobKind.PULL, max_attempts=3
            )
            barrier.wait(timeout=10)
            try:
                append(project_id, 2, [event], meta={"writer": threading.get_ident()})
                outcome = "won"
            except ConcurrencyError:
                outcome = "conflict"
            with lock:
                outcomes.append(outcome)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["conflict", "won"]
    versions = list(
        Event.objects.filter(project_id=project_id)
        .order_by("version")
        .values_list("version", flat=True)
    )
    assert versions == [1, 2, 3]
    assert Project.objects.get(pk=project_id).version == 3
    call_command("rebuild_projections", "--check")


@pytest.mark.django_db
def test_rebuild_check_names_drift_and_repair_fixes_it(project_id, capsys):
    Project.objects.filter(pk=project_id).update(status="ready", commit="f" * 40)

    with pytest.raises(CommandError, match="1 project projection"):
        call_command("rebuild_projections", "--check")
    out = capsys.readouterr().out
    assert f"project {project_id}: project status: stored 'ready', replayed 'pending'" in out
    assert "commit" in out

    call_command("rebuild_projections")
    call_command("rebuild_projections", "--check")
    assert Project.objects.get(pk=project_id).status == "pending"


@pytest.mark.django_db
def test_rebuild_of_one_project_checks_and_repairs_only_that_one(project_id, capsys):
    other = Project.objects.get(pk=project_id)
    other.pk, other.name = uuid.uuid4(), "other"  # a row no stream accounts for
    other.save(force_insert=True)
    Project.objects.filter(pk=project_id).update(status="ready")

    with pytest.raises(CommandError, match="1 project projection"):
        call_command("rebuild_projections", "--check", "--project", str(project_id))
    out = capsys.readouterr().out
    assert "1 project(s) replayed" in out and str(other.pk) not in out

    call_command("rebuild_projections", "--project", str(project_id))
    call_command("rebuild_projections", "--check", "--project", str(project_id))
    assert Project.objects.get(pk=project_id).status == "pending"


@pytest.mark.django_db
def test_rebuild_check_catches_a_missing_job_row(project_id, capsys):
    from projects.models import Job

    Job.objects.filter(project_id=project_id).delete()

    with pytest.raises(CommandError):
        call_command("rebuild_projections", "--check")
    assert "row: stored None, replayed 'present'" in capsys.readouterr().out
    call_command("rebuild_projections")
    assert Job.objects.filter(project_id=project_id).count() == 1


@pytest.mark.django_db
def test_rebuild_check_names_a_project_row_no_stream_accounts_for(project_id, capsys):
    from django.utils import timezone

    stray = Project.objects.get(pk=project_id)
    stray.pk, stray.name = uuid.uuid4(), "stray"
    stray.created_at = stray.updated_at = timezone.now()
    stray.save(force_insert=True)

    with pytest.raises(CommandError):
        call_command("rebuild_projections", "--check")
    assert f"project {stray.pk}: project row: stored 'present'" in capsys.readouterr().out


# --- Rebuilding many projects: one read of the log, stored rows compared in batches -----------


class Log(NamedTuple):
    ids: list[str]  # in the order a rebuild replays them: by id
    bare: str  # the project without jobs


def _bare_project(user, node, name: str) -> str:
    """A project whose stream is only its creation: it has no jobs."""
    project_id = str(uuid.uuid4())
    data = {
        "owner_id": user.pk,
        "name": name,
        "node_id": str(node.pk),
        "git_url": "https://git.example.com/group/bare.git",
        "branch": "main",
        "depth": None,
        "target_path": f"{user.pk}_{name}",
    }
    append(project_id, 0, [domain.ProjectCreated(**data)], meta={})
    return project_id


@pytest.fixture
def log(api, user, node, settings) -> Log:
    """Four clones leased and renewed round by round, so that their events interleave in the
    log, and a project with no jobs created among them."""
    settings.MAX_RUNNING_JOBS_PER_USER_PER_NODE = 4  # one person's four clones run at once

    def clone(name: str) -> str:
        response = api.post("/api/v1/projects/clone", clone_body(name=name), format="json")
        assert response.status_code == 202
        return response.json()["project"]["id"]

    ids = [clone("one"), clone("two"), _bare_project(user, node, "bare"), clone("three")]
    ids.append(clone("four"))
    grants = [leases.lease(node=node, request_id=f"r{n}", instance_id="i") for n in range(4)]
    for percent in (10, 60):
        for grant in grants:
            token = grant.job.lease_token
            leases.renew(
                node=node, job_id=grant.job.id, lease_token=token, progress={"percent": percent}
            )
    streams = Event.objects.order_by("position").values_list("project_id", flat=True)
    assert len([stream for stream, _ in groupby(streams)]) > 2 * len(ids)  # interleaved
    return Log(ids=sorted(ids), bare=ids[2])


def _replayed_from_models(project_id: str) -> domain.Project:
    """The replay of one stream read as model instances, the plain way."""
    rows = Event.objects.filter(project_id=project_id).order_by("version")
    return projection.replay(
        project_id,
        [
            domain.Recorded(
                domain.event_from_data(row.type, row.data), row.version, row.recorded_at
            )
            for row in rows
        ],
    )


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", [1, 3, 5000])
def test_replay_all_reads_interleaved_streams_in_chunks_as_each_stream_alone(log, batch_size):
    replayed = list(projection.replay_all(batch_size=batch_size))

    assert [project.id for project in replayed] == log.ids
    assert replayed == [_replayed_from_models(project_id) for project_id in log.ids]
    bare = replayed[log.ids.index(log.bare)]
    assert (bare.version, bare.jobs) == (1, {})
    assert all(
        project.version == 5 and len(project.jobs) == 1
        for project in replayed
        if project.id != log.bare
    )


@pytest.mark.django_db
def test_drift_in_the_middle_of_a_batch_is_reported_for_that_project_alone(log, capsys):
    target = next(project_id for project_id in log.ids[1:4] if project_id != log.bare)
    job = Job.objects.get(project_id=target)
    Project.objects.filter(pk=target).update(status="ready")
    Job.objects.filter(pk=job.pk).update(attempt=7)
    expected = [
        Drift(target, "project", "status", "ready", "pending"),
        Drift(target, f"job {job.pk}", "attempt", 7, 1),
    ]

    for batch_size in (1, 2, 5):  # 5: the target is inside the one batch, as in the command
        compared = projection.diffs(projection.replay_all(batch_size=2), batch_size=batch_size)
        found = {project.id: drifts for project, drifts in compared}
        assert found == {pid: expected if pid == target else [] for pid in log.ids}
    assert projection.check(target) == expected

    with pytest.raises(CommandError, match="1 project projection"):
        call_command("rebuild_projections", "--check")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"drift: {drift}" for drift in expected] + [
        "5 project(s) replayed, 1 drifted."
    ]

    call_command("rebuild_projections")
    call_command("rebuild_projections", "--check")
    assert Project.objects.get(pk=target).status == "pending"
    assert Job.objects.get(pk=job.pk).attempt == 1


@pytest.mark.django_db
def test_a_project_without_jobs_is_checked_and_repaired_like_any_other(log, capsys):
    stray = Job.objects.exclude(project_id=log.bare).first()
    stray.pk, stray.project_id = uuid.uuid4(), log.bare
    stray.save(force_insert=True)
    stray_row = f"drift: project {log.bare}: job {stray.pk} row: stored 'present', replayed None"

    with pytest.raises(CommandError, match="1 project projection"):
        call_command("rebuild_projections", "--check")
    call_command("rebuild_projections")
    assert capsys.readouterr().out.splitlines() == [
        stray_row,
        "5 project(s) replayed, 1 drifted.",
        stray_row,
        "5 project(s) replayed, 1 repaired.",
    ]
    assert not Job.objects.filter(project_id=log.bare).exists()

    Project.objects.filter(pk=log.bare).delete()
    with pytest.raises(CommandError, match="1 project projection"):
        call_command("rebuild_projections", "--check")
    assert capsys.readouterr().out.splitlines() == [
        f"drift: project {log.bare}: project row: stored None, replayed 'present'",
        "5 project(s) replayed, 1 drifted.",
    ]
    call_command("rebuild_projections")
    call_command("rebuild_projections", "--check")
    assert Project.objects.get(pk=log.bare).version == 1


@pytest.mark.django_db
def test_repair_builds_a_projection_from_the_log_alone_to_the_microsecond(user, node):
    project_id, job_id = uuid.uuid4(), str(uuid.uuid4())
    whole_second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC)
    created = {
        "owner_id": user.pk,
        "name": "restored",
        "node_id": str(node.pk),
        "git_url": "https://git.example.com/group/restored.git",
        "branch": "main",
        "depth": 1,
        "target_path": f"{user.pk}_restored",
    }
    queued = {"job_id": job_id, "kind": "clone", "max_attempts": 3}
    Event.objects.bulk_create(
        [
            Event(
                project_id=project_id,
                version=1,
                type="ProjectCreated",
                data=created,
                recorded_at=whole_second,
            ),
            Event(
                project_id=project_id, version=2, type="JobQueued", data=queued, recorded_at=later
            ),
        ]
    )

    call_command("rebuild_projections")

    call_command("rebuild_projections", "--check")
    project = Project.objects.get(pk=project_id)
    assert (project.created_at, project.updated_at, project.depth) == (whole_second, later, 1)
    assert Job.objects.get(pk=job_id).queued_at == later


@pytest.mark.django_db(transaction=True)
def test_repair_writes_while_the_log_is_still_being_read(log, monkeypatch):
    """A chunk of one row keeps the read of the log open across every repair."""
    monkeypatch.setattr(projection, "replay_all", partial(projection.replay_all, batch_size=1))
    first, last = log.ids[0], log.ids[-1]
    Project.objects.filter(pk__in=[first, last]).update(branch="tampered")

    call_command("rebuild_projections")

    call_command("rebuild_projections", "--check")
    assert not Project.objects.filter(branch="tampered").exists()
