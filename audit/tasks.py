"""Celery tasks of the audit trail."""
from celery import shared_task
from django.conf import settings

from scp_core.models import Tenant

from . import partitions
from .chain import PLATFORM_CHAIN, seal_all
from .portal_exports import run_export_job
from .retention import purge


@shared_task
def seal_audit_task():
    return seal_all()


@shared_task
def purge_audit_task():
    """Every chain with a retention at once, so the months they share are dropped whole."""
    plan = [(t.code, t, t.audit_retention_days) for t in Tenant.objects.filter(audit_retention_days__isnull=False)]
    return purge([*plan, (PLATFORM_CHAIN, None, settings.SCP_PLATFORM_AUDIT_RETENTION_DAYS)])


@shared_task
def ensure_audit_partitions_task():
    return partitions.ensure()


@shared_task
def run_audit_export_task(job_id):
    """Run one portal-requested export: claim it, export with progress, zip it."""
    return run_export_job(job_id)
