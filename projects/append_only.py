"""The triggers that make the event log append-only in the database, for SQLite and PostgreSQL.

Raw SQL `UPDATE`, `DELETE` and (PostgreSQL) `TRUNCATE` on the event table raise. Migration
projects 0002 creates them; a migration that truly needs to rewrite history must drop them
explicitly, in the open, with `statements(vendor, enabled=False)`.
"""

TABLE = "projects_event"
MESSAGE = "projects_event is append-only"

SQLITE_UP = [
    f"""
    CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END;
    """,
    f"""
    CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE refused'); END;
    """,
]
SQLITE_DOWN = [
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update;",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_delete;",
]

POSTGRES_UP = [
    f"""
    CREATE FUNCTION {TABLE}_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END;
    $$;
    """,
    f"""
    CREATE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_refuse_change();
    """,
    f"""
    CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_refuse_change();
    """,
]
POSTGRES_DOWN = [
    f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE};",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update_delete ON {TABLE};",
    f"DROP FUNCTION IF EXISTS {TABLE}_refuse_change();",
]

_BY_VENDOR = {
    "sqlite": (SQLITE_UP, SQLITE_DOWN),
    "postgresql": (POSTGRES_UP, POSTGRES_DOWN),
}


def statements(vendor: str, *, enabled: bool) -> list[str]:
    """The SQL that creates (`enabled`) or drops the triggers on `vendor`'s database."""
    if vendor not in _BY_VENDOR:
        raise NotImplementedError(f"No append-only triggers for {vendor}.")
    up, down = _BY_VENDOR[vendor]
    return up if enabled else down
