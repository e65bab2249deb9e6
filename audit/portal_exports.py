"""Audit exports requested from the portal: the same export as `audit_export`, run as a job."""
import shutil
from pathlib import Path

from django.conf import settings
from django.utils import timezone


from .export import export_chain
from .models import AuditExportJob, ExportStatus


def job_dir(job):
    return Path(settings.SCP_EXPORT_DIR) / f"job-{job.pk}"


def job_zip(job):
    return Path(settings.SCP_EXPORT_DIR) / f"audit-{job.tenant.code}-{job.pk}.zip"


def run_export_job(job_id):
    claimed = AuditExportJob.objects.filter(pk=job_id, status=ExportStatus.QUEUED).update(status=ExportStatus.RUNNING)
    if not claimed:
        return "not queued"
    job = AuditExportJob.objects.select_related("tenant", "requested_by").get(pk=job_id)

    def progress(done, total):
        AuditExportJob.objects.filter(pk=job.pk).update(records_done=done, records_total=total)

    try:
        export_chain(tenant=job.tenant, out_dir=job_dir(job), since=job.since, until=job.until,
                     actor=job.requested_by.get_username(), progress=progress)
        shutil.make_archive(str(job_zip(job)).removesuffix(".zip"), "zip", job_dir(job))
    except Exception as exc:  # the job shows the failure; the worker keeps running
        AuditExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.FAILED, error=str(exc)[:2000],
                                                        finished_at=timezone.now())
        raise
    AuditExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.COMPLETED, finished_at=timezone.now())
    return "completed"
