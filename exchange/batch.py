"""Batch imports (push, file-based): upload, then a Celery job validates every row against
the data contract and the policy (tenant, vertical, consent) and writes in chunks. Each chunk
and its checkpoint commit together, and rows carry their natural key, so a job resumed after
any crash continues where it stopped, never writing a row twice nor losing one."""
import csv
import datetime
import json
import logging
import operator
import re
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from audit.services import AuditEvent, AuditResult, audit_record
from scp_core.errors import ApiError
from scp_core.models import VerticalRecord
from scp_core.statistics import analyze

from .metrics import count_batch_rows
from . import jobs
from .events import emit
from .models import EventType, ImportJob, ImportRowError, ImportStatus
from .scope import DataScope
from .validation import validator_for

logger = logging.getLogger(__name__)
CHUNK_ROWS = 2000


def _import_dir():
    path = Path(settings.SCP_IMPORT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _columns_of(schema):
    return list(schema.get("properties", {}))


def import_create(*, integration, vertical, record_type, upload):
    """Store an uploaded file (streamed to disk, size-limited) and queue its job."""
    job = import_store(integration=integration, vertical=vertical, record_type=record_type, upload=upload)
    from .tasks import enqueue_after_commit, run_import_task

    enqueue_after_commit(run_import_task, job.pk)
    return job


def import_store(*, integration, vertical, record_type, upload):
    """Check and store the file and create its job, without starting it."""
    schema = integration.writable_record_types(vertical.code).get(record_type)
    if schema is None:
        raise ApiError(422, "contract_violation", f"Record type '{record_type}' is not in the data contract for '{vertical.code}'.")
    name = upload.name.lower()
    file_format = "ndjson" if name.endswith((".ndjson", ".jsonl")) else "csv" if name.endswith(".csv") else None
    if file_format is None:
        raise ApiError(415, "unsupported_media_type", "Upload a .csv (with a header row) or an .ndjson file.")
    if upload.size > settings.SCP_MAX_IMPORT_BYTES:
        raise ApiError(413, "payload_too_large", f"Import files may be at most {settings.SCP_MAX_IMPORT_BYTES} bytes.")
    job = ImportJob(integration=integration, vertical=vertical, record_type=record_type, file_format=file_format)
    path = _import_dir() / f"{job.id}.{file_format}"
    rows, first_line = 0, None
    with path.open("wb") as out:
        for chunk in upload.chunks():
            if first_line is None:
                first_line = chunk.split(b"\n", 1)[0]
            rows += chunk.count(b"\n")
            out.write(chunk)
        if upload.size and not chunk.endswith(b"\n"):
            rows += 1
    if file_format == "csv":
        header = next(csv.reader([first_line.decode("utf-8-sig", "replace")]), [])
        expected = ["person_id", *_columns_of(schema)]
        if sorted(header) != sorted(expected):
            path.unlink(missing_ok=True)
            # External schema change: refuse the whole file before anything is written (§10).
            raise ApiError(422, "contract_violation", "The CSV header does not match the data contract.",
                           errors=[{"field": "header", "message": f"expected columns {', '.join(expected)}"}])
        rows -= 1
    job.file_path, job.file_size, job.rows_total = str(path), upload.size, max(rows, 0)
    job.save()
    return job


def _rows(job, schema):
    """(line number, person_id, data) or (line number, None, errors) from the checkpoint on."""
    types = {name: spec.get("type") for name, spec in schema.get("properties", {}).items()}
    with open(job.file_path, encoding="utf-8-sig", newline="") as handle:
        if job.file_format == "csv":
            reader = csv.reader(handle)
            header = next(reader)
            width, person_at = len(header), header.index("person_id")
            names = [name for name in header if name != "person_id"]
            cells = _cells_getter([i for i, name in enumerate(header) if name != "person_id"])
            # Only the cells whose contract type is not a string need a cast.
            casts = [(name, types[name]) for name in names if types.get(name) in ("integer", "number", "boolean")]
            for line, values in enumerate(reader, start=1):
                if line < job.next_line:
                    continue
                if len(values) != width:
                    yield line, None, [{"field": None, "message": f"expected {width} columns"}]
                    continue
                data = dict(zip(names, cells(values)))
                for name, json_type in casts:
                    data[name] = cast_cell(data[name], json_type)
                yield line, values[person_at], data
        else:
            for line, text in enumerate(handle, start=1):
                if line < job.next_line or not text.strip():
                    continue
                try:
                    row = json.loads(text)
                    if not isinstance(row, dict):
                        raise ValueError
                except ValueError:
                    yield line, None, [{"field": None, "message": "not a JSON object"}]
                    continue
                yield line, row.pop("person_id", None), row


def _cells_getter(indices):
    """values -> the tuple of the cells at `indices` (operator.itemgetter, in C, for two or more)."""
    if len(indices) > 1:
        return operator.itemgetter(*indices)
    return lambda values: tuple(values[i] for i in indices)


def cast_cell(value, json_type):
    """CSV cells are text: give them the contract's types (invalid ones fail validation)."""
    try:
        if json_type == "integer":
            return int(value)
        if json_type == "number":
            return float(value)
        if json_type == "boolean":
            return {"true": True, "false": False}.get(value.lower(), value)
    except (ValueError, TypeError, AttributeError):  # a short row's missing cell is None
        pass
    return value


def run_import(job_id):
    """Process a job from its checkpoint to its end; returns its status afterwards. An error
    sends it back to the queue once, and ends it `failed` when it recurs (exchange.jobs)."""
    if not jobs.claim(ImportJob, job_id):
        return "not claimed"
    try:
        return _run_import(job_id)
    except Exception as exc:  # noqa: BLE001 -- any error: recorded on the job, never a silent spin
        logger.exception("import %s failed", job_id)
        return jobs.fail_or_retry(ImportJob, job_id, f"{exc.__class__.__name__}: {exc}")


def _run_import(job_id):
    job = ImportJob.objects.select_related("integration__tenant", "vertical").get(pk=job_id)
    schema = job.integration.writable_record_types(job.vertical.code).get(job.record_type)
    denied = _current_scope(job).refusal(write=True)
    if denied is not None:
        return _stop(job, denied)
    validator = validator_for(schema)
    batch = []
    for item in _rows(job, schema):
        batch.append(item)
        if len(batch) == CHUNK_ROWS:
            outcome = _write_chunk(job, batch, validator)
            if outcome is not True:
                return outcome
            batch = []
    if batch:
        outcome = _write_chunk(job, batch, validator)
        if outcome is not True:
            return outcome
    with transaction.atomic():
        ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.COMPLETED, finished_at=timezone.now())
        done = ImportJob.objects.get(pk=job.pk)
        audit_record(
            event_type=AuditEvent.BATCH_IMPORT, tenant=job.integration.tenant, integration=job.integration,
            actor=job.integration.auth_client_id, client_id=job.integration.auth_client_id, verticals=[job.vertical.code],
            details={"job": str(job.pk), "rows": done.rows_done, "failed": done.rows_failed, "record_type": job.record_type},
        )
    if done.rows_done >= settings.SCP_ANALYZE_AFTER_ROWS:
        # A bulk arrival changes the table's shape: fresh statistics now, not when autovacuum
        # gets to it, so the next request is planned as well as the tenth (issue #12).
        analyze(VerticalRecord)
    return ImportStatus.COMPLETED


