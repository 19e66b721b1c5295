"""Django's PostgreSQL backend, whose pooled connections are checked without a round trip.

psycopg_pool's own check (`ConnectionPool.check_connection`, which Django's `CONN_HEALTH_CHECKS`
picks) sends an empty query every time a connection is taken from the pool: a round trip on
every step of every request, a third of an idle agent poll's statements (BENCHMARKS.md,
finding 19). A connection the server has closed (a restart, `pg_terminate_backend`, an idle
timeout) has something to read on its socket: the server's last message, or the end of the
stream. A healthy idle connection has nothing, since none of the pool's connections listens
for notifications. So the socket is asked, without waiting, whether it has anything to read,
and only then does the empty query decide; a connection that fails it is replaced by the pool.

Django hands psycopg_pool its own check or none (`CONN_HEALTH_CHECKS`), so this backend
(`ENGINE: core.postgresql`, which the settings pick for a `postgres://` DATABASE_URL) puts this
check in its place on the pool Django made.

What this does not see is a connection whose peer vanished without a word (a cable pulled, no
FIN): the request that takes it fails and Django closes it, as it would have after the check.
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def check_connection(conn: psycopg.Connection) -> None:
    """Returns quietly if `conn` may be handed out; raises `psycopg.OperationalError` if not."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()  # not select(): a process holding many polls has descriptors past 1024
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)  # something arrived: the empty query decides


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        if pool is not None and pool._check is not check_connection:
            pool._check = check_connection  # psycopg_pool takes it as `check=` only
        return pool
