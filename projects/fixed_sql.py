"""Fixed SQL for the statements every lease and every completion runs, below the ORM.

Why: an agent's lease + complete cycle is a dozen small statements, and building and compiling
each through the ORM (`SQLCompiler.as_sql`, `pre_sql_setup`, `get_order_by`) was about 40 % of
the server's Python time (BENCHMARKS.md, "Profiles and bottlenecks", findings 3 and 4). The
statements here are written once per process and shape (the columns an `UPDATE` sets, the rows
an `INSERT` holds) from the models' table and column names, and run through
`connection.cursor()`, so a call builds nothing but its parameters.

They read and write what the ORM would, value for value, on SQLite and PostgreSQL alike: values
go in through the fields' `get_db_prep_save` / `get_db_prep_value` (JSON encoded as `JSONField`
encodes it for each backend, UUIDs and timestamps adapted by the connection's operations), and
come out through the converters Django's compiler applies (the backend's and the field's own
`from_db_value`). What each statement means stays with its caller: the projection's
compare-and-set on the project's version (`projects.projection`), the event log's
`UNIQUE(project_id, version)` and feed lock (`projects.eventstore`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import cache
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from psycopg import pq

from projects.models import Job, Project

Row = dict[str, Any]
# A statement for `run_together` (or for `insert` to send along): SQL and its parameters.
Statement = tuple[str, Sequence[Any]]


class Result(NamedTuple):
    """What one statement of `run_together` gave: its rows ([] for a statement that returns
    none) and its row count (the rows an `UPDATE` changed)."""

    rows: list[tuple]
    rowcount: int


class Inserted(NamedTuple):
    """What `insert` gave: the keys the database assigned, and the results of the statements
    it sent along, in order."""

    keys: list[Any]
    along: list[Result]


# The statements are built through `connection` once; each call looks its thread's connection up
# once (`_db`) and hands it down, since every use of `connection` is a thread-local lookup.


def _db() -> BaseDatabaseWrapper:
    return connections[DEFAULT_DB_ALIAS]


# SQLite binds at most 999 parameters per statement in older builds: an INSERT of many rows
# is split into statements of this many rows at most.
_ROWS_PER_INSERT = 100


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


@cache
def _fields(model: type[Model]) -> dict[str, Field]:
    """A model's columns by attribute name (`node_id` for the `node` foreign key)."""
    return {field.attname: field for field in model._meta.concrete_fields}


def _column_list(model: type[Model], names: Iterable[str]) -> str:
    fields = _fields(model)
    return ", ".join(_quote(fields[name].column) for name in names)


def _lookup_value(db: BaseDatabaseWrapper, model: type[Model], name: str, value: Any) -> Any:
    """`value` as the ORM sends it in a `WHERE name = …` (UUIDs checked and adapted)."""
    field = _fields(model)[name]
    return field.get_db_prep_value(field.get_prep_value(value), db, prepared=True)


def _saved_values(
    db: BaseDatabaseWrapper, model: type[Model], values: Mapping[str, Any]
) -> list[Any]:
    """`values` as the ORM sends them to an `INSERT` or an `UPDATE`."""
    fields = _fields(model)
    return [fields[name].get_db_prep_save(value, db) for name, value in values.items()]


