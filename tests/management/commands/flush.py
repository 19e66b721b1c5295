"""Test-only `flush`: transactional tests empty every table between tests, the event log too.

The event log refuses DELETE and TRUNCATE by trigger (`projects.append_only`), so this drops
those triggers around Django's own flush and puts them back at once. It exists only in the test
settings; production has no way around the triggers short of a migration.
"""

from django.core.management.commands.flush import Command as FlushCommand
from django.db import connections

from projects.append_only import statements


def _execute(connection, sql: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in sql:
            cursor.execute(statement)


class Command(FlushCommand):
    def handle(self, **options):
        connection = connections[options["database"]]
        _execute(connection, statements(connection.vendor, enabled=False))
        try:
            return super().handle(**options)
        finally:
            _execute(connection, statements(connection.vendor, enabled=True))
