"""The pool's check of a PostgreSQL connection (`core.postgresql`): no round trip while the
connection is healthy; a connection the server closed is refused, and the pool replaces it."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from core.postgresql.base import check_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def conninfo():
    if connection.vendor != "postgresql":
        pytest.skip("the pool and its check are PostgreSQL's")
    assert connection.pool._check is check_connection
    return connection.get_connection_params()


def _last_query(admin: psycopg.Connection, pid: int) -> str:
    return admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


def _terminate(admin: psycopg.Connection, conn: psycopg.Connection) -> None:
    """Ends `conn`'s backend from the server's side, and waits until its socket says so."""
    admin.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    assert poller.poll(5000), "the server's end of the connection never reached its socket"


def test_a_healthy_connection_is_handed_out_without_a_query(conninfo):
    with (
        psycopg.connect(**conninfo, autocommit=True) as conn,
        psycopg.connect(**conninfo, autocommit=True) as admin,
    ):
        conn.execute("SELECT 'the last thing this connection ran'")

        check_connection(conn)
        check_connection(conn)

        pid = conn.info.backend_pid
        assert _last_query(admin, pid) == "SELECT 'the last thing this connection ran'"
        ConnectionPool.check_connection(conn)  # what psycopg_pool's own check would have sent
        assert _last_query(admin, pid) == ""


def test_a_connection_the_server_closed_is_refused(conninfo):
    with (
        psycopg.connect(**conninfo, autocommit=True) as conn,
        psycopg.connect(**conninfo, autocommit=True) as admin,
    ):
        _terminate(admin, conn)

        with pytest.raises(psycopg.OperationalError):
            check_connection(conn)


def test_the_pool_replaces_a_connection_the_server_closed(conninfo):
    pool = ConnectionPool(
        kwargs={**conninfo, "autocommit": True},
        min_size=1,
        max_size=1,
        check=check_connection,
        open=True,
    )
    try:
        with psycopg.connect(**conninfo, autocommit=True) as admin:
            with pool.connection() as conn:
                first = conn.info.backend_pid
                _terminate(admin, conn)
            deadline = time.monotonic() + 10
            while True:  # the pool may still be opening the replacement
                with pool.connection(timeout=10) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                    if conn.info.backend_pid != first:
                        break
                assert time.monotonic() < deadline, "the closed connection was handed out again"
    finally:
        pool.close()
