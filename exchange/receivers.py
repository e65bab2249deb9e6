"""The exchange's side of governance signals (lifecycle.signals): each becomes an event in
the outbox, in the transaction of the change, fanned out to the subscriptions that may see it."""
from django.dispatch import receiver

from lifecycle.signals import consent_withdrawn, integration_status_changed

from .events import emit
from .models import EventType


@receiver(integration_status_changed)
def _integration_status_changed(sender, *, integration, before, after, **kwargs):
    emit(
        event_type=EventType.INTEGRATION_STATUS_CHANGED, tenant=integration.tenant, integration=integration,
        data={"integration_id": str(integration.pk), "before": before, "after": after},
    )


@receiver(consent_withdrawn)
def _consent_withdrawn(sender, *, person, vertical, effective_at, purposes=None, **kwargs):
    """A withdrawal, or a narrowing of the purposes a grant covers (`purposes`: those withdrawn)."""
    data = {"person_id": str(person.pk), "vertical": vertical.code, "effective_at": effective_at.isoformat()}
    emit(event_type=EventType.CONSENT_WITHDRAWN, tenant=person.tenant, vertical=vertical, person_id=person.pk,
         data={**data, "purposes": purposes} if purposes else data)