class _Reader:
    """Turns rows of some columns of a model's table into dicts by attribute name, converting
    each value as the ORM's compiler does for that column.

    The converters are looked up once, on the first thread's connection, and called with each
    call's own: the backends' converters keep no per-connection state (their time zone is the
    settings' on every connection).
    """

    def __init__(self, model: type[Model], names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.columns = _column_list(model, self.names)
        fields, table = _fields(model), model._meta.db_table
        self._converters = []
        for index, name in enumerate(self.names):
            column = fields[name].get_col(table)
            converters = connection.ops.get_db_converters(column) + column.get_db_converters(
                connection
            )
            if converters:
                self._converters.append((index, converters, column))

    def row(self, db: BaseDatabaseWrapper, values: Sequence[Any]) -> Row:
        out = list(values)
        for index, converters, column in self._converters:
            value = out[index]
            for converter in converters:
                value = converter(value, column, db)
            out[index] = value
        return dict(zip(self.names, out, strict=True))


# --- Reads ------------------------------------------------------------------------------------


@cache
def _select_project(vendor: str, names: tuple[str, ...], lock: bool) -> tuple[str, _Reader]:
    reader = _Reader(Project, names)
    lock_sql = " FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    table, pk = _quote(Project._meta.db_table), _quote(Project._meta.pk.column)
    return f"SELECT {reader.columns} FROM {table} WHERE {pk} = %s{lock_sql}", reader  # noqa: S608


@cache
def _select_jobs(vendor: str, names: tuple[str, ...], states: int, ids: int) -> tuple[str, _Reader]:
    reader = _Reader(Job, names)
    fields = _fields(Job)
    project, state, pk = (_quote(fields[name].column) for name in ("project_id", "state", "id"))
    wanted = f"{state} IN ({', '.join(['%s'] * states)})"
    if ids:
        wanted = f"({wanted} OR {pk} IN ({', '.join(['%s'] * ids)}))"
    order = _quote(fields["queued_at"].column)
    table = _quote(Job._meta.db_table)
    sql = f"SELECT {reader.columns} FROM {table} WHERE {project} = %s AND {wanted} ORDER BY {order}"  # noqa: S608
    return sql, reader


def project_with_jobs(
    project_id: Any,
    project_names: Sequence[str],
    job_names: Sequence[str],
    *,
    states: Collection[str],
    job_ids: Sequence[Any],
    lock: bool = False,
) -> tuple[Row | None, list[Row]]:
    """The `project_names` columns of the project row (None if there is none), and the
    `job_names` columns of its jobs that are in one of `states` or named in `job_ids` (valid
    UUIDs), in queue order: in one round trip where the database allows (`run_together`).
    `lock` takes the project's row lock first (`SELECT … FOR UPDATE`, PostgreSQL; SQLite's
    write transaction serialises anyway)."""
    db = _db()
    project_sql, project_reader = _select_project(db.vendor, tuple(project_names), lock)
    state_values = sorted(str(state) for state in states)
    jobs_sql, jobs_reader = _select_jobs(
        db.vendor, tuple(job_names), len(state_values), len(job_ids)
    )
    project_key = _lookup_value(db, Project, "id", project_id)
    jobs_params = [
        _lookup_value(db, Job, "project_id", project_id),
        *state_values,
        *(_lookup_value(db, Job, "id", job_id) for job_id in job_ids),
    ]
    projects, jobs = (
        result.rows
        for result in run_together([(project_sql, [project_key]), (jobs_sql, jobs_params)])
    )
    if not projects:
        return None, []
    return project_reader.row(db, projects[0]), [jobs_reader.row(db, row) for row in jobs]


@cache
def _select_node_job(vendor: str, names: tuple[str, ...]) -> tuple[str, _Reader]:
    reader = _Reader(Job, names)
    fields = _fields(Job)
    pk, node = _quote(fields["id"].column), _quote(fields["node_id"].column)
    table = _quote(Job._meta.db_table)
    return f"SELECT {reader.columns} FROM {table} WHERE {pk} = %s AND {node} = %s", reader  # noqa: S608


def node_job_row(job_id: Any, node_id: Any, names: Sequence[str]) -> Row | None:
    """The `names` columns of the job if it is the node's, else None."""
    db = _db()
    sql, reader = _select_node_job(db.vendor, tuple(names))
    params = [_lookup_value(db, Job, "id", job_id), _lookup_value(db, Job, "node_id", node_id)]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else reader.row(db, row)


# --- Writes -----------------------------------------------------------------------------------


@cache
def _update_sql(
    vendor: str, model: type[Model], names: tuple[str, ...], compare_version: bool
) -> str:
    fields = _fields(model)
    assignments = ", ".join(f"{_quote(fields[name].column)} = %s" for name in names)
    where = f"{_quote(model._meta.pk.column)} = %s"
    if compare_version:
        where += f" AND {_quote(fields['version'].column)} = %s"
    return f"UPDATE {_quote(model._meta.db_table)} SET {assignments} WHERE {where}"  # noqa: S608


def update_statement(
    model: type[Model], pk: Any, values: Mapping[str, Any], *, version: int | None = None
) -> Statement:
    """The `UPDATE` that sets `values` (attribute names to values) on the row `pk`, only while
    its `version` is still `version` when one is given: its row count (`Result.rowcount`) says
    whether it changed the row."""
    if not values:
        raise ValueError("An UPDATE needs at least one column.")
    db = _db()
    sql = _update_sql(db.vendor, model, tuple(values), version is not None)
    params = [
        *_saved_values(db, model, values),
        _lookup_value(db, model, model._meta.pk.attname, pk),
    ]
    if version is not None:
        params.append(_lookup_value(db, model, "version", version))
    return sql, params


def update(
    model: type[Model], pk: Any, values: Mapping[str, Any], *, version: int | None = None
) -> int:
    """Runs `update_statement`; returns the number of rows changed (0 or 1)."""
    return run_together([update_statement(model, pk, values, version=version)])[0].rowcount


@cache
def _inserted_names(model: type[Model]) -> tuple[str, ...]:
    """The columns an `INSERT` writes: all but a database-assigned primary key."""
    return tuple(
        field.attname
        for field in model._meta.concrete_fields
        if field is not model._meta.auto_field
    )


@cache
def _insert_sql(vendor: str, model: type[Model], rows: int, returning: bool) -> str:
    names = _inserted_names(model)
    values = ", ".join([f"({', '.join(['%s'] * len(names))})"] * rows)
    table, columns = _quote(model._meta.db_table), _column_list(model, names)
    sql = f"INSERT INTO {table} ({columns}) VALUES {values}"  # noqa: S608
    if returning:
        sql += f" RETURNING {_quote(model._meta.pk.column)}"
    return sql


def insert(
    model: type[Model], rows: Sequence[Mapping[str, Any]], *, along: Sequence[Statement] = ()
) -> Inserted:
    """Inserts `rows` (attribute names to values; a missing column takes its field's default,
    as `Model.objects.create` gives it). Returns the primary keys the database assigned, in
    order, when the model's key is database-assigned (the event log's positions).

    `along` are statements to run first (the projection's writes, the event log's `NOTIFY` and
    lock), with the first `INSERT` through `run_together`: in its round trip where the database
    allows. Their results come back with the keys.
    """
    db = _db()
    auto = model._meta.auto_field is not None
    returning = auto and db.features.can_return_rows_from_bulk_insert
    # Without RETURNING, a database-assigned key is read back after each single-row INSERT.
    per_statement = 1 if auto and not returning else _ROWS_PER_INSERT
    keys: list[Any] = []
    before: list[Statement] = list(along)
    along_results: list[Result] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        statement = (
            _insert_sql(db.vendor, model, len(chunk), returning),
            _inserted_values(db, model, chunk),
        )
        if not auto or returning:
            *results, inserted = run_together([*before, statement])
            if returning:
                keys += [key for (key,) in inserted.rows]
        else:
            results = run_together(before) if before else []
            with db.cursor() as cursor:
                cursor.execute(*statement)
                table, column = model._meta.db_table, model._meta.pk.column
                keys.append(db.ops.last_insert_id(cursor, table, column))
        if before:
            along_results = results
        before = []
    return Inserted(keys, along_results)


def insert_statements(model: type[Model], rows: Sequence[Mapping[str, Any]]) -> list[Statement]:
    """The `INSERT`s of `rows`, as `insert` would run them, for a model whose key is not
    database-assigned (nothing needs reading back)."""
    if model._meta.auto_field is not None:
        raise ValueError(f"{model.__name__}'s key is database-assigned: use insert().")
    db = _db()
    return [
        (
            _insert_sql(db.vendor, model, len(chunk), False),
            _inserted_values(db, model, chunk),
        )
        for chunk in (
            rows[start : start + _ROWS_PER_INSERT]
            for start in range(0, len(rows), _ROWS_PER_INSERT)
        )
    ]


def _inserted_values(
    db: BaseDatabaseWrapper, model: type[Model], rows: Sequence[Mapping[str, Any]]
) -> list[Any]:
    fields, names = _fields(model), _inserted_names(model)
    return [
        fields[name].get_db_prep_save(row[name] if name in row else fields[name].get_default(), db)
        for row in rows
        for name in names
    ]


def takes_several_statements(db: BaseDatabaseWrapper) -> bool:
    """Whether one `execute` may carry several statements with parameters: PostgreSQL with
    client-side binding (Django's default; `server_side_binding` turns it off)."""
    return db.vendor == "postgresql" and not db.settings_dict["OPTIONS"].get("server_side_binding")


def run_together(statements: Sequence[Statement]) -> list[Result]:
    """Runs `statements` in order in one transaction's flow and returns each one's `Result`: in
    one round trip where one call may carry several statements (`takes_several_statements`),
    else one by one. Each statement still sees what the ones before it did and, in READ
    COMMITTED, what committed before it started. A statement that fails raises, and the ones
    after it do not run."""
    db = _db()
    results: list[Result] = []
    with db.cursor() as cursor:
        if takes_several_statements(db) and len(statements) > 1:
            cursor.execute(
                "; ".join(sql for sql, _ in statements),
                [value for _, values in statements for value in values],
            )
            for index in range(len(statements)):
                if index:
                    cursor.nextset()
                results.append(_result(db, cursor))
        else:
            for sql, params in statements:
                cursor.execute(sql, params)
                results.append(_result(db, cursor))
    return results


def _result(db: BaseDatabaseWrapper, cursor) -> Result:
    """The rows and row count of the statement the cursor is on. On PostgreSQL whether it
    returned rows is told by the result's status, not by `description`, which psycopg builds
    column by column on every read (a tenth of the lease path's CPU)."""
    if db.vendor == "postgresql":
        returned = cursor.pgresult.status == pq.ExecStatus.TUPLES_OK
    else:
        returned = cursor.description is not None
    return Result(cursor.fetchall() if returned else [], cursor.rowcount)
