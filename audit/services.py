"""Writing the audit log. Callers write in the same transaction as the change they audit."""
import datetime
import json

from django.conf import settings
from django.db import connections
from django.db.models import F
from django.utils import timezone

from . import ledger
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
    disclosures=(),
    using="default",
):
    """Append one audit record in the caller's transaction (on the connection `using`), with
    the disclosures of persons' data it records (audit.ledger), which it commits to."""
    if actor_user is not None and not actor:
        actor = actor_user.get_username()
    if disclosures:
        details = {**(details or {}), "disclosures": ledger.commitment(disclosures)}
    connection = connections[using]
    ops = connection.ops
    occurred_at = timezone.now()
    # One precompiled INSERT, not Model.objects.create(): this runs on every exchange request,
    # and building the ORM query cost as much as the INSERT itself (README, "Benchmarks").
    params = [
        ops.adapt_datetimefield_value(occurred_at), event_type, request_id, _fk("tenant", tenant, connection),
        _fk("integration", integration, connection), _fk("actor_user", actor_user, connection), actor, client_id,
        ops.adapt_ipaddressfield_value(source_ip),
        _json(sorted(verticals)), result, status_code, error_code, _json(details or {}),
    ]
    if not disclosures:
        with connection.cursor() as cursor:
            cursor.execute(_INSERT, params)
        return
    with connection.cursor() as cursor:
        ledger.insert_with_record(cursor, connection, _INSERT, params, occurred_at, disclosures)


def _json(value):
    """JSON text for a jsonb column. PostgreSQL refuses NUL characters, which hostile input
    may carry (they show as \\u0000 in JSON text): those are replaced, on the rare slow path."""
    text = json.dumps(value)
    return json.dumps(_storable(value)) if "\\u0000" in text else text


_COLUMNS = ["occurred_at", "event_type", "request_id", "tenant_id", "integration_id", "actor_user_id", "actor",
            "client_id", "source_ip", "verticals", "result", "status_code", "error_code", "details"]
_INSERT = (f"INSERT INTO {AuditRecord._meta.db_table} ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(_COLUMNS))})")


_FOREIGN_KEYS = {name: AuditRecord._meta.get_field(name) for name in ("tenant", "integration", "actor_user")}


def _fk(name, obj, connection):
    """The key as the database takes it (an integration's UUID is text on SQLite)."""
    return None if obj is None else _FOREIGN_KEYS[name].get_db_prep_save(obj.pk, connection)


def _storable(value):
    """PostgreSQL text and jsonb refuse NUL characters, which hostile input may carry."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return value


def incident_open(*, kind, severity, summary, tenant=None, integration=None, request_id="", details=None,
                  grouped=False):
    """Open an incident for the umbrella authority and auditors (spec §10). `grouped`: a
    repeat of an unresolved incident of the same kind, tenant and integration opened within
    SCP_INCIDENT_GROUP_SECONDS counts as one more occurrence of it, not a new incident."""
    if grouped:
        now = timezone.now()
        repeat = Incident.objects.filter(
            kind=kind, tenant=tenant, integration=integration, resolved_at__isnull=True,
            opened_at__gte=now - datetime.timedelta(seconds=settings.SCP_INCIDENT_GROUP_SECONDS),
        ).update(occurrences=F("occurrences") + 1, last_seen_at=now)
        if repeat:
            return None
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
