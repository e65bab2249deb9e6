"""The audit records, range-partitioned by month of `occurred_at` (issue #12 item 6), so that
retention drops whole months instead of deleting rows one by one, and an append touches one
month's indexes only.

PostgreSQL demands the partition key in every unique constraint of a partitioned table: the
primary key becomes (id, occurred_at) (the ids still come from one sequence, so stay unique;
Django keeps addressing a record by `id`), and the disclosure ledger's foreign key becomes
(record_id, disclosed_at) → (id, occurred_at): a disclosure's time is its record's by
construction (audit.ledger writes both from one value; audit.chain checks it), so the ledger
keeps real referential integrity. The seals keep their plain `record_id` without a constraint,
as before: the chain itself proves which record each seal covers.

Partitions are created ahead (`scp_audit_ensure_partitions`, by the Celery beat task and
`manage.py audit_partitions`) and a DEFAULT partition catches any month not created yet, so an
append never fails. Nobody but the owner can drop, detach or truncate a partition (the
application and purge roles own nothing); the purge role may drop one only through
`scp_audit_drop_partition`, which refuses unless the purge's maintenance flag is on and every
record in the month is sealed at or below its chain's signed retention anchor (audit.retention).

The table is rebuilt (a partitioned table cannot be made from a plain one in place): created
beside the old one with its columns, rows copied into the monthly partitions they fall in, the
old table dropped, then its indexes, constraints, triggers and key sequence recreated under the
old names, in one transaction."""
from django.db import migrations, models

TABLE = "audit_auditrecord"
DEFAULT_PARTITION = f"{TABLE}_default"
MONTHS_AHEAD = 3

# Monthly partitions named audit_auditrecord_yYYYYmMM, bounds at midnight UTC of the 1st.
FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION scp_audit_ensure_partitions(first_month timestamptz, last_month timestamptz)
RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    month timestamptz := date_trunc('month', first_month AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    upper timestamptz;
    name text;
    created text[] := '{{}}';
BEGIN
    WHILE month <= last_month LOOP
        upper := ((month AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        name := '{TABLE}_' || to_char(month AT TIME ZONE 'UTC', '"y"YYYY"m"MM');
        IF to_regclass('public.' || name) IS NULL THEN
            -- Rows of the month already in the DEFAULT partition would make the new partition
            -- fail; leave that month to the DEFAULT partition (retention deletes its rows one by one).
            IF EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} WHERE occurred_at >= month AND occurred_at < upper) THEN
                RAISE WARNING 'audit partition % not created: the default partition holds rows of that month', name;
            ELSE
                EXECUTE format('CREATE TABLE public.%I PARTITION OF public.{TABLE} FOR VALUES FROM (%L) TO (%L)',
                               name, month, upper);
                -- Row triggers are cloned to every partition; a statement's TRUNCATE trigger is not.
                EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON public.%I FOR EACH STATEMENT '
                               'EXECUTE FUNCTION scp_audit_append_only()', name || '_no_truncate', name);
                created := created || name;
            END IF;
        END IF;
        month := upper;
    END LOOP;
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION scp_audit_ensure_partitions(timestamptz, timestamptz) FROM PUBLIC;

