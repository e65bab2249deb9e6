"""A page's ledger row (100 person ids, about 4 kB of JSON) stays in the table's own page,
uncompressed: without this PostgreSQL compresses and moves it out of line (TOAST) on every
insert, which cost the governed request path about 70 µs (README, "Benchmarks")."""
from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE audit_disclosure SET (toast_tuple_target = 8160)", params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE audit_disclosure RESET (toast_tuple_target)", params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0012_disclosure_ledger_index_and_triggers")]
    operations = [migrations.RunPython(forwards, backwards)]
