"""Celery tasks of the audit trail."""
from celery import shared_task

from scp_core.models import Tenant

from .chain import seal_all
from .portal_exports import run_export_job
from .retention import purge_platform, purge_tenant


@shared_task
def seal_audit_task():
    return seal_all()


@shared_task
def purge_audit_task():
    purged = {t.code: purge_tenant(t) for t in Tenant.objects.filter(audit_retention_days__isnull=False)}
    return {**purged, "_platform": purge_platform()}


@shared_task
def run_audit_export_task(job_id):
    """Run one portal-requested export: claim it, export with progress, zip it."""
    return run_export_job(job_id)
