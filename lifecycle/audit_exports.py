"""Who may export which tenant's audit trail from the portal, and the service that queues it
(the export job itself belongs to the audit trail: audit.portal_exports)."""
from django.db import transaction

from audit.models import AuditExportJob
from audit.tasks import run_audit_export_task
from scp_core.errors import PermissionDeniedError

from .roles import roles_of


def may_export(user, tenant):
    roles = roles_of(user)
    return roles.sees_everything or tenant.pk in roles.admin_tenants


def export_request(*, actor, tenant, since=None, until=None):
    """Queue an export; the task starts after the job row is committed."""
    if not may_export(actor, tenant):
        raise PermissionDeniedError("You may not export this tenant's audit trail.")
    job = AuditExportJob.objects.create(tenant=tenant, since=since, until=until, requested_by=actor)
    transaction.on_commit(lambda: run_audit_export_task.delay(job.pk))
    return job