def _current_scope(job):
    """The scope built anew from the integration as stored now (at the start and per chunk):
    a suspension or the end of the active window stops the job within one chunk."""
    job.integration.refresh_from_db(fields=["status", "active_from", "active_until", "agreement_until"])
    return DataScope.of(job.integration, job.vertical)


def _stop(job, denied):
    """The policy no longer lets the integration write: the job fails with the denial's code
    (what was written before stays, each chunk having been allowed when it was written) and
    can be resumed once the integration serves again."""
    reason = f"{denied.code}: {denied.detail}"
    with transaction.atomic():
        ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.FAILED, finished_at=timezone.now(), error=reason)
        audit_record(
            event_type=AuditEvent.BATCH_IMPORT, result=AuditResult.DENIED, tenant=job.integration.tenant,
            integration=job.integration, actor=job.integration.auth_client_id, client_id=job.integration.auth_client_id,
            verticals=[job.vertical.code], error_code=denied.code, details={"job": str(job.pk), "stopped": reason},
        )
    return ImportStatus.FAILED


_UNREADABLE = object()  # the person key of a line that could not be read as a row
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def uuid_or_none(value):
    """`value` as a canonical UUID string, or None when it is no UUID."""
    if isinstance(value, str) and _CANONICAL_UUID(value):
        return value  # already what str(uuid.UUID(value)) gives: no need to build the object
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _write_chunk(job, batch, validator):
    """Validate and write one chunk and move the checkpoint, in one transaction. Every row is
    checked (contract, tenant, consent) and every rejected one explained; the per-row work is
    the compiled contract check and set look-ups, the tenant and consent checks are two
    set-based queries for the chunk, and the rows reach the table by COPY."""
    data_scope = _current_scope(job)
    denied = data_scope.refusal(write=True)
    if denied is not None:
        return _stop(job, denied)
    person_keys = {}  # each distinct person id of the chunk parsed once
    checked = []  # (line, person key, data, its contract violations)
    for line, pid, data in batch:
        if pid is None and isinstance(data, list):
            checked.append((line, _UNREADABLE, None, data))
            continue
        key = person_keys.get(pid, _UNREADABLE) if isinstance(pid, str) else uuid_or_none(pid)
        if key is _UNREADABLE:
            key = person_keys[pid] = uuid_or_none(pid)
        checked.append((line, key, data, validator.errors(data)))
    last_line = batch[-1][0]
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.next_line > batch[0][0]:
            return "lost the job"  # another worker took over and got further: stop here
        # Tenant and consent asked in the transaction that writes, for the chunk's persons at once.
        valid_ids = {key for _line, key, _data, _problems in checked if key and key is not _UNREADABLE}
        tenant_persons = {str(p) for p in data_scope.tenant_persons().filter(pk__in=_id_set(valid_ids))
                          .values_list("pk", flat=True)}
        consenting = data_scope.consenting(_id_set(tenant_persons)) if tenant_persons else set()
        records, errors = [], []
        for line, key, data, problems in checked:
            if key is _UNREADABLE:
                errors.append(ImportRowError(job=job, line=line, errors=problems))
                continue
            if key not in tenant_persons:
                problems.append({"field": "person_id", "message": "no such person in this tenant"})
            elif key not in consenting:
                problems.append({"field": "person_id", "message": "consent for this vertical is not in effect"})
            if problems:
                errors.append(ImportRowError(job=job, line=line, errors=problems))
            else:
                records.append((line, key, data))
        written, written_records = _insert_records(job, records)
        if written:  # one event per chunk (at most ceil(rows / CHUNK_ROWS) per file), in its transaction
            emit(event_type=EventType.RECORDS_IMPORTED, tenant=job.integration.tenant, vertical=job.vertical,
                 integration=job.integration,
                 data={"import_job": str(job.pk), "vertical": job.vertical.code, "record_type": job.record_type,
                       "lines": [batch[0][0], last_line], "records": written_records})
        ImportRowError.objects.bulk_create(errors, ignore_conflicts=True)
        count_batch_rows(integration=job.integration, kind="import", outcome="written", rows=len(records))
        count_batch_rows(integration=job.integration, kind="import", outcome="failed", rows=len(errors))
        ImportJob.objects.filter(pk=job.pk).update(
            next_line=last_line + 1, rows_done=locked.rows_done + len(batch), rows_failed=locked.rows_failed + len(errors),
            heartbeat_at=timezone.now(),
        )
    return True


