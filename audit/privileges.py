"""Least privilege in PostgreSQL (README, "Database roles"), applied by the owner's `migrate`.

The application role gets data rights only: it reads and writes the ordinary tables, only
reads and appends to the audit tables (no UPDATE, DELETE or TRUNCATE, so PostgreSQL itself
refuses to change the trail, before any trigger runs), only reads the migration history, and,
owning nothing, cannot alter or drop a table or a trigger. The purge role reads everything and
may append to and delete from the audit tables, nothing else; the triggers still demand the
purge's maintenance flag. Applied after every migration, so a new table is covered the moment
it exists."""
import logging

from django.conf import settings
from django.db import connections, transaction

log = logging.getLogger(__name__)

# The tables no role but the purge may change once written (the triggers of migrations 0003
# and 0012 hold the same list). Named, not taken from the models, so that the app's ready() can connect
# the receiver before the models load; tests/test_database_roles.py checks the names.
APPEND_ONLY_TABLES = ["audit_auditrecord", "audit_auditseal", "audit_auditcheckpoint", "audit_disclosure"]
ANALYZE_FUNCTION = "scp_analyze(text[])"
# The audit records' monthly partitions (migration 0017): the application creates them ahead
# (beat task), the purge role alone drops one, each through its owner-run function only.
ENSURE_PARTITIONS_FUNCTION = "scp_audit_ensure_partitions(timestamptz, timestamptz)"
DROP_PARTITION_FUNCTION = "scp_audit_drop_partition(text)"
# What ENSURE_PARTITIONS_FUNCTION calls once it has checked the range (migration 0018): the owner's alone.
CREATE_PARTITIONS_FUNCTION = "scp_audit_create_partitions(timestamptz, timestamptz)"


def grant_roles(*, using="default", stdout=None):
    """(Re)apply the application and purge roles' rights; a no-op off PostgreSQL, or when the
    connecting role does not own the schema's tables (a single-role installation)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    # One transaction: running portals never see the rights half revoked.
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'django_migrations'")
        row = cursor.fetchone()
        if not row or not row[0]:
            log.warning("database roles not granted: the connecting role does not own the tables (run migrate as the owner)")
            return []
        cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                       [[settings.SCP_DB_APP_ROLE, settings.SCP_DB_PURGE_ROLE]])
        present = {name for (name,) in cursor.fetchall()}
        granted = []
        for role, statements in ((settings.SCP_DB_APP_ROLE, _application_rights),
                                 (settings.SCP_DB_PURGE_ROLE, _purge_rights)):
            if role not in present:
                message = f"database role {role!r} does not exist: its rights were not granted"
                log.warning(message)
                if stdout is not None:
                    stdout.write(message)
                continue
            for statement in statements(connection.ops.quote_name(role)):
                cursor.execute(statement)
            for statement in _partition_rights(cursor, connection.ops.quote_name(role),
                                               purge=role == settings.SCP_DB_PURGE_ROLE):
                cursor.execute(statement)
            granted.append(role)
    return granted


def _application_rights(role):
    append_only = ", ".join(APPEND_ONLY_TABLES)
    return [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"REVOKE UPDATE, DELETE ON {append_only} FROM {role}",
        f"REVOKE INSERT, UPDATE, DELETE ON django_migrations FROM {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        # ANALYZE after a bulk load (seeding, imports) is the owner's right; the application
        # may ask for it through this function only (scp_core migration 0005).
        f"REVOKE ALL ON FUNCTION {ANALYZE_FUNCTION} FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION {ANALYZE_FUNCTION} TO {role}",
    ]


def _purge_rights(role):
    append_only = ", ".join(APPEND_ONLY_TABLES)
    return [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT INSERT, DELETE ON {append_only} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]


def _partition_rights(cursor, role, *, purge):
    """No right on a partition of an audit table itself: rows are read and appended through the
    parent (whose rights PostgreSQL checks), never in a partition directly, where "ALL TABLES"
    above would have granted UPDATE and DELETE. Partitions created later grant nothing. The
    application may create months ahead, the purge role drop one, each through its function
    (where the migration that makes them has run)."""
    cursor.execute("""
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s) ORDER BY c.relname
    """, [APPEND_ONLY_TABLES])
    statements = [f"REVOKE ALL ON {name} FROM {role}" for (name,) in cursor.fetchall()]
    cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [DROP_PARTITION_FUNCTION])
    if cursor.fetchone()[0]:
        functions = f"{ENSURE_PARTITIONS_FUNCTION}, {DROP_PARTITION_FUNCTION}"
        granted = DROP_PARTITION_FUNCTION if purge else ENSURE_PARTITIONS_FUNCTION
        statements += [f"REVOKE ALL ON FUNCTION {functions} FROM PUBLIC, {role}",
                       f"GRANT EXECUTE ON FUNCTION {granted} TO {role}"]
    cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [CREATE_PARTITIONS_FUNCTION])
    if cursor.fetchone()[0]:
        statements.append(f"REVOKE ALL ON FUNCTION {CREATE_PARTITIONS_FUNCTION} FROM PUBLIC, {role}")
    return statements


def grant_after_migrate(sender, *, using, plan=None, stdout=None, **kwargs):
    """post_migrate receiver: only after `migrate` (which passes its plan), not after the
    test harness's flush."""
    if plan is None:
        return
    grant_roles(using=using, stdout=stdout)
