"""Issue #15 item 9: least privilege in PostgreSQL, proved by connecting as each role. The
application role (what the portal and the workers use) cannot change, remove or empty audit
rows even with the purge's maintenance flag, nor touch the triggers; the purge role may delete
audit rows and nothing else; the owner migrates, and even it meets the append-only triggers."""
import os

import dj_database_url
import psycopg
import pytest
from django.db import connection, connections

from audit.models import AuditCheckpoint, AuditEvent, AuditRecord, AuditSeal, Disclosure
from audit.privileges import APPEND_ONLY_TABLES
from audit.services import audit_record

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "purge"])

Refused = (psycopg.errors.InsufficientPrivilege,)


def _connect(role):
    """The test database as `role`: the application role is what the tests run as; the owner
    and the purge role come from their URLs."""
    if role == "application":
        user, password = connection.settings_dict["USER"], connection.settings_dict["PASSWORD"]
    elif role == "purge":
        user, password = connections["purge"].settings_dict["USER"], connections["purge"].settings_dict["PASSWORD"]
    else:
        owner = dj_database_url.parse(os.environ["DATABASE_OWNER_URL"])
        user, password = owner["USER"], owner["PASSWORD"]
    params = connection.settings_dict
    return psycopg.connect(host=params["HOST"], port=params["PORT"], dbname=params["NAME"],
                           user=user, password=password, autocommit=True)


def _a_record(demo):
    audit_record(event_type=AuditEvent.API_REQUEST, tenant=demo["ke"], actor="client-0", status_code=200)
    return AuditRecord.objects.latest("id")


def _tables(conn):
    return [name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


def test_the_append_only_tables_are_the_audit_models_tables():
    assert APPEND_ONLY_TABLES == [model._meta.db_table for model in (AuditRecord, AuditSeal, AuditCheckpoint, Disclosure)]


def test_the_roles_are_distinct_and_the_tests_run_as_the_application_role():
    with _connect("application") as app, _connect("owner") as owner, _connect("purge") as purge:
        names = {conn.execute("SELECT current_user").fetchone()[0] for conn in (app, owner, purge)}
        assert len(names) == 3
        assert owner.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_auditrecord'").fetchone()[0] \
            == owner.execute("SELECT current_user").fetchone()[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == connection.settings_dict["USER"] != dj_database_url.parse(
            os.environ["DATABASE_OWNER_URL"])["USER"]


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_the_application_role_cannot_update_delete_truncate_or_untrigger_an_audit_table(table, demo):
    record = _a_record(demo)
    with _connect("application") as app:
        # The purge's maintenance flag opens the triggers, not the grants.
        app.execute("SET scp.audit_maintenance = 'on'")
        for sql in (
            f"UPDATE {table} SET id = id",
            f"DELETE FROM {table}",
            f"TRUNCATE {table} CASCADE",
            f"ALTER TABLE {table} DISABLE TRIGGER ALL",
            f"DROP TRIGGER {table}_append_only ON {table}",
            f"DROP TRIGGER {table}_no_truncate ON {table}",
            f"DROP TABLE {table}",
        ):
            with pytest.raises(Refused):
                app.execute(sql)
        # What it may do: read and append.
        assert app.execute(f"SELECT count(*) FROM {table}").fetchone()[0] >= 0
    assert AuditRecord.objects.filter(pk=record.pk, actor="client-0").exists()


def test_the_application_role_has_data_rights_only_on_every_table(demo):
    with _connect("application") as app:
        for table in _tables(app):
            assert not app.execute("SELECT has_table_privilege(current_user, %s, 'TRUNCATE')", [table]).fetchone()[0], table
            assert not app.execute("SELECT has_table_privilege(current_user, %s, 'TRIGGER')", [table]).fetchone()[0], table
            assert not app.execute("SELECT has_table_privilege(current_user, %s, 'REFERENCES')", [table]).fetchone()[0], table
        for sql in (
            "CREATE TABLE mine (id int)",
            "INSERT INTO django_migrations (app, name, applied) VALUES ('x', 'y', now())",
            "DELETE FROM django_migrations",
            "ALTER TABLE scp_core_person ADD COLUMN extra int",
            "CREATE OR REPLACE FUNCTION scp_audit_append_only() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql",
        ):
            with pytest.raises(Refused):
                app.execute(sql)
        # ANALYZE after a bulk load is the owner's right, asked for through its function.
        app.execute("SELECT scp_analyze(ARRAY['scp_core_person'])")


def test_the_owners_changes_to_audit_rows_still_meet_the_append_only_triggers(demo):
    record = _a_record(demo)
    with _connect("owner") as owner:
        for sql in (f"UPDATE audit_auditrecord SET actor = 'someone else' WHERE id = {record.pk}",
                    f"DELETE FROM audit_auditrecord WHERE id = {record.pk}",
                    "TRUNCATE audit_auditrecord CASCADE"):
            with pytest.raises(Refused, match="append-only"):
                owner.execute(sql)
    assert AuditRecord.objects.filter(pk=record.pk, actor="client-0").exists()


def test_the_purge_role_deletes_audit_rows_in_a_maintenance_transaction_and_changes_nothing_else(demo):
    record = _a_record(demo)
    with _connect("purge") as purge:
        for sql in (f"UPDATE audit_auditrecord SET actor = 'someone else' WHERE id = {record.pk}",
                    "TRUNCATE audit_auditrecord CASCADE",
                    "DROP TRIGGER audit_auditrecord_append_only ON audit_auditrecord",
                    "DELETE FROM scp_core_person",
                    "UPDATE scp_core_consent SET status = 'granted'",
                    "INSERT INTO scp_core_tenant (code, name) VALUES ('zz', 'Z')"):
            with pytest.raises(Refused):
                purge.execute(sql)
        # Without the flag the trigger refuses even the purge role.
        with pytest.raises(Refused, match="append-only"):
            purge.execute(f"DELETE FROM audit_auditrecord WHERE id = {record.pk}")
        with purge.transaction():
            purge.execute("SET LOCAL scp.audit_maintenance = 'on'")
            purge.execute(f"DELETE FROM audit_auditrecord WHERE id = {record.pk}")
    assert not AuditRecord.objects.filter(pk=record.pk).exists()
