"""Test-only `flush`: transactional tests empty every table between tests, the event log too.

The event log refuses DELETE and TRUNCATE by trigger (migration projects 0002), so this drops
those triggers around Django's own flush and puts them back at once. It exists only in the test
settings; production has no way around the triggers short of a migration.
"""

import importlib

from django.core.management.commands.flush import Command as FlushCommand
from django.db import connections

_triggers = importlib.import_module("projects.migrations.0002_event_log_append_only")


def _execute(connection, statements) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


class Command(FlushCommand):
    def handle(self, **options):
        connection = connections[options["database"]]
        vendor = connection.vendor
        down = {"sqlite": _triggers.SQLITE_DOWN, "postgresql": _triggers.POSTGRES_DOWN}[vendor]
        up = {"sqlite": _triggers.SQLITE_UP, "postgresql": _triggers.POSTGRES_UP}[vendor]
        _execute(connection, down)
        try:
            return super().handle(**options)
        finally:
            _execute(connection, up)
