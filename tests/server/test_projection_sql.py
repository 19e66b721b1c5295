"""The fixed statements of `projects.fixed_sql` read and write what the ORM reads and writes."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from projects import domain, fixed_sql, projection, services
from projects.models import Event, Job, Project

pytestmark = pytest.mark.django_db

# Values that an encoding could change: nested JSON with non-ASCII text, floats, nulls and
# empty containers; timestamps with microseconds; empty strings.
AWKWARD_JSON = {"näme": "ünïcode ✓", "n": [1, 2.5, None, True], "empty": {}, "list": []}
AT = datetime(2026, 12, 2, 7, 48, 31, 123456, tzinfo=UTC)


def _stored_text(model, pk, skip=()) -> dict:
    """Every column of one row as the database holds it, as text."""
    columns = [f for f in model._meta.concrete_fields if f.attname not in skip]
    select = ", ".join(f"CAST({connection.ops.quote_name(f.column)} AS text)" for f in columns)
    table, key = model._meta.db_table, model._meta.pk
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {select} FROM {table} WHERE {key.column} = %s",  # noqa: S608
            [key.get_db_prep_value(pk, connection)],
        )
        return dict(zip([f.attname for f in columns], cursor.fetchone(), strict=True))


def _job_values(**changes) -> dict:
    return {
        "kind": "clone",
        "seq": 1,
        "state": "leased",
        "max_attempts": 3,
        "queued_at": AT,
        "available_at": AT,
        "attempt": 1,
        "failures": 0,
        "timeouts": 0,
        "lease_token": "tok",
        "lease_request_id": "",
        "lease_instance_id": str(uuid.uuid4()),
        "leased_at": AT,
        "lease_expires_at": AT + timedelta(seconds=90),
        "progress": AWKWARD_JSON,
        "result": None,
        "error": {"code": "x", "message": "ü"},
        "finished_at": None,
        "updated_at": AT,
        "options": {},
        **changes,
    }


def _two_projects(user, node) -> tuple[uuid.UUID, uuid.UUID]:
    first, second = (
        services.request_clone(
            owner=user, name=name, git_url="https://h/r.git", branch="main", node=node
        ).pk
        for name in ("a", "b")
    )
    return first, second


def test_a_job_row_inserted_and_updated_holds_what_the_orm_writes(user, node):
    first, second = _two_projects(user, node)
    values = _job_values(seq=100)
    by_orm, by_sql = uuid.uuid4(), uuid.uuid4()

    Job.objects.create(id=by_orm, project_id=first, node_id=node.pk, **values)
    fixed_sql.insert(Job, [{"id": by_sql, "project_id": second, "node_id": node.pk, **values}])
    skip = ("id", "project_id")
    assert _stored_text(Job, by_sql, skip) == _stored_text(Job, by_orm, skip)
    # The same INSERT as a statement, as the projection sends it along with an append's events.
    sent_along = uuid.uuid4()
    row = {"id": sent_along, "project_id": second, "node_id": node.pk, **{**values, "seq": 101}}
    [result] = fixed_sql.run_together(fixed_sql.insert_statements(Job, [row]))
    assert (result.rows, result.rowcount) == ([], 1)
    assert _stored_text(Job, sent_along, (*skip, "seq")) == _stored_text(
        Job, by_orm, (*skip, "seq")
    )
    with pytest.raises(ValueError, match="database-assigned"):
        fixed_sql.insert_statements(Event, [])

    changes = {"state": "succeeded", "result": AWKWARD_JSON, "lease_expires_at": None}
    assert Job.objects.filter(pk=by_orm).update(**changes) == 1
    assert fixed_sql.update(Job, by_sql, changes) == 1
    assert _stored_text(Job, by_sql, skip) == _stored_text(Job, by_orm, skip)


def test_a_project_row_holds_what_the_orm_writes_and_moves_only_from_its_version(user, node):
    state = projection.load(_two_projects(user, node)[0])
    values = {**projection._project_values(state), "workspace": AWKWARD_JSON, "sparse": ["a/ä"]}
    owner = {"owner_id": user.pk, "node_id": node.pk}
    by_orm, by_sql = uuid.uuid4(), uuid.uuid4()

    Project.objects.create(id=by_orm, **owner, **{**values, "name": "orm"})
    fixed_sql.insert(Project, [{"id": by_sql, **owner, **values, "name": "sql"}])
    assert _stored_text(Project, by_sql, ("id", "name")) == _stored_text(
        Project, by_orm, ("id", "name")
    )

    assert (
        fixed_sql.update(Project, by_sql, {"status": "ready"}, version=values["version"] + 1) == 0
    )
    assert fixed_sql.update(Project, by_sql, {"status": "ready"}, version=values["version"]) == 1
    assert Project.objects.get(pk=by_sql).status == "ready"


def test_events_are_stored_as_the_orm_stores_them_and_their_positions_come_back(user, node):
    stream = uuid.uuid4()
    row = {
        "project_id": stream,
        "type": "Forged",
        "data": AWKWARD_JSON,
        "meta": {"node_id": str(node.pk)},
        "recorded_at": AT,
    }

    orm = Event.objects.create(**row, version=1)
    positions = fixed_sql.insert(Event, [{**row, "version": 2}, {**row, "version": 3}]).keys

    assert positions == sorted(positions) and positions[0] > orm.position
    assert list(Event.objects.filter(project_id=stream).values_list("position", flat=True)) == [
        orm.position,
        *positions,
    ]
    skip = ("position", "version")
    for position in positions:
        assert _stored_text(Event, position, skip) == _stored_text(Event, orm.position, skip)


def test_a_loaded_state_is_the_orm_s_reading_of_the_rows(user, node):
    project_id = _two_projects(user, node)[0]
    Job.objects.create(
        id=uuid.uuid4(), project_id=project_id, node_id=node.pk, **_job_values(seq=7)
    )
    done = uuid.uuid4()
    Job.objects.create(
        id=done, project_id=project_id, node_id=node.pk, **_job_values(seq=8, state="failed")
    )

    state = projection.load(project_id, job_ids=[str(done), "not-a-uuid"], lock=True)

    row = Project.objects.get(pk=project_id)
    assert (state.id, state.owner_id, state.node_id) == (str(row.pk), user.pk, str(node.pk))
    assert state.updated_at == row.updated_at and state.status == domain.ProjectStatus(row.status)
    expected = Job.objects.filter(project_id=project_id, state__in=["queued", "leased"])
    assert set(state.jobs) == {str(job.pk) for job in expected} | {str(done)}
    for job in Job.objects.filter(project_id=project_id):
        if str(job.pk) in state.jobs:
            assert state.jobs[str(job.pk)] == projection._job_state(
                {name: getattr(job, name) for name in projection._LOADED_JOB_COLUMNS}
            )
    assert state.jobs[str(done)].progress == AWKWARD_JSON


def test_positions_come_back_where_the_database_cannot_return_inserted_rows(
    user, node, monkeypatch
):
    """Older SQLite has no RETURNING: the rows go in one at a time, each key read back."""
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL always returns inserted rows")
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    stream = uuid.uuid4()
    rows = [
        {"project_id": stream, "version": v, "type": "Forged", "data": {}, "recorded_at": AT}
        for v in (1, 2, 3)
    ]

    positions = fixed_sql.insert(Event, rows).keys

    stored = Event.objects.filter(project_id=stream).order_by("version")
    assert positions == [event.position for event in stored]
    assert [event.meta for event in stored] == [{}, {}, {}]  # the field's default
