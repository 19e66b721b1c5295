"""The one write path: append events to a project's stream and fold them into the projections.

Ordering of the global feed. Positions come from the event table's identity column, which hands
numbers out when rows are inserted, not when they commit. So that a reader of the feed never
skips an event that commits late, every append on PostgreSQL takes `LOCK TABLE … IN EXCLUSIVE
MODE` on the event table just before inserting: appends commit one at a time in position order,
while plain `SELECT`s (ACCESS SHARE) are not blocked. SQLite serialises all writes anyway. The
lock is the last thing an append takes, after the projections are written; the projection's
writes, the lock and the `INSERT` go in one round trip, so that the lock is held for two (the
`INSERT`'s and the `COMMIT`'s) rather than across the whole write.

Optimistic concurrency: the projection's project row is updated only while it is still at the
expected version (compare and set, its row count checked before the `COMMIT`), and
`UNIQUE(project_id, version)` on the log backs that up; either way a writer that lost the race
gets `ConcurrencyError` and nothing it wrote survives. A project's first append inserts its
rows on their own first, so that a twin's `IntegrityError` (the same live owner and name)
reaches its caller as such.

Lock order, to stay free of deadlocks: the project row (`load(lock=True)`, or the claim's
`FOR UPDATE SKIP LOCKED`), then that project's job rows, then the event table.

The projection's reads and writes and the event `INSERT` run as fixed SQL
(`projects.fixed_sql`), built once per process rather than compiled by the ORM on every append.

Nested in a caller's transaction, `append` and `execute` work in a savepoint, so that a refusal
leaves the caller's transaction usable; a caller that rolls back on any failure anyway passes
`savepoint=False` and saves the two statements (`execute` does so for `append`, and the lease
path for `execute`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.exceptions import Conflict
from projects import domain, fixed_sql, projection
from projects.models import Event

MAX_RETRIES = 8

# Called inside the appending transaction with the project id in every append that stores
# events, just before the INSERT; each returns statements to run with the INSERT, in its round
# trip (the watch API's wake-ups register here with their NOTIFY, so this module imports no
# waker).
_append_listeners: list[Callable[[str], list[fixed_sql.Statement]]] = []


def on_append(listener: Callable[[str], list[fixed_sql.Statement]]) -> None:
    """Calls `listener(project_id)` inside every transaction that appends events; the
    statements it returns run just before the events' INSERT, in the same round trip."""
    if listener not in _append_listeners:
        _append_listeners.append(listener)


class ConcurrencyError(Conflict):
    """Someone else appended to the stream first; reload and decide again."""

    code = "concurrent_update"


@dataclass(frozen=True)
class Appended:
    state: domain.Project
    events: list[domain.Recorded]
    positions: list[int]


def _feed_lock() -> list[fixed_sql.Statement]:
    if connection.vendor == "postgresql":
        return [(f"LOCK TABLE {Event._meta.db_table} IN EXCLUSIVE MODE", [])]
    return []


def append(
    project_id: uuid.UUID | str,
    expected_version: int,
    events: Sequence[domain.DomainEvent],
    *,
    meta: dict[str, Any],
    state: domain.Project | None = None,
    savepoint: bool = True,
) -> Appended:
    """Appends `events` after `expected_version` and updates the projections, atomically.

    `state` is the decider state the events were decided on (loaded if not given). Raises
    `ConcurrencyError` when the stream is no longer at `expected_version`. Nested in a
    transaction it works in a savepoint unless `savepoint=False` (as `execute` calls it).
    """
    project_id = str(project_id)
    with transaction.atomic(savepoint=savepoint):
        if state is None:
            state = projection.load(project_id)
        if state.version != expected_version:
            raise ConcurrencyError(
                f"Project {project_id} is at version {state.version}, not {expected_version}."
            )
        if not events:
            return Appended(state=state, events=[], positions=[])
        now = timezone.now()
        stored = [
            domain.Recorded(event, expected_version + offset, now)
            for offset, event in enumerate(events, start=1)
        ]
        new_state = domain.fold(state, stored)
        if expected_version == 0:
            projection.save_new(new_state)
            writes = []
        else:
            writes = projection.changes(new_state, previous=state)
        rows = [
            {
                "project_id": project_id,
                "version": recorded.version,
                "type": recorded.event.type,
                "data": recorded.event.to_data(),
                "meta": meta,
                "recorded_at": now,
            }
            for recorded in stored
        ]
        # The projection's writes, the listeners' statements (NOTIFY), the feed lock and the
        # INSERT, in one round trip, so that the lock covers only the INSERT and the COMMIT;
        # what the listeners queue (NOTIFY, on-commit wakes) is dropped if the append fails.
        along = [statement for listener in _append_listeners for statement in listener(project_id)]
        try:
            inserted = fixed_sql.insert(Event, rows, along=[*writes, *along, *_feed_lock()])
        except IntegrityError as exc:  # the log's UNIQUE(project_id, version): a writer won
            raise _changed_concurrently(project_id, expected_version) from exc
        if writes and inserted.along[0].rowcount != 1:  # the project row's compare-and-set
            raise _changed_concurrently(project_id, expected_version)
        return Appended(state=new_state, events=stored, positions=inserted.keys)


def _changed_concurrently(project_id: str, version: int) -> ConcurrencyError:
    return ConcurrencyError(f"Project {project_id} was changed concurrently at version {version}.")


def execute(
    project_id: uuid.UUID | str,
    command: domain.Command | Callable[[domain.Project], domain.Command],
    *,
    meta: dict[str, Any],
    job_ids: Sequence[str] = (),
    after: Callable[[Appended], None] | None = None,
    savepoint: bool = True,
) -> Appended:
    """Loads the stream, decides, and appends, retrying when another writer got there first.

    Inside a caller's transaction it works in a savepoint, so that a refusal leaves the caller's
    transaction usable; a caller that rolls back on any error itself may pass `savepoint=False`
    (one statement pair fewer per call), and then gets the `ConcurrencyError` without a retry.

    `command` may be a function of the state, for commands that depend on what is loaded.
    `after` runs inside the same transaction once the events are stored (e.g. a NOTIFY).
    """
    nested = transaction.get_connection().in_atomic_block
    retries = 1 if nested and not savepoint else MAX_RETRIES
    for attempt in range(retries):
        try:
            with transaction.atomic(savepoint=savepoint):
                state = projection.load(project_id, job_ids=job_ids, lock=True)
                decided = command(state) if callable(command) else command
                events = domain.decide(state, decided)
                appended = append(
                    project_id, state.version, events, meta=meta, state=state, savepoint=False
                )
                if after is not None and appended.events:
                    after(appended)
                return appended
        except ConcurrencyError:
            if attempt == retries - 1:
                raise
    raise AssertionError("unreachable")
