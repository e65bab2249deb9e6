"""Warnings that depend on the date: an integration nearing its `active_until` is announced 30
and 7 days before to its partner's contacts and its tenant's admins (issue #14)."""
import datetime

from registry.models import Integration

from .models import NotificationEvent
from .notifications import notify, partner_contacts, tenant_admins

WARN_DAYS = (30, 7)


def sweep(now):
    """Send the warnings now due; each (integration, end date, warning) is sent once."""
    made = 0
    ending = Integration.objects.serving().filter(
        active_until__gt=now, active_until__lte=now + datetime.timedelta(days=max(WARN_DAYS)),
    ).select_related("tenant", "partner")
    for integration in ending:
        left = integration.active_until - now
        # The nearest warning only: an integration first seen 5 days before its end gets the
        # 7-day warning, not also the 30-day one.
        days = min(d for d in WARN_DAYS if left <= datetime.timedelta(days=d))
        made += len(notify(
            NotificationEvent.EXPIRING, integration=integration,
            key=f"{integration.pk}:{days}:{integration.active_until.isoformat()}",
            recipients=partner_contacts(integration.partner) + tenant_admins(integration.tenant_id),
            detail=f"Its access ends on {integration.active_until:%Y-%m-%d %H:%M} UTC; a renewal needs a new request.",
            days=days,
        ))
    return made
