"""Connectors and adapters (spec §3): SCP pulls from partner systems on a schedule.

An adapter translates an external protocol or format into rows; a connector binds one to an
integration, a vertical, a record type and a schedule. Every pulled row must match the data
contract: on schema drift the run fails safely (nothing written, an incident opened) and
recovers on its own once the partner is fixed; on a partner outage the connector is marked
degraded, retried with exponential backoff, and the last good data is kept.
"""
import csv
import datetime
import itertools
import json
import logging
from pathlib import Path

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import AuditEvent, AuditResult, IncidentKind, IncidentSeverity, audit_record, incident_open
from lifecycle.models import NotificationEvent
from lifecycle.notifications import notify, tenant_admins
from scp_core.errors import ApiError
from scp_core.models import VerticalRecord
from scp_core.statistics import analyze

from .batch import cast_cell, uuid_or_none
from .events import emit
from .models import Connector, ConnectorStatus, EventType
from .scope import DataScope, refusal
from .validation import validator_for
from .webhooks import check_target

logger = logging.getLogger(__name__)
BACKOFF_BASE = datetime.timedelta(seconds=30)
BACKOFF_MAX = datetime.timedelta(hours=1)


class PartnerUnavailable(Exception):
    """The partner's system could not be reached or answered with a server error."""


class SchemaDrift(Exception):
    """What the partner sent does not match the data contract."""

    def __init__(self, problems):
        self.problems = problems
        super().__init__(f"{len(problems)} rows do not match the data contract")


def _json_https(connector):
    try:
        check_target(connector.source)
    except ApiError as exc:
        raise SchemaDrift([{"row": None, "message": f"source refused: {exc.detail}"}]) from exc
    try:
        response = requests.get(connector.source, timeout=15, allow_redirects=False, stream=True)
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise PartnerUnavailable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise SchemaDrift([{"row": None, "message": f"unexpected HTTP {response.status_code}"}])
        content = b""
        for piece in response.iter_content(64 * 1024):  # bounded: a partner cannot exhaust memory
            content += piece
            if len(content) > settings.SCP_CONNECTOR_MAX_BYTES:
                raise SchemaDrift([{"row": None, "message": f"more than {settings.SCP_CONNECTOR_MAX_BYTES} bytes"}])
    except requests.RequestException as exc:
        raise PartnerUnavailable(exc.__class__.__name__) from exc
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise SchemaDrift([{"row": None, "message": "the response is not JSON"}]) from exc
    rows = body.get("records") if isinstance(body, dict) else body
    if not isinstance(rows, list):
        raise SchemaDrift([{"row": None, "message": "expected a list of records"}])
    return rows


def file_source_allowed(source):
    """CSV drops are read only from SCP_CONNECTOR_FILES_DIR: a connector cannot be pointed at
    another tenant's files, the server's own, or a device."""
    root = Path(settings.SCP_CONNECTOR_FILES_DIR).resolve()
    return Path(source).resolve().is_relative_to(root)


