"""The event log: append-only in the database, one writer wins per version, drift is caught."""

import threading
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction

from projects import domain
from projects.eventstore import ConcurrencyError, append
from projects.models import Event, Project
from tests.conftest import clone_body


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
    event = domain.NewEvent(
        domain.EventType.JOB_QUEUED,
        {"job_id": str(uuid.uuid4()), "kind": "pull", "max_attempts": 3},
    )

    with pytest.raises(ConcurrencyError):
        append(project_id, 1, [event], meta={})

    assert Event.objects.filter(project_id=project_id).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_writers_at_the_same_version_one_wins_the_other_gets_a_clean_conflict(project_id):
    """Real threads, each with its own database connection, appending at the same version."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer() -> None:
        try:
            event = domain.NewEvent(
                domain.EventType.JOB_QUEUED,
                {"job_id": str(uuid.uuid4()), "kind": "pull", "max_attempts": 3},
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
