"""Batch import rate: the governed import (the same code the Celery job runs: contract
validation, tenant and consent per row, chunked checkpoints) against PostgreSQL COPY of the
same file into a bare table, against the database alone writing the same rows into the
records table (its indexes, natural key and foreign keys: the floor any import of them pays),
and against django-import-export loading the same rows."""
import contextlib
import csv
import itertools
import json
import os
import time
import uuid

import psycopg

from django.core.files import File
from django.db import connection, transaction
from import_export import resources, widgets
from import_export.fields import Field
from tablib import Dataset

from exchange import batch
from scp_core.models import Person, VerticalRecord

COPY_TABLE = "bench_copy_import"


def write_file(path, tenant, vertical, rows):
    """`rows` immunization rows of consenting persons of the tenant (the contract's columns)."""
    persons = [str(p) for p in Person.objects.in_tenant(tenant).with_consent_in_effect(vertical)
               .values_list("pk", flat=True)[:1000]]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["person_id", "vaccine", "dose", "date"])
        for i in range(rows):
            writer.writerow([persons[i % len(persons)], "OPV", 1 + i % 4, "2026-05-17"])
    return path


def governed(path, integration, vertical, rows):
    started = time.perf_counter()
    with path.open("rb") as handle:
        job = batch.import_store(integration=integration, vertical=vertical, record_type="immunization",
                                 upload=File(handle, name="rows.csv"))
    status = batch.run_import(job.pk)
    elapsed = time.perf_counter() - started
    job.refresh_from_db()
    if status != "completed" or job.rows_done != rows or job.rows_failed:
        raise RuntimeError(f"governed import: {status}, {job.rows_done} done, {job.rows_failed} failed of {rows}")
    return {"rows": rows, "seconds": elapsed, "rate": rows / elapsed}


@contextlib.contextmanager
def _baseline_cursor():
    """A cursor that may create the bare table: the owner's (DATABASE_OWNER_URL), since the
    application role the portal runs as creates no tables (README, "Database roles")."""
    url = os.environ.get("DATABASE_OWNER_URL")
    if not url:  # a single-role database: the portal's own connection owns the schema
        with connection.cursor() as cursor:
            yield cursor.cursor
        return
    with psycopg.connect(url, autocommit=True) as owner, owner.cursor() as cursor:
        yield cursor


def copy(path, rows):
    with _baseline_cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
        cursor.execute(f"CREATE TABLE {COPY_TABLE} (person_id uuid, vaccine text, dose integer, date date)")
        try:
            started = time.perf_counter()
            with path.open("rb") as handle, cursor.copy(f"COPY {COPY_TABLE} FROM STDIN (FORMAT csv, HEADER true)") as copy:
                while block := handle.read(1 << 16):
                    copy.write(block)
            elapsed = time.perf_counter() - started
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
    return {"rows": rows, "seconds": elapsed, "rate": rows / elapsed}


def records_floor(path, integration, vertical, rows):
    """The same rows written into the records table by SQL alone: COPY into a temporary table,
    one INSERT ... SELECT building each row's data in the database, the deferred foreign keys
    checked as at a commit; no Python per row. Rolled back, so it leaves nothing behind."""
    table = VerticalRecord._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE bench_floor_rows (person_id uuid, vaccine text, dose integer, date text) "
                       "ON COMMIT DROP")
        started = time.perf_counter()
        with path.open("rb") as handle, cursor.cursor.copy("COPY bench_floor_rows FROM STDIN (FORMAT csv, HEADER true)") as copy:
            while block := handle.read(1 << 16):
                copy.write(block)
        cursor.execute(
            f"INSERT INTO {table} (id, person_id, vertical_id, record_type, data, source_integration_id, import_key, "
            "created_at, updated_at) SELECT gen_random_uuid(), person_id, %s, 'immunization', "
            "jsonb_build_object('vaccine', vaccine, 'dose', dose, 'date', date), %s, %s || row_number() OVER (), now(), now() "
            "FROM bench_floor_rows", [vertical.pk, integration.pk, f"floor-{uuid.uuid4().hex}:"])
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the foreign keys, checked now as at a commit
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return {"rows": rows, "seconds": elapsed, "rate": rows / elapsed}


class ImmunizationResource(resources.ModelResource):
    """django-import-export as its documentation sets it up: a ModelResource, rows matched on
    an id column (here the natural key), one instance saved per row."""

    person = Field(attribute="person", column_name="person_id", widget=widgets.ForeignKeyWidget(Person, "pk"))

    class Meta:
        model = VerticalRecord
        fields = ("person", "vertical", "record_type", "data", "import_key")
        import_id_fields = ("import_key",)


def import_export(path, vertical, rows):
    """The first `rows` rows of the same file, shaped into the model's columns in the timing."""
    started = time.perf_counter()
    with path.open(newline="") as handle:
        text = "".join(itertools.islice(handle, rows + 1))
    dataset = Dataset().load(text, format="csv")
    run, line = uuid.uuid4().hex[:8], itertools.count(1)
    dataset.append_col([vertical.pk] * len(dataset), header="vertical")
    dataset.append_col(["immunization"] * len(dataset), header="record_type")
    dataset.append_col([f"iex-{run}:{next(line)}" for _ in range(len(dataset))], header="import_key")
    dataset.append_col([json.dumps({"vaccine": r["vaccine"], "dose": int(r["dose"]), "date": r["date"]})
                        for r in dataset.dict], header="data")
    result = ImmunizationResource().import_data(dataset, dry_run=False, use_transactions=True, raise_errors=True)
    elapsed = time.perf_counter() - started
    if result.has_errors() or result.totals["new"] != rows:
        raise RuntimeError(f"django-import-export: {dict(result.totals)}")
    return {"rows": rows, "seconds": elapsed, "rate": rows / elapsed}
