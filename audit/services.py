"""Writing the audit log. Callers write in the same transaction as the change they audit."""
from .models import AuditEvent, AuditRecord, AuditResult, Incident, IncidentKind, IncidentSeverity


def audit_record(
    *,
    event_type,
    result=AuditResult.SUCCESS,
    tenant=None,
    integration=None,
    actor_user=None,
    actor="",
    client_id="",
    request_id="",
    source_ip=None,
    verticals=(),
    status_code=None,
    error_code="",
    details=None,
):
    """Append one audit record and return it."""
    if actor_user is not None and not actor:
        actor = actor_user.get_username()
    details = _storable(details or {})
    return AuditRecord.objects.create(
        event_type=event_type,
        result=result,
        tenant=tenant,
        integration=integration,
        actor_user=actor_user,
        actor=actor,
        client_id=client_id,
        request_id=request_id,
        source_ip=source_ip,
        verticals=sorted(verticals),
        status_code=status_code,
        error_code=error_code,
        details=details,
    )


def _storable(value):
    """PostgreSQL text and jsonb refuse NUL characters, which hostile input may carry."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return value


def incident_open(*, kind, severity, summary, tenant=None, integration=None, request_id="", details=None):
    """Open an incident for the umbrella authority and auditors (spec §10)."""
    return Incident.objects.create(
        kind=kind,
        severity=severity,
        summary=summary[:300],
        tenant=tenant,
        integration=integration,
        request_id=request_id,
        details=details or {},
    )


__all__ = ["AuditEvent", "AuditResult", "IncidentKind", "IncidentSeverity", "audit_record", "incident_open"]