def _id_set(ids):
    """`ids` for an `__in` lookup. On PostgreSQL as one uuid[] parameter: the driver quoting
    2,000 UUIDs one by one cost more per chunk than the query."""
    if connection.vendor != "postgresql":
        return list(ids)
    return RawSQL("SELECT unnest(%s::uuid[])", ["{" + ",".join(ids) + "}"])


def _insert_records(job, records):
    """Insert (line, person id, data) rows under their natural key (job:line), skipping keys
    already written, and return how many were inserted and the event's list of them
    ({record_id, person_id} in line order). On PostgreSQL they are streamed with COPY into a
    temporary table and inserted from there in one statement, which also builds that list, so
    no inserted id comes back through Python one by one."""
    prefix = f"{job.pk}:"
    if connection.vendor != "postgresql":
        keys = [f"{prefix}{line}" for line, _pid, _data in records]
        known = set(VerticalRecord.objects.filter(import_key__in=keys).values_list("import_key", flat=True))
        fresh = [VerticalRecord(person_id=pid, vertical=job.vertical, record_type=job.record_type, data=data,
                                source_integration=job.integration, import_key=key)
                 for key, (_line, pid, data) in zip(keys, records) if key not in known]
        VerticalRecord.objects.bulk_create(fresh, ignore_conflicts=True)
        return len(fresh), [{"record_id": str(r.id), "person_id": str(r.person_id)} for r in fresh]
    if not records:
        return 0, []
    dumps = json.dumps
    with connection.cursor() as cursor:
        # The session's own table, dropped at commit (emptied first in case an outer
        # transaction keeps it alive across chunks).
        cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS scp_import_rows "
                       "(line integer, person_id uuid, data jsonb) ON COMMIT DROP")
        cursor.execute("TRUNCATE scp_import_rows")
        with cursor.cursor.copy("COPY scp_import_rows (line, person_id, data) FROM STDIN") as copy:
            write_row = copy.write_row
            for line, pid, data in records:
                write_row((line, pid, dumps(data)))
        now = timezone.now()
        cursor.execute(
            f"WITH written AS (INSERT INTO {VerticalRecord._meta.db_table} (id, person_id, vertical_id, record_type, "
            "data, source_integration_id, import_key, created_at, updated_at) "
            "SELECT gen_random_uuid(), person_id, %s, %s, data, %s, %s || line, %s, %s FROM scp_import_rows "
            "ON CONFLICT (import_key) DO NOTHING RETURNING id, person_id, import_key) "
            # same prefix, so (length, key) is line order
            "SELECT count(*), coalesce(jsonb_agg(jsonb_build_object('record_id', id, 'person_id', person_id) "
            "ORDER BY length(import_key), import_key), '[]')::text FROM written",
            [job.vertical_id, job.record_type, job.integration_id, prefix, now, now],
        )
        written, listed = cursor.fetchone()
    return written, json.loads(listed) if written else []


def import_resume(job):
    """Queue a failed or abandoned job again; it continues from its checkpoint."""
    cutoff = timezone.now() - datetime.timedelta(seconds=settings.SCP_IMPORT_STALE_SECONDS)
    if job.status == ImportStatus.COMPLETED:
        raise ApiError(409, "invalid_transition", "The import is already completed.")
    if job.status == ImportStatus.RUNNING and job.heartbeat_at and job.heartbeat_at >= cutoff:
        raise ApiError(409, "invalid_transition", "The import is running.")
    # A resume is a fresh start for the retry rules: its attempts and last error are reset.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.QUEUED, attempts=0, error="")
    from .tasks import enqueue_after_commit, run_import_task

    enqueue_after_commit(run_import_task, job.pk)


def progress(job):
    """rows done, rows/s and ETA, for the API and the portal."""
    elapsed = ((job.finished_at or timezone.now()) - job.started_at).total_seconds() if job.started_at else 0
    rate = job.rows_done / elapsed if elapsed > 0 else 0.0
    remaining = max(job.rows_total - job.rows_done, 0)
    return {
        "rows_per_second": round(rate, 1),
        "eta_seconds": round(remaining / rate) if rate and job.status == ImportStatus.RUNNING else None,
    }