def _csv_file(connector, types):
    if not file_source_allowed(connector.source):
        raise SchemaDrift([{"row": None, "message": "source refused: outside the connector files directory"}])
    try:
        with open(connector.source, newline="", encoding="utf-8-sig") as handle:
            rows = list(itertools.islice(csv.DictReader(handle), settings.SCP_CONNECTOR_MAX_ROWS + 1))
    except OSError as exc:
        raise PartnerUnavailable(f"file not readable: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SchemaDrift([{"row": None, "message": f"not a readable UTF-8 CSV file: {exc.__class__.__name__}"}]) from exc
    if len(rows) > settings.SCP_CONNECTOR_MAX_ROWS:
        raise SchemaDrift([{"row": None, "message": f"more than {settings.SCP_CONNECTOR_MAX_ROWS} rows"}])
    return [{k: cast_cell(v, types.get(k)) for k, v in row.items()} for row in rows]


ADAPTERS = {"json_https": _json_https, "csv_file": _csv_file}


def _validate(rows, schema):
    """All rows or none: each needs `external_id` and `person_id` plus contract-valid data."""
    validator = validator_for(schema)
    problems, clean = [], []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append({"row": index, "message": "not an object"})
            continue
        row = dict(row)
        external_id, person_id = row.pop("external_id", None), row.pop("person_id", None)
        if not external_id or not person_id:
            problems.append({"row": index, "message": "external_id and person_id are required"})
            continue
        problems += [{"row": index, **error} for error in validator.errors(row)]
        clean.append((str(external_id), str(person_id), row))
    if problems:
        raise SchemaDrift(problems)
    return clean


def connector_run(connector, *, now=None):
    """One scheduled pull; returns the connector's status afterwards."""
    now = now or timezone.now()
    integration = connector.integration
    denied = refusal(integration, write=True, at=now)
    if denied is not None:  # suspended, restricted, or outside its window: nothing is pulled
        return _paused(connector, denied, now)
    schema = integration.writable_record_types(connector.vertical.code).get(connector.record_type)
    if schema is None:
        return _drift(connector, SchemaDrift([{"row": None, "message": "record type not in the data contract"}]), now)
    adapter = ADAPTERS[connector.adapter]
    try:
        types = {k: v.get("type") for k, v in schema.get("properties", {}).items()}
        rows = adapter(connector) if connector.adapter == "json_https" else adapter(connector, types)
        clean = _validate(rows, schema)
    except PartnerUnavailable as exc:
        return _outage(connector, str(exc), now)
    except SchemaDrift as drift:
        return _drift(connector, drift, now)
    written = _write(connector, clean)
    Connector.objects.filter(pk=connector.pk).update(
        status=ConnectorStatus.HEALTHY, consecutive_failures=0, last_success_at=now, last_error="",
        next_run_at=now + datetime.timedelta(seconds=connector.every_seconds),
    )
    audit_record(event_type=AuditEvent.CONNECTOR_RUN, tenant=integration.tenant, integration=integration,
                 actor=f"connector:{connector.name}", verticals=[connector.vertical.code],
                 details={"connector": str(connector.pk), "rows": len(clean), "written": written})
    if written >= settings.SCP_ANALYZE_AFTER_ROWS:
        analyze(VerticalRecord)  # a bulk arrival: fresh planner statistics now (issue #12)
    return ConnectorStatus.HEALTHY


def _write(connector, clean):
    """Upsert by the partner's natural key, for persons of the tenant with consent now."""
    wanted = {uuid_or_none(pid) for _, pid, _ in clean} - {None}
    consenting = DataScope.of(connector.integration, connector.vertical).consenting(wanted)
    written = 0
    with transaction.atomic():
        for external_id, person_id, data in clean:
            if person_id not in consenting:
                continue
            key = f"conn:{connector.pk}:{external_id}"[:80]
            known = VerticalRecord.objects.filter(import_key=key).first()
            if known is not None and known.data == data and str(known.person_id) == person_id:
                continue  # unchanged since the last pull: nothing to write or announce
            record, created = VerticalRecord.objects.update_or_create(
                import_key=key,
                defaults={"person_id": person_id, "vertical": connector.vertical, "record_type": connector.record_type,
                          "data": data, "source_integration": connector.integration, "updated_at": timezone.now()},
            )
            emit(event_type=EventType.RECORD_CREATED if created else EventType.RECORD_UPDATED,
                 tenant=connector.integration.tenant, vertical=connector.vertical, person_id=record.person_id,
                 integration=connector.integration,
                 data={"record_id": str(record.pk), "person_id": person_id, "vertical": connector.vertical.code,
                       "record_type": connector.record_type})
            written += 1
    return written


def _paused(connector, denied, now):
    """The integration may not write now: the run is skipped and says why; it is tried again
    at the connector's interval (the integration may be reinstated)."""
    Connector.objects.filter(pk=connector.pk).update(
        last_error=f"{denied.code}: {denied.detail}"[:300], next_run_at=now + datetime.timedelta(seconds=connector.every_seconds),
    )
    audit_record(event_type=AuditEvent.CONNECTOR_RUN, result=AuditResult.DENIED, tenant=connector.integration.tenant,
                 integration=connector.integration, actor=f"connector:{connector.name}", verticals=[connector.vertical.code],
                 error_code=denied.code, details={"connector": str(connector.pk), "stopped": denied.code})
    return connector.status


def _audit_failure(connector, reason, kind):
    audit_record(event_type=AuditEvent.CONNECTOR_RUN, result=AuditResult.FAILURE, tenant=connector.integration.tenant,
                 integration=connector.integration, actor=f"connector:{connector.name}", verticals=[connector.vertical.code],
                 error_code=kind, details={"connector": str(connector.pk), "failure": kind, "reason": reason[:300]})


def _outage(connector, reason, now):
    _audit_failure(connector, reason, "partner_unavailable")
    failures = connector.consecutive_failures + 1
    delay = min(BACKOFF_BASE * (2 ** (failures - 1)), BACKOFF_MAX)
    Connector.objects.filter(pk=connector.pk).update(
        status=ConnectorStatus.DEGRADED, consecutive_failures=failures, last_error=reason[:300], next_run_at=now + delay,
    )
    return ConnectorStatus.DEGRADED


def _drift(connector, drift, now):
    _audit_failure(connector, str(drift), "schema_drift")
    integration = connector.integration
    incident_open(
        kind=IncidentKind.SCHEMA_DRIFT, severity=IncidentSeverity.HIGH,
        summary=f"connector {connector.name}: partner data no longer matches {integration.data_contract_ref}; nothing written",
        tenant=integration.tenant, integration=integration, details={"connector": str(connector.pk), "problems": drift.problems[:20]},
    )
    Connector.objects.filter(pk=connector.pk).update(
        status=ConnectorStatus.FAILING, consecutive_failures=connector.consecutive_failures + 1,
        last_error=str(drift)[:300], next_run_at=now + datetime.timedelta(seconds=connector.every_seconds),
    )
    if connector.status != ConnectorStatus.FAILING:  # told once when it starts failing, not per run
        notify(NotificationEvent.CONNECTOR_FAILING, integration=integration, key=f"{connector.pk}:{now.isoformat()}",
               recipients=tenant_admins(integration.tenant_id),
               detail=f"Connector {connector.name} failed: {str(drift)[:300]}. Nothing was written.")
    return ConnectorStatus.FAILING


def run_due(now=None):
    """Run every due connector; one that fails unexpectedly is marked failing (audited, retried
    at its interval) and never stops the others."""
    now = now or timezone.now()
    outcome = {}
    for connector in Connector.objects.select_related("integration__tenant", "vertical").filter(next_run_at__lte=now):
        try:
            outcome[str(connector.pk)] = connector_run(connector, now=now)
        except Exception as exc:  # noqa: BLE001 -- isolate each connector; recorded below
            logger.exception("connector %s failed", connector.pk)
            outcome[str(connector.pk)] = _drift(connector, SchemaDrift([{"row": None, "message": f"{exc.__class__.__name__}: {exc}"[:300]}]), now)
    return outcome
