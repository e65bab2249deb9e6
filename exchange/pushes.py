"""Partner pushes (spec §5.1 push): contract validation, tenant and consent checks, and
idempotent replies, all before anything is written; the write is one transaction."""
import datetime
import hashlib

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import IncidentKind
from scp_core.models import Person, Vertical, VerticalRecord
from scp_core.errors import ApiError

from .events import emit
from .models import EventType, IdempotencyRecord
from .policy import mis_scoped
from .scope import DataScope
from .validation import validator_for


def contract_errors(data, schema):
    """The JSON Schema violations of `data`, as problem `errors` entries (empty when valid)."""
    return validator_for(schema).errors(data)


def validate_against_contract(integration, vertical_code, record_type, data):
    """Raise 422 contract_violation unless the record type and its data are what the contract allows."""
    schema = integration.writable_record_types(vertical_code).get(record_type)
    if schema is None:
        raise ApiError(422, "contract_violation", f"Record type '{record_type}' is not in the data contract for '{vertical_code}'.",
                       errors=[{"field": "record_type", "message": "not allowed by the data contract"}])
    errors = contract_errors(data, schema)
    if errors:
        raise ApiError(422, "contract_violation", "The record does not match the data contract; nothing was written.", errors=errors)


def _replay(integration, key, request_hash):
    ttl = datetime.timedelta(hours=settings.SCP_IDEMPOTENCY_TTL_HOURS)
    earlier = IdempotencyRecord.objects.filter(integration=integration, key=key, created_at__gte=timezone.now() - ttl).first()
    if earlier is None:
        return None
    if earlier.request_hash != request_hash:
        raise ApiError(409, "idempotency_conflict", "This Idempotency-Key was used with a different body.")
    return earlier.status_code, earlier.response_body


def push_record(*, integration, idempotency_key, person_id, vertical_code, record_type, data, raw_body, on_details,
                request_id=""):
    """Write one record pushed by a partner; returns (status, body)."""
    if len(idempotency_key) > 200:
        raise ApiError(422, "validation_error", "Idempotency-Key is too long (200 characters at most).")
    request_hash = hashlib.sha256(raw_body).hexdigest()
    if idempotency_key:
        replay = _replay(integration, idempotency_key, request_hash)
        if replay is not None:
            on_details(idempotency={"key": idempotency_key, "replayed": True})
            return replay
    validate_against_contract(integration, vertical_code, record_type, data)
    data_scope = DataScope.of(integration, vertical_code)
    person = data_scope.tenant_persons().select_related("tenant").filter(pk=person_id).first()
    if person is None:
        if Person.objects.filter(pk=person_id).exists():  # another tenant's person: mis-scoped (§10)
            mis_scoped(integration, request_id, f"pushed a record for person {person_id} of another tenant",
                       kind=IncidentKind.FOREIGN_OBJECT)
        raise ApiError(404, "not_found", "No such person in this tenant.")
    consented = data_scope.has_consent(person.pk)
    on_details(consent={"checked": 1, "allowed": int(consented)}, record_type=record_type)
    if not consented:
        raise ApiError(403, "consent_denied", "The person's consent for this vertical is not in effect.")
    vertical = Vertical.objects.get(code=vertical_code)
    try:
        with transaction.atomic():
            record = VerticalRecord.objects.create(
                person=person, vertical=vertical, record_type=record_type, data=data, source_integration=integration
            )
            body = {
                "id": str(record.id), "person_id": str(person.pk), "vertical": vertical_code,
                "record_type": record_type, "data": data,
                "created_at": record.created_at.isoformat().replace("+00:00", "Z"),
                "updated_at": record.updated_at.isoformat().replace("+00:00", "Z"),
            }
            emit(
                event_type=EventType.RECORD_CREATED, tenant=person.tenant, vertical=vertical, person_id=person.pk,
                integration=integration,
                data={"record_id": body["id"], "person_id": str(person.pk), "vertical": vertical_code, "record_type": record_type},
            )
            if idempotency_key:
                IdempotencyRecord.objects.create(
                    integration=integration, key=idempotency_key, request_hash=request_hash,
                    status_code=201, response_body=body,
                )
    except IntegrityError:
        # A concurrent request with the same key won: answer as it did (or 409 if it differs).
        replay = _replay(integration, idempotency_key, request_hash)
        if replay is None:
            raise
        return replay
    on_details(idempotency={"key": idempotency_key, "replayed": False} if idempotency_key else {}, record_id=body["id"])
    return 201, body


def expire_idempotency_keys(now=None):
    cutoff = (now or timezone.now()) - datetime.timedelta(hours=settings.SCP_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
