"""Consent changes (spec §4.3): the governed write to the SCP core data the layer guards."""
from django.db import transaction
from django.utils import timezone

from audit.services import AuditEvent, audit_record
from scp_core.errors import ValidationFailedError
from scp_core.models import Consent, ConsentStatus, Purpose

from .permissions import require
from .signals import consent_withdrawn


def consent_record(*, person, vertical, status, actor, effective_at=None, purposes=None, request_id=""):
    """Record a consent change of one person for one vertical, optionally naming the purposes
    (codes of the tenant's vocabulary) it covers; `purposes=None` covers every purpose.

    It is read by every later request from the database (no cache), so a withdrawal that
    takes effect now blocks the very next request, batch row or webhook delivery: it is in
    force from `effective_at` or from its commit, whichever is later.
    """
    require(actor, "change-consent", tenant=person.tenant)
    if purposes is not None and not purposes:
        raise ValidationFailedError("A consent names at least one purpose, or none at all (every purpose).",
                                    errors=[{"field": "purposes", "message": "empty"}])
    unknown = sorted(set(purposes or ()) - set(Purpose.objects.filter(tenant=person.tenant_id).values_list("code", flat=True)))
    if unknown:
        raise ValidationFailedError("A consent names purposes of the person's tenant only.",
                                    errors=[{"field": "purposes", "message": f"unknown purpose: {code}"} for code in unknown])
    now = timezone.now()
    effective_at = effective_at or now
    with transaction.atomic():
        consent = Consent.objects.select_for_update().filter(person=person, vertical=vertical).first()
        if consent is None:
            prior = ""
            consent = Consent(person=person, vertical=vertical)
        else:
            # What is in force right now becomes the prior status of this change.
            prior = consent.status if consent.effective_at <= now else consent.prior_status
        # A grant that names fewer purposes than before withdraws the others: told like a withdrawal.
        narrowed = []
        if status == ConsentStatus.GRANTED and prior == ConsentStatus.GRANTED and purposes:
            covered = set(consent.purposes) or set(Purpose.objects.filter(tenant=person.tenant_id).values_list("code", flat=True))
            narrowed = sorted(covered - set(purposes))
        consent.status = status
        consent.prior_status = prior
        consent.effective_at = effective_at
        consent.recorded_at = now
        consent.purpose_codes = Consent.purpose_codes_of(purposes or ())
        consent._change_reason = f"{status} by {actor.get_username()}"
        consent._history_user = actor
        consent.save()
        audit_record(
            event_type=AuditEvent.CONSENT_CHANGED,
            tenant=person.tenant,
            actor_user=actor,
            request_id=request_id,
            verticals=[vertical.code],
            details={
                "person_id": str(person.pk),
                "status": status,
                "prior_status": prior,
                "effective_at": effective_at.isoformat(),
                "purposes": consent.purposes,
            },
        )
        if status == ConsentStatus.WITHDRAWN:  # announced in the same transaction (exchange's outbox)
            consent_withdrawn.send(sender=Consent, person=person, vertical=vertical, effective_at=effective_at)
        elif narrowed:  # to the integrations of the purposes no longer covered only
            consent_withdrawn.send(sender=Consent, person=person, vertical=vertical, effective_at=effective_at,
                                   purposes=narrowed)
    return consent


__all__ = ["ConsentStatus", "consent_record"]
