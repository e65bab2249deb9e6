"""The disclosure ledger is append-only like the audit records (the triggers of 0003, which
the purge's maintenance flag opens), and a person's disclosures are found through a GIN index
on the person ids (PostgreSQL; the embedded SQLite default scans)."""
from django.db import migrations

TABLE = "audit_disclosure"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"""
        CREATE INDEX audit_disclosure_person_ids ON {TABLE} USING gin (person_ids jsonb_path_ops);
        CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION scp_audit_append_only();
        CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION scp_audit_append_only();
    """, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"""
        DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE};
        DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE};
        DROP INDEX IF EXISTS audit_disclosure_person_ids;
    """, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0011_alter_auditrecord_event_type_disclosure")]
    operations = [migrations.RunPython(forwards, backwards)]
