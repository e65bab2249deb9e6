"""Append-only audit tables, enforced by PostgreSQL: row triggers refuse UPDATE and DELETE,
a statement trigger refuses TRUNCATE (which row triggers do not see). Only a transaction that
sets `scp.audit_maintenance = 'on'` may delete (the retention purge, which leaves a signed
anchor and audits itself; and the test harness's flush between tests)."""
from django.db import migrations

TABLES = ["audit_auditrecord", "audit_auditseal", "audit_auditcheckpoint"]

FUNCTION = """
CREATE OR REPLACE FUNCTION scp_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') AND current_setting('scp.audit_maintenance', true) = 'on' THEN
        RETURN OLD;  -- NULL for the statement-level TRUNCATE trigger, where it is ignored
    END IF;
    RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # the embedded SQLite default has no triggers; the hash chain still detects changes
    schema_editor.execute(FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION scp_audit_append_only();
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION scp_audit_append_only();
        """)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}; DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};"
        )
    schema_editor.execute("DROP FUNCTION IF EXISTS scp_audit_append_only();")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_alter_auditrecord_event_type_auditcheckpoint_and_more")]
    operations = [migrations.RunPython(forwards, backwards)]
