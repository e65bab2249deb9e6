"""Batch exports (pull, file-based): the integration's scoped, consented and minimized data as
NDJSON or CSV, written in chunks. Consent is re-read for every chunk, so a withdrawal during
the export excludes the person from everything written after it; exclusions are audited."""
import csv
import datetime
import json
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import AuditEvent, audit_record
from scp_core.models import Consent, Person
from scp_portal.metrics import count_batch_rows
from scp_portal.problems import ApiError

from .masking import minimize
from .models import ExportJob, ImportStatus

CHUNK = 1000


def export_create(*, integration, vertical, file_format):
    if file_format not in ("ndjson", "csv"):
        raise ApiError(422, "validation_error", "'format' must be 'ndjson' or 'csv'.", errors=[{"field": "format", "message": "ndjson or csv"}])
    job = ExportJob.objects.create(integration=integration, vertical=vertical, file_format=file_format)
    from .tasks import enqueue_after_commit, run_export_task

    enqueue_after_commit(run_export_task, job.pk)
    return job


def run_export(job_id, *, chunk=CHUNK, progress=None):
    claimed = ExportJob.objects.filter(pk=job_id, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, started_at=timezone.now())
    if not claimed:
        return "not claimed"
    job = ExportJob.objects.select_related("integration__tenant", "vertical").get(pk=job_id)
    fields = job.integration.read_scope.get(job.vertical.code, {})
    started = job.started_at
    directory = Path(settings.SCP_EXPORT_DIR) / "exchange"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{job.pk}.{job.file_format}"
    tenant_persons = Person.objects.filter(tenant_id=job.integration.tenant_id)
    written, excluded, last_id = 0, [], None
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(fields)) if job.file_format == "csv" else None
        if writer:
            writer.writeheader()
        while True:
            window = tenant_persons.filter(pk__gt=last_id) if last_id else tenant_persons
            ids = list(window.order_by("pk").values_list("pk", flat=True)[:chunk])
            if not ids:
                break
            last_id = ids[-1]
            consenting_then = set(Consent.objects.in_effect(job.vertical, at=started).filter(person_id__in=ids).values_list("person_id", flat=True))
            consenting_now = set(Consent.objects.in_effect(job.vertical).filter(person_id__in=ids).values_list("person_id", flat=True))
            excluded.extend(str(p) for p in consenting_then - consenting_now)
            for person in Person.objects.filter(pk__in=consenting_now).order_by("pk").only(*{"id", *fields}):
                row = minimize(person, fields)
                if writer:
                    writer.writerow(row)
                else:
                    out.write(json.dumps(row, separators=(",", ":")) + "\n")
                written += 1
            ExportJob.objects.filter(pk=job.pk).update(rows_written=written, rows_excluded=len(excluded))
            if progress:
                progress(written)
    finished = timezone.now()
    with transaction.atomic():
        ExportJob.objects.filter(pk=job.pk).update(
            status=ImportStatus.COMPLETED, file_path=str(path), finished_at=finished, rows_written=written,
            rows_excluded=len(excluded), expires_at=finished + datetime.timedelta(hours=settings.SCP_EXPORT_TTL_HOURS),
        )
        audit_record(
            event_type=AuditEvent.BATCH_EXPORT, tenant=job.integration.tenant, integration=job.integration,
            actor=job.integration.auth_client_id, client_id=job.integration.auth_client_id, verticals=[job.vertical.code],
            details={"job": str(job.pk), "rows": written, "data_categories": sorted(fields),
                     "consent": {"excluded_during_export": excluded}},
        )
    count_batch_rows(integration=job.integration, kind="export", outcome="written", rows=written)
    count_batch_rows(integration=job.integration, kind="export", outcome="excluded", rows=len(excluded))
    return ImportStatus.COMPLETED


def expire_exports(now=None):
    now = now or timezone.now()
    removed = 0
    for job in ExportJob.objects.filter(status=ImportStatus.COMPLETED, expires_at__lt=now).exclude(file_path=""):
        Path(job.file_path).unlink(missing_ok=True)
        ExportJob.objects.filter(pk=job.pk).update(file_path="")
        removed += 1
    return removed
