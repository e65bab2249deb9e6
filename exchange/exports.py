"""Batch exports (pull, file-based): the integration's scoped, consented and minimized data as
NDJSON or CSV, written in chunks. Consent is re-read for every chunk, so a withdrawal during
the export excludes the person from everything written after it; exclusions are audited."""
import csv
import datetime
import io
import itertools
import json
import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import AuditEvent, AuditResult, audit_record
from scp_core.errors import ApiError

from . import jobs
from .metrics import count_batch_rows
from .models import ExportJob, ImportStatus
from .scope import DataScope

logger = logging.getLogger(__name__)
CHUNK = 1000


def export_create(*, integration, vertical, file_format):
    if file_format not in ("ndjson", "csv"):
        raise ApiError(422, "validation_error", "'format' must be 'ndjson' or 'csv'.", errors=[{"field": "format", "message": "ndjson or csv"}])
    job = ExportJob.objects.create(integration=integration, vertical=vertical, file_format=file_format)
    from .tasks import enqueue_after_commit, run_export_task

    enqueue_after_commit(run_export_task, job.pk)
    return job


def _ids_path(path):
    """Beside each export file, the person id of each of its rows, line by line: the download
    re-checks consent against it (the file itself may hold no id field at all)."""
    return path.with_name(path.name + ".ids")


def run_export(job_id, *, chunk=CHUNK, progress=None):
    """Write the export from its checkpoint to its end; returns its status afterwards. An
    error sends it back to the queue once, and ends it `failed` when it recurs (exchange.jobs)."""
    if not jobs.claim(ExportJob, job_id):
        return "not claimed"
    try:
        return _run_export(job_id, chunk, progress)
    except Exception as exc:  # noqa: BLE001 -- any error: recorded on the job, never a silent spin
        logger.exception("export %s failed", job_id)
        return jobs.fail_or_retry(ExportJob, job_id, f"{exc.__class__.__name__}: {exc}")


def _rows_text(rows, fields, file_format, header=False):
    text = io.StringIO(newline="")
    if file_format == "csv":
        writer = csv.DictWriter(text, fieldnames=list(fields))
        if header:
            writer.writeheader()
        writer.writerows(rows)
    else:
        text.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    return text.getvalue().encode("utf-8")


def _run_export(job_id, chunk, progress):
    job = ExportJob.objects.select_related("integration__tenant", "vertical").get(pk=job_id)
    integration = job.integration
    started = job.started_at
    fields = DataScope.of(integration, job.vertical, at=started).person_fields
    directory = Path(settings.SCP_EXPORT_DIR) / "exchange"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{job.pk}.{job.file_format}"
    # Resume from the checkpoint: the files are cut back to what the last committed chunk
    # wrote (a chunk written after it, by a worker that died, is written again).
    resuming = job.last_person_id is not None and path.exists() and _ids_path(path).exists()
    written, excluded, last_id = (job.rows_written, list(job.excluded_ids), job.last_person_id) if resuming else (0, [], None)
    with path.open("r+b" if resuming else "wb") as out, _ids_path(path).open("r+b" if resuming else "wb") as ids_out:
        if resuming:
            out.truncate(job.file_bytes)
            ids_out.truncate(job.ids_bytes)
            out.seek(job.file_bytes)
            ids_out.seek(job.ids_bytes)
        elif job.file_format == "csv":
            out.write(_rows_text([], fields, "csv", header=True))
        while True:
            # The scope is built anew per chunk from the integration as stored now, so a
            # suspension or the end of the active window stops the export within one chunk.
            integration.refresh_from_db(fields=["status", "active_from", "active_until"])
            data_scope = DataScope.of(integration, job.vertical)
            denied = data_scope.refusal()
            if denied is not None:
                return _fail(job, path, denied, written)
            window = data_scope.tenant_persons()
            window = window.filter(pk__gt=last_id) if last_id else window
            ids = list(window.order_by("pk").values_list("pk", flat=True)[:chunk])
            if not ids:
                break
            last_id = ids[-1]
            consenting_then = DataScope.of(integration, job.vertical, at=started).consenting(ids)
            consenting_now = data_scope.consenting(ids)
            excluded.extend(sorted(consenting_then - consenting_now))
            persons = list(data_scope.persons().filter(pk__in=ids).order_by("pk").only(*{"id", *fields}))
            out.write(_rows_text([data_scope.minimize_person(p) for p in persons], fields, job.file_format))
            ids_out.write("".join(f"{p.pk}\n" for p in persons).encode())
            out.flush()
            ids_out.flush()
            written += len(persons)
            ExportJob.objects.filter(pk=job.pk).update(
                rows_written=written, rows_excluded=len(excluded), excluded_ids=excluded, last_person_id=last_id,
                file_bytes=out.tell(), ids_bytes=ids_out.tell(), heartbeat_at=timezone.now())
            if progress:
                progress(written)
    finished = timezone.now()
    with transaction.atomic():
        ExportJob.objects.filter(pk=job.pk).update(
            status=ImportStatus.COMPLETED, file_path=str(path), finished_at=finished, rows_written=written,
            rows_excluded=len(excluded), error="",
            expires_at=finished + datetime.timedelta(hours=settings.SCP_EXPORT_TTL_HOURS),
        )
        audit_record(
            event_type=AuditEvent.BATCH_EXPORT, tenant=integration.tenant, integration=integration,
            actor=integration.auth_client_id, client_id=integration.auth_client_id, verticals=[job.vertical.code],
            details={"job": str(job.pk), "rows": written, "data_categories": sorted(fields),
                     "consent": {"excluded_during_export": sorted(excluded)}, "attempts": job.attempts},
        )
    count_batch_rows(integration=integration, kind="export", outcome="written", rows=written)
    count_batch_rows(integration=integration, kind="export", outcome="excluded", rows=len(excluded))
    return ImportStatus.COMPLETED


