"""Services for the governed configuration that the portal edits besides integrations: role
assignments, tenant settings, purpose vocabularies and connectors. Each checks who may act, writes the change, its
history entry and its audit record in one transaction; the admin screens call these only."""
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms.models import model_to_dict

from audit.services import AuditEvent, audit_record
from registry.models import Integration
from scp_core.errors import ValidationFailedError

from .models import RoleAssignment
from .permissions import require
from .roles import roles_of


def _validated(obj):
    try:
        obj.full_clean()
    except ValidationError as exc:
        raise ValidationFailedError(
            "The change is not valid.",
            errors=[{"field": field, "message": " ".join(messages)} for field, messages in exc.message_dict.items()],
        ) from exc


def _plain(obj, fields):
    return {name: str(value) if value is not None else None for name, value in model_to_dict(obj, fields=fields).items()}


def role_assignment_grant(*, actor, user, role, tenant=None, vertical=None, partner=None, request_id=""):
    require(actor, "assign-roles")
    assignment = RoleAssignment(user=user, role=role, tenant=tenant, vertical=vertical, partner=partner)
    _validated(assignment)
    with transaction.atomic():
        assignment._change_reason = "granted"
        assignment.save()
        audit_record(event_type=AuditEvent.ROLE_CHANGED, tenant=tenant, actor_user=actor, request_id=request_id,
                     details={"granted": _plain(assignment, ["user", "role", "tenant", "vertical", "partner"])})
    return assignment


def role_assignment_revoke(*, actor, assignment, request_id=""):
    require(actor, "assign-roles")
    with transaction.atomic():
        before = _plain(assignment, ["user", "role", "tenant", "vertical", "partner"])
        tenant = assignment.tenant
        assignment._change_reason = "revoked"
        assignment.delete()
        audit_record(event_type=AuditEvent.ROLE_CHANGED, tenant=tenant, actor_user=actor, request_id=request_id,
                     details={"revoked": before})


TENANT_FIELDS = ["code", "name", "audit_retention_days", "recertification_interval_days", "recertification_answer_days"]


def tenant_save(*, actor, tenant, request_id=""):
    """Create a tenant or change its settings (an unsaved instance, or one with changed fields)."""
    require(actor, "configure-tenant")
    stored = type(tenant).objects.filter(pk=tenant.pk).first() if tenant.pk else None
    _validated(tenant)
    with transaction.atomic():
        tenant.save()
        audit_record(event_type=AuditEvent.TENANT_SETTINGS_CHANGED, tenant=tenant, actor_user=actor, request_id=request_id,
                     details={"before": _plain(stored, TENANT_FIELDS) if stored else None, "after": _plain(tenant, TENANT_FIELDS)})
    return tenant


PURPOSE_FIELDS = ["tenant", "code", "name", "investigation"]


def purpose_save(*, actor, purpose, request_id=""):
    """Add a purpose to a tenant's vocabulary, or rename it; its code never changes once made
    (integrations and consents name it), and whether it is an investigation only ROOT decides."""
    require(actor, "configure-purposes", tenant=purpose.tenant)
    stored = type(purpose).objects.filter(pk=purpose.pk).first() if purpose.pk else None
    if stored is not None and (stored.code != purpose.code or stored.tenant_id != purpose.tenant_id):
        raise ValidationFailedError("A purpose's code and tenant do not change.", errors=[{"field": "code", "message": "fixed"}])
    if purpose.investigation != (stored.investigation if stored else False) and not roles_of(actor).is_root:
        raise ValidationFailedError("Only ROOT marks a purpose as an investigation (its disclosures may be embargoed).",
                                    errors=[{"field": "investigation", "message": "ROOT only"}])
    _validated(purpose)
    with transaction.atomic():
        purpose.save()
        audit_record(event_type=AuditEvent.TENANT_SETTINGS_CHANGED, tenant=purpose.tenant, actor_user=actor,
                     request_id=request_id,
                     details={"purpose": {"before": _plain(stored, PURPOSE_FIELDS) if stored else None,
                                          "after": _plain(purpose, PURPOSE_FIELDS)}})
    return purpose


CONNECTOR_FIELDS = ["integration", "name", "adapter", "source", "vertical", "record_type", "every_seconds"]


def connector_check(*, actor, connector):
    """Raise ValidationFailedError (or PermissionDeniedError) unless `actor` may save this
    connector as it is; returns its integration. The admin's form asks it before saving."""
    integration = Integration.objects.visible_to(roles_of(actor)).filter(pk=connector.integration_id).first()
    if integration is None:
        raise ValidationFailedError("No such integration.", errors=[{"field": "integration", "message": "not found"}])
    require(actor, "configure-connector", integration)
    if connector.vertical.code not in integration.vertical_codes():
        raise ValidationFailedError("The connector's vertical is not one of the integration's verticals.",
                                    errors=[{"field": "vertical", "message": "not declared by the integration"}])
    if connector.adapter == "csv_file" and not Path(connector.source).resolve().is_relative_to(
            Path(settings.SCP_CONNECTOR_FILES_DIR).resolve()):
        raise ValidationFailedError("A CSV connector reads only from the connector files directory.",
                                    errors=[{"field": "source", "message": f"must be under {settings.SCP_CONNECTOR_FILES_DIR}"}])
    return integration


def connector_save(*, actor, connector, request_id=""):
    """Create or change a connector (an unsaved instance, or one with changed fields)."""
    integration = connector_check(actor=actor, connector=connector)
    adding = connector._state.adding
    _validated(connector)
    with transaction.atomic():
        connector.save()
        audit_record(event_type=AuditEvent.CONNECTOR_CONFIGURED, tenant=integration.tenant, integration=integration,
                     actor_user=actor, request_id=request_id, verticals=[connector.vertical.code],
                     details={"created" if adding else "changed": _plain(connector, CONNECTOR_FIELDS)})
    return connector
