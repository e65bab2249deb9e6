"""Writes to the shared registry (spec §4.5): revising and vetting integration templates."""
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import AuditEvent, audit_record
from registry.models import IntegrationTemplate
from scp_core.errors import InvalidTransitionError

from .permissions import require


def template_revise(*, template, actor, name=None, purpose=None, purpose_code=None, data_contract=None, verticals=None,
                    request_id=""):
    """A change to a template is a new, not yet vetted version; integrations keep theirs."""
    require(actor, "revise-template")
    with transaction.atomic():
        latest = IntegrationTemplate.objects.filter(slug=template.slug).aggregate(v=Max("version"))["v"]
        revised = IntegrationTemplate.objects.create(
            slug=template.slug,
            version=latest + 1,
            name=name or template.name,
            purpose=purpose or template.purpose,
            purpose_code=purpose_code or template.purpose_code,
            data_contract=data_contract or template.data_contract,
        )
        revised.verticals.set(verticals if verticals is not None else template.verticals.all())
        audit_record(
            event_type=AuditEvent.TEMPLATE_CHANGED,
            actor_user=actor,
            request_id=request_id,
            verticals=[v.code for v in revised.verticals.all()],
            details={"template": revised.slug, "version": revised.version, "from_version": template.version,
                     "data_contract": revised.data_contract.ref},
        )
    return revised


def template_vet(*, template, actor, request_id=""):
    """The umbrella authority vets a template version, making it usable by tenants."""
    require(actor, "vet-template")
    if template.is_vetted:
        raise InvalidTransitionError(f"Template {template} is already vetted.")
    with transaction.atomic():
        template.vetted_at = timezone.now()
        template.save(update_fields=["vetted_at"])
        audit_record(
            event_type=AuditEvent.TEMPLATE_CHANGED,
            actor_user=actor,
            request_id=request_id,
            verticals=[v.code for v in template.verticals.all()],
            details={"template": template.slug, "version": template.version, "vetted": True},
        )
    return template
