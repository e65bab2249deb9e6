"""Whether an integration holds a current data-sharing agreement (issue #14 item 4): the rule the
umbrella authority's sign-off is gated on, and what the screens show beside the request.

Reads only, so that `lifecycle.services` can ask it without importing the writes of
`lifecycle.agreements` (which suspend integrations through those services).

An agreement is current from its `effective_from` until the start of its `expires_on` (in the
portal's time zone); the latest uploaded one is the integration's agreement (a renewal is a new
row), and it must cover the integration's declared purpose and every field it would read.
"""
import datetime

from django.utils import timezone

from scp_core.errors import ValidationFailedError


def agreement_end(expires_on):
    """The moment an agreement expiring on `expires_on` stops covering anything."""
    return timezone.make_aware(datetime.datetime.combine(expires_on, datetime.time.min))


def latest_agreement(integration):
    """The integration's agreement: the one uploaded last (None when there is none)."""
    return integration.agreements.select_related("uploaded_by").order_by("-uploaded_at", "-pk").first()


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
    purpose and every field it would read: no sign-off without one."""
    gaps = agreement_gaps(integration, latest_agreement(integration), at)
    if gaps:
        raise ValidationFailedError(
            "This integration cannot be approved without a current data-sharing agreement covering its purpose "
            "and every field it would read: " + " ".join(gaps),
            errors=[{"field": "agreement", "message": gap} for gap in gaps],
        )
