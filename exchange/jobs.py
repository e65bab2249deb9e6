"""What every batch job (imports, exports) shares so that none spins for ever: an atomic claim
that counts attempts, a checkpoint the job moves as it goes (its heartbeat), a sweeper that
hands a job whose worker died to another, and a rule for errors: the first time a job fails
with some reason it is tried again; the second time with the same reason, or once it has
been abandoned too often, it ends `failed` with that reason for the partner, the portal and
the compliance view to see."""
import datetime
from pathlib import Path

from django.conf import settings
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.services import AuditEvent, AuditResult, audit_record

from .models import ExportJob, ImportJob, ImportStatus

JOB_MODELS = {"import": ImportJob, "export": ExportJob}


def claim(model, job_id):
    """Take a queued job (one atomic update: two workers never both run it). A job taken more
    than SCP_JOB_MAX_ATTEMPTS times (its workers keep dying) ends failed instead."""
    now = timezone.now()
    claimed = model.objects.filter(pk=job_id, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, heartbeat_at=now, started_at=Coalesce("started_at", Value(now)),
        attempts=F("attempts") + 1)
    if not claimed:
        return False
    if model.objects.filter(pk=job_id, attempts__gt=settings.SCP_JOB_MAX_ATTEMPTS).exists():
        finish_failed(model, job_id, f"abandoned: taken {settings.SCP_JOB_MAX_ATTEMPTS} times without finishing")
        return False
    return True


def finish_failed(model, job_id, reason):
    """End a job failed, audited with what it had done; an export's partial files go."""
    model.objects.filter(pk=job_id).update(status=ImportStatus.FAILED, finished_at=timezone.now(), error=reason[:2000])
    job = model.objects.select_related("integration__tenant", "vertical").get(pk=job_id)
    done = {"rows_done": job.rows_done, "rows_failed": job.rows_failed} if model is ImportJob else {"rows_written": job.rows_written}
    audit_record(
        event_type=AuditEvent.BATCH_IMPORT if model is ImportJob else AuditEvent.BATCH_EXPORT, result=AuditResult.FAILURE,
        tenant=job.integration.tenant, integration=job.integration, actor=job.integration.auth_client_id,
        client_id=job.integration.auth_client_id, verticals=[job.vertical.code], error_code="job_failed",
        details={"job": str(job.pk), "failed": reason[:300], "attempts": job.attempts, **done},
    )
    if model is ExportJob and job.file_path:
        Path(job.file_path).unlink(missing_ok=True)
        Path(job.file_path + ".ids").unlink(missing_ok=True)
        model.objects.filter(pk=job_id).update(file_path="")


def fail_or_retry(model, job_id, reason):
    """A job raised `reason`: back to the queue the first time (the sweeper hands it to a worker
    after SCP_IMPORT_STALE_SECONDS), `failed` the second time with the same reason."""
    if model.objects.filter(pk=job_id, error=reason[:2000]).exists():
        finish_failed(model, job_id, reason)
        return ImportStatus.FAILED
    model.objects.filter(pk=job_id).update(status=ImportStatus.QUEUED, heartbeat_at=timezone.now(), error=reason[:2000])
    return ImportStatus.QUEUED


def requeue_stalled():
    """{kind: [job ids]} to run again: jobs whose worker died (running, no heartbeat for
    SCP_IMPORT_STALE_SECONDS), jobs waiting for their retry as long, and jobs whose start
    message never arrived. Each is taken by one atomic update, so a sweep never hands a job
    out twice."""
    now = timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.SCP_IMPORT_STALE_SECONDS)
    due = {}
    for kind, model in JOB_MODELS.items():
        abandoned = model.objects.filter(status=ImportStatus.RUNNING, heartbeat_at__lt=cutoff)
        retrying = model.objects.filter(status=ImportStatus.QUEUED, heartbeat_at__lt=cutoff)
        never_started = model.objects.filter(status=ImportStatus.QUEUED, created_at__lt=cutoff, started_at__isnull=True)
        ids = [pk for pk in abandoned.values_list("pk", flat=True)
               if abandoned.filter(pk=pk).update(status=ImportStatus.QUEUED, heartbeat_at=now)]
        ids += [pk for pk in retrying.values_list("pk", flat=True) if retrying.filter(pk=pk).update(heartbeat_at=now)]
        ids += list(never_started.values_list("pk", flat=True))
        due[kind] = ids
    return due
