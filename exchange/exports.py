"""Batch exports (pull, file-based): the integration's scoped, consented and minimized data as
NDJSON or CSV, written in chunks. Consent is re-read for every chunk, so a withdrawal during
the export excludes the person from everything written after it; exclusions are audited."""
import csv
import datetime
import io
import itertools
import json
import logging
import os
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import DisclosureChannel as Channel
from audit.services import AuditEvent, AuditResult, audit_record
from scp_core.errors import ApiError

from . import jobs
from .metrics import count_batch_rows
from .models import ExportJob, ImportStatus
from .scope import DataScope

logger = logging.getLogger(__name__)
CHUNK = 1000
RELEASE_PIECE = 10_000  # persons per disclosure ledger row of an export (bounded row size)


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


def _resume_from(job, path):
    """Copy what the previous attempt committed (up to its checkpoint) into this attempt's
    files; False when there is nothing to resume from. Each attempt writes files of its own, so
    a worker that was given up on, but still runs, cannot write into the files of the next."""
    if job.last_person_id is None or not job.file_path:
        return False
    previous = Path(job.file_path)
    if not previous.exists() or not _ids_path(previous).exists():
        return False
    for source, target, size in ((previous, path, job.file_bytes), (_ids_path(previous), _ids_path(path), job.ids_bytes)):
        with source.open("rb") as src, target.open("wb") as dst:
            while size > 0:  # the committed prefix only, in pieces (memory stays flat)
                piece = src.read(min(size, 1 << 20))
                if not piece:
                    break
                dst.write(piece)
                size -= len(piece)
    if previous != path:
        previous.unlink(missing_ok=True)
        _ids_path(previous).unlink(missing_ok=True)
    return True


def _run_export(job_id, chunk, progress):
    job = ExportJob.objects.select_related("integration__tenant", "vertical").get(pk=job_id)
    integration, attempt = job.integration, job.attempts
    mine = ExportJob.objects.filter(pk=job.pk, attempts=attempt)  # still this attempt's job?
    started = job.started_at
    fields = DataScope.of(integration, job.vertical, at=started).person_fields
    directory = Path(settings.SCP_EXPORT_DIR) / "exchange"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{job.pk}.{attempt}.{job.file_format}"
    resuming = _resume_from(job, path)
    written, excluded, last_id = (job.rows_written, list(job.excluded_ids), job.last_person_id) if resuming else (0, [], None)
    with path.open("ab" if resuming else "wb") as out, _ids_path(path).open("ab" if resuming else "wb") as ids_out:
        if not resuming and job.file_format == "csv":
            out.write(_rows_text([], fields, "csv", header=True))
        while True:
            # The scope is built anew per chunk from the integration as stored now, so a
            # suspension or the end of the active window stops the export within one chunk.
            integration.refresh_from_db(fields=["status", "active_from", "active_until", "agreement_until"])
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
            # Each row's bytes and where they lie, so the download re-checks each row whatever
            # it holds (a CSV cell may span lines).
            index = []
            for person in data_scope.persons().filter(pk__in=ids).order_by("pk").only(*{"id", *fields}):
                row = _rows_text([data_scope.minimize_person(person)], fields, job.file_format)
                index.append(f"{person.pk} {out.tell()} {len(row)}\n")
                out.write(row)
            ids_out.write("".join(index).encode())
            for handle in (out, ids_out):
                handle.flush()
                os.fsync(handle.fileno())
            written += len(index)
            if not mine.update(rows_written=written, rows_excluded=len(excluded), excluded_ids=excluded,
                               last_person_id=last_id, file_path=str(path), file_bytes=out.tell(),
                               ids_bytes=ids_out.tell(), heartbeat_at=timezone.now()):
                return _lost(path)
            if progress:
                progress(written)
    finished = timezone.now()
    with transaction.atomic():
        if not mine.filter(status=ImportStatus.RUNNING).update(
            status=ImportStatus.COMPLETED, file_path=str(path), finished_at=finished, rows_written=written,
            rows_excluded=len(excluded), error="",
            expires_at=finished + datetime.timedelta(hours=settings.SCP_EXPORT_TTL_HOURS),
        ):
            return _lost(path)
        audit_record(
            event_type=AuditEvent.BATCH_EXPORT, tenant=integration.tenant, integration=integration,
            actor=integration.auth_client_id, client_id=integration.auth_client_id, verticals=[job.vertical.code],
            details={"job": str(job.pk), "rows": written, "data_categories": sorted(fields),
                     "consent": {"excluded_during_export": sorted(excluded)}, "attempts": attempt},
            disclosures=_releases(DataScope.of(integration, job.vertical, at=started), Channel.EXPORT, path, fields),
        )
    count_batch_rows(integration=integration, kind="export", outcome="written", rows=written)
    count_batch_rows(integration=integration, kind="export", outcome="excluded", rows=len(excluded))
    return ImportStatus.COMPLETED