-- Drop a month of audit records: only in the purge's maintenance transaction, and only when
-- every record in it is sealed at or below its chain's newest signed anchor (so the chains
-- verify from their anchors without it). Returns {{chain: records}} of what was dropped, or
-- NULL (nothing done) when some record in it is not yet purgeable.
CREATE OR REPLACE FUNCTION scp_audit_drop_partition(name text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    counts jsonb;
    blocked boolean;
BEGIN
    IF current_setting('scp.audit_maintenance', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'audit partition % may be dropped only by the retention purge', name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF name = '{DEFAULT_PARTITION}' OR NOT EXISTS (
        SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.{TABLE}'::regclass AND c.relname = name
    ) THEN
        RAISE EXCEPTION '% is not a monthly partition of {TABLE}', name USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- No append can slip into the month between the check and the drop.
    EXECUTE format('LOCK TABLE public.%I IN SHARE MODE', name);
    -- The first record not yet purgeable (unsealed, or above its chain's anchor) ends the check.
    EXECUTE format($q$
        WITH anchor AS (SELECT chain, max(seq) AS seq FROM audit_auditcheckpoint WHERE is_anchor GROUP BY chain)
        SELECT EXISTS (SELECT 1 FROM public.%I r LEFT JOIN audit_auditseal s ON s.record_id = r.id
                       LEFT JOIN anchor a ON a.chain = s.chain WHERE a.seq IS NULL OR s.seq > a.seq)
    $q$, name) INTO blocked;
    IF blocked THEN
        RETURN NULL;
    END IF;
    EXECUTE format($q$
        SELECT coalesce(jsonb_object_agg(chain, n), '{{}}') FROM (
            SELECT s.chain, count(*) AS n FROM public.%I r JOIN audit_auditseal s ON s.record_id = r.id GROUP BY s.chain
        ) AS per_chain
    $q$, name) INTO counts;
    -- The ledger's retention is the log's: the month's disclosures go first (they reference it).
    EXECUTE format('DELETE FROM audit_disclosure d USING public.%I r WHERE d.record_id = r.id '
                   'AND d.disclosed_at = r.occurred_at', name);
    EXECUTE format('ALTER TABLE public.{TABLE} DETACH PARTITION public.%I', name);
    EXECUTE format('DROP TABLE public.%I', name);
    RETURN counts;
END
$$;
REVOKE ALL ON FUNCTION scp_audit_drop_partition(text) FROM PUBLIC;
"""


def _months(cursor):
    """The first months to create: from the oldest record's month (if any) to MONTHS_AHEAD on."""
    cursor.execute(f"SELECT coalesce(min(occurred_at), now()) FROM {TABLE}")
    return cursor.fetchone()[0]


def _definitions(cursor, constraint_types):
    """[(name, definition)] of the table's indexes (but its primary key) and of its constraints
    of `constraint_types`, to be made again under the same names on the rebuilt table."""
    cursor.execute("""
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename = %s AND indexname <> %s ORDER BY indexname
    """, [TABLE, f"{TABLE}_pkey"])
    indexes = cursor.fetchall()
    cursor.execute("""
        SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = %s::regclass AND contype::text = ANY(%s) ORDER BY conname
    """, [TABLE, list(constraint_types)])
    return indexes, cursor.fetchall()


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # the embedded SQLite default stays one table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        indexes, constraints = _definitions(cursor, ("f", "c"))
        cursor.execute("""
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE confrelid = %s::regclass AND contype = 'f'
        """, [TABLE])
        referencing = cursor.fetchall()
        unexpected = [r for r in referencing if r[0] != "audit_disclosure"]
        if unexpected:  # a new foreign key to the audit records needs the composite key too
            raise RuntimeError(f"foreign keys to {TABLE} this migration does not know: {unexpected}")
        first = _months(cursor)
    schema_editor.execute(f"""
        CREATE TABLE {TABLE}_partitioned (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
            PARTITION BY RANGE (occurred_at);
        ALTER TABLE {TABLE}_partitioned ADD CONSTRAINT {TABLE}_partitioned_pkey PRIMARY KEY (id, occurred_at);
        CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {TABLE}_partitioned DEFAULT;
    """, params=None)
    # The monthly partitions the existing rows fall in, and the next months ahead (the function
    # works on the name audit_auditrecord, so the new table is created under a second name first
    # and its partitions plainly here).
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("""
            SELECT to_char(m, 'YYYY-MM-DD"T00:00:00Z"'), to_char(m + interval '1 month', 'YYYY-MM-DD"T00:00:00Z"'),
                   'audit_auditrecord_' || to_char(m, '"y"YYYY"m"MM')
            FROM generate_series(date_trunc('month', %s::timestamptz AT TIME ZONE 'UTC'),
                                 date_trunc('month', now() AT TIME ZONE 'UTC') + %s * interval '1 month',
                                 interval '1 month') AS m
        """, [first, MONTHS_AHEAD])
        months = cursor.fetchall()
    for lower, upper, name in months:
        schema_editor.execute(f"CREATE TABLE {name} PARTITION OF {TABLE}_partitioned "
                              f"FOR VALUES FROM ('{lower}') TO ('{upper}')", params=None)
    schema_editor.execute(f"INSERT INTO {TABLE}_partitioned SELECT * FROM {TABLE}", params=None)
    with schema_editor.connection.cursor() as cursor:  # the ids go on where the old table's left off
        cursor.execute(f"SELECT pg_get_serial_sequence('{TABLE}', 'id')")
        cursor.execute(f"SELECT last_value, is_called FROM {cursor.fetchone()[0]}")
        last_value, is_called = cursor.fetchone()
    for table, name, _definition in referencing:
        schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}", params=None)
    schema_editor.execute(f"""
        DROP TABLE {TABLE};
        ALTER TABLE {TABLE}_partitioned RENAME TO {TABLE};
        ALTER TABLE {TABLE} RENAME CONSTRAINT {TABLE}_partitioned_pkey TO {TABLE}_pkey;
        CREATE SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id;
        ALTER TABLE {TABLE} ALTER COLUMN id SET DEFAULT nextval('{TABLE}_id_seq');
    """, params=None)
    schema_editor.execute(f"SELECT setval('{TABLE}_id_seq', %s, %s)", params=[last_value, is_called])
    for _name, definition in indexes:
        schema_editor.execute(definition, params=None)  # on the parent: created on every partition
    for name, definition in constraints:
        if not definition.startswith("CHECK"):  # checks came along with LIKE
            schema_editor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}", params=None)
    schema_editor.execute(f"""
        CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION scp_audit_append_only();
        CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION scp_audit_append_only();
        ALTER TABLE audit_disclosure ADD CONSTRAINT audit_disclosure_record_fk FOREIGN KEY (record_id, disclosed_at)
            REFERENCES {TABLE} (id, occurred_at) DEFERRABLE INITIALLY DEFERRED;
    """, params=None)
    for name in [DEFAULT_PARTITION] + [name for _lower, _upper, name in months]:
        schema_editor.execute(f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
                              f"FOR EACH STATEMENT EXECUTE FUNCTION scp_audit_append_only()", params=None)
    schema_editor.execute(FUNCTIONS, params=None)


def backwards(apps, schema_editor):
    """Back to one plain table, rows and names kept."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        indexes, constraints = _definitions(cursor, ("f",))
        cursor.execute("SELECT coalesce(max(id), 0) FROM " + TABLE)
        last_id = cursor.fetchone()[0]
    schema_editor.execute(f"""
        DROP FUNCTION IF EXISTS scp_audit_drop_partition(text);
        DROP FUNCTION IF EXISTS scp_audit_ensure_partitions(timestamptz, timestamptz);
        ALTER TABLE audit_disclosure DROP CONSTRAINT audit_disclosure_record_fk;
        CREATE TABLE {TABLE}_plain (LIKE {TABLE} INCLUDING CONSTRAINTS);
        INSERT INTO {TABLE}_plain SELECT * FROM {TABLE};
        DROP TABLE {TABLE};
        ALTER TABLE {TABLE}_plain RENAME TO {TABLE};
        ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id);
        ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (START WITH {last_id + 1});
    """, params=None)
    for _name, definition in indexes:
        schema_editor.execute(definition, params=None)
    for name, definition in constraints:
        schema_editor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}", params=None)
    schema_editor.execute(f"""
        CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION scp_audit_append_only();
        CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION scp_audit_append_only();
        ALTER TABLE audit_disclosure ADD CONSTRAINT audit_disclosure_record_id_fk_audit_auditrecord_id
            FOREIGN KEY (record_id) REFERENCES {TABLE} (id) DEFERRABLE INITIALLY DEFERRED;
    """, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0016_agreements_accepted_event")]
    operations = [
        migrations.RunPython(forwards, backwards),
        # The ledger's key to its record is the composite one created above; Django keeps the
        # relation for queries without a constraint of its own.
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name="disclosure", name="record",
                field=models.ForeignKey(db_constraint=False, on_delete=models.deletion.PROTECT,
                                        related_name="disclosures", to="audit.auditrecord"),
            ),
        ]),
    ]
