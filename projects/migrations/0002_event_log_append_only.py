"""Makes the event log append-only in the database itself, on SQLite and on PostgreSQL.

The SQL lives in `projects.append_only`, shared with the test suite's `flush`.
"""

from django.db import migrations

from projects.append_only import statements


def _run(*, enabled):
    def apply(apps, schema_editor):
        for statement in statements(schema_editor.connection.vendor, enabled=enabled):
            schema_editor.execute(statement, params=None)

    return apply


class Migration(migrations.Migration):
    dependencies = [("projects", "0001_initial")]

    operations = [migrations.RunPython(_run(enabled=True), _run(enabled=False))]