def _releases(data_scope, channel, path, fields):
    """The ledger entries of the export's rows, from its row index (a resumed export's first
    rows were written by an earlier attempt), in pieces of RELEASE_PIECE persons."""
    with _ids_path(path).open() as ids:
        return [data_scope.release(channel, [pid for pid, _offset, _length in rows], fields)
                for rows in _index(ids, RELEASE_PIECE)]


def _lost(path):
    """Another worker took the job over (this one was given up on): stop, and leave nothing."""
    path.unlink(missing_ok=True)
    _ids_path(path).unlink(missing_ok=True)
    return "lost the job"


def _fail(job, path, denied, written):
    """Stop an export that the policy no longer allows: the partial file is removed, the job
    says why (the denial's code) and the stop is audited."""
    path.unlink(missing_ok=True)
    _ids_path(path).unlink(missing_ok=True)
    reason = f"{denied.code}: {denied.detail}"
    with transaction.atomic():
        ExportJob.objects.filter(pk=job.pk).update(status=ImportStatus.FAILED, finished_at=timezone.now(), error=reason,
                                                   rows_written=written, file_path="")
        audit_record(
            event_type=AuditEvent.BATCH_EXPORT, result=AuditResult.DENIED, tenant=job.integration.tenant,
            integration=job.integration, actor=job.integration.auth_client_id, client_id=job.integration.auth_client_id,
            verticals=[job.vertical.code], error_code=denied.code,
            details={"job": str(job.pk), "stopped": reason, "rows_before_stop": written},
        )
    return ImportStatus.FAILED


def _index(ids_file, chunk):
    """The export's row index in chunks: [(person id, offset, length)]."""
    while lines := list(itertools.islice(ids_file, chunk)):
        rows = [line.split() for line in lines]
        if any(len(row) != 3 for row in rows):
            raise ApiError(409, "invalid_transition", "This export cannot be re-checked against consent; request a new export.")
        yield [(pid, int(offset), int(length)) for pid, offset, length in rows]


def stream_download(job, *, chunk=CHUNK):
    """The export file as it may be released now: every row is checked against consent in
    effect at download time, so a person who withdrew after the export completed is left out.
    Returns (an iterator of the file's bytes, the sorted ids excluded, the ledger entries of
    what it releases)."""
    data_scope = DataScope.of(job.integration, job.vertical)
    path = Path(job.file_path)
    if not _ids_path(path).exists():  # written before downloads were re-checked: refuse, re-runnable
        raise ApiError(409, "invalid_transition", "This export cannot be re-checked against consent; request a new export.")
    # One pass over the index: who is left out, and who is released (the ledger's entries).
    excluded, released = set(), []
    with _ids_path(path).open() as ids:
        for rows in _index(ids, chunk):
            pids = [pid for pid, _offset, _length in rows]
            consenting = data_scope.consenting(pids)
            excluded.update(pid for pid in pids if pid not in consenting)
            released.extend(pid for pid in pids if pid in consenting)

    def content():
        position = 0
        with path.open("rb") as data, _ids_path(path).open() as ids:
            for rows in _index(ids, chunk):
                for pid, offset, length in rows:
                    if offset > position:  # what precedes the rows: the CSV header
                        yield data.read(offset - position)
                    row = data.read(length)
                    position = offset + length
                    if pid not in excluded:
                        yield row

    fields = DataScope.of(job.integration, job.vertical, at=job.started_at).person_fields
    releases = [data_scope.release(Channel.EXPORT_DOWNLOAD, released[i:i + RELEASE_PIECE], fields)
                for i in range(0, len(released), RELEASE_PIECE)]
    return content(), sorted(excluded), releases


def expire_exports(now=None):
    now = now or timezone.now()
    removed = 0
    for job in ExportJob.objects.filter(status=ImportStatus.COMPLETED, expires_at__lt=now).exclude(file_path=""):
        Path(job.file_path).unlink(missing_ok=True)
        _ids_path(Path(job.file_path)).unlink(missing_ok=True)
        ExportJob.objects.filter(pk=job.pk).update(file_path="")
        removed += 1
    return removed
