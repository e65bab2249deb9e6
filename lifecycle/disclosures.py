"""Reading the disclosure ledger (issue #13): the disclosures of one person, for the tenant's
portal screen and subject-access report, the auditor, and SCP's own citizen app; and the
embargo of an investigation's disclosures.

What a viewer sees: every disclosure of the person, newest first, except that disclosures to
an integration under embargo (until its release date, set by the umbrella authority) are left
out for everyone but the auditor, and counted as `withheld`. Every look is audited."""
from dataclasses import dataclass

import datetime

from django.db import transaction
from django.db.models import Count, Func, IntegerField, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from audit import ledger
from audit.models import AuditEvent, Disclosure
from audit.services import audit_record
from registry.models import Integration
from scp_core.errors import ValidationFailedError
from scp_core.models import Purpose

from .permissions import require
from .services import history_reason
from .roles import roles_of

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
REPORT_LIMIT = 10_000  # a subject-access report lists up to this many disclosures at once


class CitizenApp:
    """The platform client `scp-citizen-app`: it may read a person's disclosures, nothing else;
    it sees what the person's own report shows (embargoes withheld)."""

    is_authenticated = True
    is_active = True
    username = "scp-citizen-app"

    def get_username(self):
        return self.username


CITIZEN_APP = CitizenApp()


@dataclass
class DisclosurePage:
    entries: list       # [dict] newest first
    withheld: int       # embargoed disclosures left out
    next_cursor: int | None


def person_disclosures(*, viewer, person, cursor=None, limit=PAGE_SIZE, via="portal", request_id=""):
    """A page of `person`'s disclosures as `viewer` may see them (a staff user, or CITIZEN_APP),
    audited. `cursor`: the last entry's id of the previous page."""
    sees_embargoed = False
    if viewer is not CITIZEN_APP:
        require(viewer, "read-disclosures", tenant=person.tenant)
        # The auditor sees an investigation's disclosures at once, but never in the report
        # handed to the person.
        sees_embargoed = roles_of(viewer).is_auditor and via != "report"
    limit = min(max(int(limit), 1), REPORT_LIMIT if via == "report" else MAX_PAGE_SIZE)
    now = timezone.now()
    found = ledger.naming(person.pk, person.tenant_id)
    embargoed = found.filter(integration__embargo_until__gt=now)
    withheld = 0 if sees_embargoed else embargoed.count()
    shown = found if sees_embargoed else found.exclude(pk__in=embargoed.values("pk"))
    if cursor:
        shown = shown.filter(pk__lt=cursor)
    rows = list(shown.select_related("integration__partner").order_by("-pk")[: limit + 1])
    entries = [_entry(d, now) for d in rows[:limit]]
    audit_record(
        event_type=AuditEvent.DISCLOSURES_VIEWED, tenant=person.tenant,
        actor_user=viewer if viewer is not CITIZEN_APP else None, actor=viewer.get_username(), request_id=request_id,
        details={"person_id": str(person.pk), "via": via, "entries": len(entries), "withheld": withheld,
                 "embargoed_shown": sees_embargoed},
    )
    return DisclosurePage(entries=entries, withheld=withheld, next_cursor=rows[limit - 1].pk if len(rows) > limit else None)


def _entry(disclosure, now):
    integration = disclosure.integration
    return {
        "id": disclosure.pk,
        "disclosed_at": disclosure.disclosed_at,
        "integration_id": str(disclosure.integration_id),
        "integration_name": integration.integration_name,
        "partner": disclosure.partner,
        "partner_name": integration.partner.name,
        "vertical": disclosure.vertical,
        "purpose_code": disclosure.purpose_code,
        "channel": disclosure.channel,
        "fields": disclosure.fields,
        "contract_version": disclosure.contract_version,
        "audit_record_id": disclosure.record_id,
        "embargoed_until": integration.embargo_until if integration.embargo_until and integration.embargo_until > now else None,
    }


def integration_embargo(*, integration, actor, until, reason, request_id=""):
    """Withhold the disclosures to an investigation from the person's report until `until`
    (the umbrella authority's recorded approval; `until=None` lifts the embargo)."""
    require(actor, "embargo", integration)
    if not reason.strip():
        raise ValidationFailedError("An embargo needs its reason.", errors=[{"field": "reason", "message": "required"}])
    if until is not None:
        purpose = Purpose.objects.filter(tenant_id=integration.tenant_id, code=integration.purpose_code).first()
        if purpose is None or not purpose.investigation:
            raise ValidationFailedError(
                "Only disclosures to an investigation may be embargoed.",
                errors=[{"field": "purpose_code", "message": f"{integration.purpose_code or 'none'} is not an investigation"}])
        if until <= timezone.now():
            raise ValidationFailedError("The release date must be in the future.",
                                        errors=[{"field": "until", "message": "in the past"}])
    with transaction.atomic():
        locked = Integration.objects.select_for_update().get(pk=integration.pk)
        before = locked.embargo_until
        locked.embargo_until = until
        locked._change_reason = history_reason(f"embargo until {until.isoformat() if until else 'lifted'}: {reason}")
        locked._history_user = actor
        locked.save(update_fields=["embargo_until"])
        audit_record(
            event_type=AuditEvent.INTEGRATION_EMBARGOED, tenant=locked.tenant, integration=locked, actor_user=actor,
            request_id=request_id,
            details={"until": until.isoformat() if until else None, "before": before.isoformat() if before else None,
                     "reason": reason},
        )
    return locked


class _PersonsIn(Func):
    """The number of persons in a ledger row."""

    function = "jsonb_array_length"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, function="json_array_length", **extra)


def partner_trail(*, actor, days=30):
    """What the integrations `actor` may see received over the last `days` days, per day,
    integration, vertical, purpose and channel: releases and persons (issue #13), so that a
    partner can prove its own compliance. Partner users see their partner's integrations."""
    visible = Integration.objects.visible_to(roles_of(actor)).values("pk")
    since = timezone.now() - datetime.timedelta(days=days)
    return list(
        Disclosure.objects.filter(integration_id__in=visible, disclosed_at__gte=since)
        .annotate(day=TruncDate("disclosed_at"))
        .values("day", "integration__integration_name", "partner", "vertical", "purpose_code", "channel")
        .annotate(releases=Count("id"), persons=Sum(_PersonsIn("person_ids")))
        .order_by("-day", "integration__integration_name", "vertical", "channel")
    )
