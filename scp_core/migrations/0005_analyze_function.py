"""`scp_analyze(tables)`: ANALYZE after a bulk load, for the application role. PostgreSQL lets
only a table's owner analyze it (before version 17's MAINTAIN privilege), and the application
role owns nothing (audit/privileges.py); without fresh statistics the planner takes a freshly
loaded table for empty and sorts all of it for a page (README, "Benchmarks"). The function runs
as its owner, for tables of the public schema only; EXECUTE is granted to the application role
by the owner's migrate."""
from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION scp_analyze(tables text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY tables LOOP
        IF EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = name) THEN
            EXECUTE format('ANALYZE public.%I', name);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION scp_analyze(text[]) FROM PUBLIC;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS scp_analyze(text[])", params=None)


class Migration(migrations.Migration):
    dependencies = [("scp_core", "0004_historicaltenant")]
    operations = [migrations.RunPython(forwards, backwards)]