def _fail(job, path, denied, written):
    """Stop an export that the policy no longer allows: the partial file is removed, the job
    says why (the denial's code) and the stop is audited."""
    path.unlink(missing_ok=True)
    _ids_path(path).unlink(missing_ok=True)
    reason = f"{denied.code}: {denied.detail}"
    with transaction.atomic():
        ExportJob.objects.filter(pk=job.pk).update(status=ImportStatus.FAILED, finished_at=timezone.now(), error=reason,
                                                   rows_written=written)
        audit_record(
            event_type=AuditEvent.BATCH_EXPORT, result=AuditResult.DENIED, tenant=job.integration.tenant,
            integration=job.integration, actor=job.integration.auth_client_id, client_id=job.integration.auth_client_id,
            verticals=[job.vertical.code], error_code=denied.code,
            details={"job": str(job.pk), "stopped": reason, "rows_before_stop": written},
        )
    return ImportStatus.FAILED


def stream_download(job, *, chunk=CHUNK):
    """The export file as it may be released now: every row is checked against consent in
    effect at download time, so a person who withdrew after the export completed is left out.
    Returns (an iterator of the file's bytes, the sorted ids excluded)."""
    data_scope = DataScope.of(job.integration, job.vertical)
    path = Path(job.file_path)
    if not _ids_path(path).exists():  # written before downloads were re-checked: refuse, re-runnable
        raise ApiError(409, "invalid_transition", "This export cannot be re-checked against consent; request a new export.")
    excluded = set()
    with _ids_path(path).open() as ids:
        while lines := [line.strip() for line in itertools.islice(ids, chunk)]:
            excluded |= set(lines) - data_scope.consenting(lines)

    def rows():
        with path.open("rb") as data, _ids_path(path).open() as ids:
            if job.file_format == "csv":
                yield data.readline()
            for person_id in ids:
                line = data.readline()
                if person_id.strip() not in excluded:
                    yield line

    return rows(), sorted(excluded)


def expire_exports(now=None):
    now = now or timezone.now()
    removed = 0
    for job in ExportJob.objects.filter(status=ImportStatus.COMPLETED, expires_at__lt=now).exclude(file_path=""):
        Path(job.file_path).unlink(missing_ok=True)
        _ids_path(Path(job.file_path)).unlink(missing_ok=True)
        ExportJob.objects.filter(pk=job.pk).update(file_path="")
        removed += 1
    return removed
