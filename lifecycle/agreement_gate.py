"""Whether an integration holds a current data-sharing agreement (issue #14 item 4): the rule the
umbrella authority's sign-off and the activation are gated on, which agreement is in force, and
what the screens show beside the request.

Reads only, so that `lifecycle.services` can ask it without importing the writes of
`lifecycle.agreements` (which suspend integrations through those services).

An agreement is current from its `effective_from` until the start of its `expires_on` (in the
portal's time zone), and it must cover the integration's declared purpose and every field it
would read. Before the sign-off the latest upload is the one the umbrella authority approves;
the approval records it (`Integration.approved_agreement`), and from then on it stays in force
until the umbrella authority accepts a later upload: a renewal waits for acceptance.
"""
import datetime

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from registry.models import DataSharingAgreement, IntegrationStatus
from scp_core.errors import ValidationFailedError

S = IntegrationStatus
# Before these states are left, the latest upload is the candidate for the sign-off.
BEFORE_SIGN_OFF = frozenset({S.DRAFT, S.REQUESTED, S.REVIEWED})
# After the sign-off, and while the integration may still run again: a renewal may be accepted.
ACCEPTING = frozenset({S.APPROVED, S.ACTIVE, S.RESTRICTED, S.SUSPENDED, S.DEPRECATED})


def agreement_end(expires_on):
    """The moment an agreement expiring on `expires_on` stops covering anything."""
    return timezone.make_aware(datetime.datetime.combine(expires_on, datetime.time.min))


def latest_agreement(integration):
    """The agreement uploaded last (None when there is none)."""
    return integration.agreements.select_related("uploaded_by").order_by("-uploaded_at", "-pk").first()


def agreement_in_force(integration):
    """The integration's agreement: before the sign-off the latest upload (the one to approve),
    after it the approved or last accepted one (None when there is none)."""
    if integration.status in BEFORE_SIGN_OFF:
        return latest_agreement(integration)
    return integration.approved_agreement


def pending_agreements(integration):
    """Uploads after the sign-off that wait for the umbrella authority's acceptance, newest
    first: those uploaded after the agreement in force (an empty queryset before the sign-off)."""
    agreements = integration.agreements.select_related("uploaded_by").order_by("-uploaded_at", "-pk")
    if integration.status in BEFORE_SIGN_OFF:
        return agreements.none()
    approved = integration.approved_agreement
    if approved is None:  # signed off before agreements existed: every upload waits
        return agreements
    return agreements.filter(Q(uploaded_at__gt=approved.uploaded_at) | Q(uploaded_at=approved.uploaded_at, pk__gt=approved.pk))


def fields_read(integration):
    """What the integration would read, named as an agreement lists them: person fields, and
    record fields as "record_type.field". Once activated, its fixed scope; before, what the
    contract and the reviewers' narrowing give."""
    persons = integration.read_scope or integration.effective_read_fields()
    records = integration.record_scope if integration.read_scope else integration.effective_record_read()
    return {f for fields in persons.values() for f in fields} | {
        f"{record_type}.{field}" for types in records.values() for record_type, rule in types.items()
        for field in rule.get("fields", {})
    }


def awaiting_acceptance(integrations):
    """Those of `integrations` (a queryset) with an upload after the sign-off that waits for the
    umbrella authority's acceptance (what `pending_agreements` lists, asked of many at once)."""
    approved_at = OuterRef("approved_agreement__uploaded_at")
    later = DataSharingAgreement.objects.filter(integration=OuterRef("pk")).filter(
        Q(uploaded_at__gt=approved_at) | Q(uploaded_at=approved_at, pk__gt=OuterRef("approved_agreement_id")))
    any_upload = DataSharingAgreement.objects.filter(integration=OuterRef("pk"))
    return integrations.filter(status__in=ACCEPTING).filter(
        Exists(later) | Q(approved_agreement__isnull=True) & Exists(any_upload))


def agreement_gaps(integration, agreement, at=None):
    """Why `agreement` does not let `integration` be approved now (sentences; empty: it does)."""
    if agreement is None:
        return ["No data-sharing agreement has been uploaded."]
    today = timezone.localdate(at or timezone.now())
    gaps = []
    if agreement.effective_from > today:
        gaps.append(f"The agreement takes effect only on {agreement.effective_from.isoformat()}.")
    if agreement.expires_on <= today:
        gaps.append(f"The agreement expired on {agreement.expires_on.isoformat()}.")
    if integration.purpose_code not in agreement.purposes:
        gaps.append(f"The agreement does not cover the purpose '{integration.purpose_code}'.")
    uncovered = sorted(fields_read(integration) - set(agreement.fields))
    if uncovered:
        gaps.append(f"The agreement does not cover fields the integration would read: {', '.join(uncovered)}.")
    return gaps


def require_current_agreement(integration, at=None):
    """Refuse (422) unless the integration's latest agreement is in effect and covers its
    purpose and every field it would read: no sign-off without one. Returns that agreement,
    the one the sign-off approves."""
    agreement = latest_agreement(integration)
    _refuse_gaps(agreement_gaps(integration, agreement, at), "approved")
    return agreement


def require_approved_agreement(integration, at=None):
    """Refuse (422) unless the agreement the sign-off approved (or the umbrella authority
    accepted since) is still in effect and covers the purpose and every field the integration
    would read: no activation on an agreement that lapsed or no longer covers it."""
    agreement = integration.approved_agreement
    gaps = (agreement_gaps(integration, agreement, at) if agreement is not None
            else ["No data-sharing agreement was approved or accepted."])
    _refuse_gaps(gaps, "activated")
    return agreement


def _refuse_gaps(gaps, what):
    if gaps:
        raise ValidationFailedError(
            f"This integration cannot be {what} without a current data-sharing agreement covering its purpose "
            "and every field it would read: " + " ".join(gaps),
            errors=[{"field": "agreement", "message": gap} for gap in gaps],
        )
