"""The application role creates audit partitions within a bounded range only.

`scp_audit_ensure_partitions(first, last)` (migration 0017) runs as the table's owner and the
application role may call it; unbounded, a compromised application role could create thousands
of empty monthly partitions, and every query on the audit table plans over all of them. The
creating function is renamed `scp_audit_create_partitions` (the owner's alone) and the name the
application calls now checks the range first: months from 24 back to 24 ahead (the beat task
asks for 3 ahead; the volume benchmark fills 10 back)."""
from django.db import migrations

FORWARD = """
ALTER FUNCTION scp_audit_ensure_partitions(timestamptz, timestamptz) RENAME TO scp_audit_create_partitions;
REVOKE ALL ON FUNCTION scp_audit_create_partitions(timestamptz, timestamptz) FROM PUBLIC;
DO $$
DECLARE grantee text;
BEGIN
    -- Grants move with a renamed function: only the owner may call the creating one now.
    FOR grantee IN
        SELECT r.rolname FROM pg_proc p, aclexplode(p.proacl) a JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = 'scp_audit_create_partitions(timestamptz, timestamptz)'::regprocedure AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION scp_audit_create_partitions(timestamptz, timestamptz) FROM %I', grantee);
    END LOOP;
END
$$;
CREATE FUNCTION scp_audit_ensure_partitions(first_month timestamptz, last_month timestamptz)
RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    first_start timestamp;
    last_start timestamp;
    this_month timestamp;
BEGIN
    -- By month (UTC), as the partitions go: "this month" is asked for as any instant of it.
    first_start := date_trunc('month', first_month AT TIME ZONE 'UTC');
    last_start := date_trunc('month', last_month AT TIME ZONE 'UTC');
    this_month := date_trunc('month', now() AT TIME ZONE 'UTC');
    IF first_start IS NULL OR last_start IS NULL OR last_start < first_start
            OR first_start < this_month - interval '24 months' OR last_start > this_month + interval '24 months' THEN
        RAISE EXCEPTION 'audit partitions are created for months from 24 back to 24 ahead, first to last (asked: % to %)',
            first_month, last_month USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN scp_audit_create_partitions(first_month, last_month);
END
$$;
REVOKE ALL ON FUNCTION scp_audit_ensure_partitions(timestamptz, timestamptz) FROM PUBLIC;
"""

BACKWARD = """
DROP FUNCTION scp_audit_ensure_partitions(timestamptz, timestamptz);
ALTER FUNCTION scp_audit_create_partitions(timestamptz, timestamptz) RENAME TO scp_audit_ensure_partitions;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0017_partition_audit_records")]
    operations = [migrations.RunPython(forward, backward)]
