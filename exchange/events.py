"""Domain events (spec §5.3): written to the outbox in the caller's transaction, fanned out to
matching subscriptions as Delivery rows, and shown to partners only under the policy in force
when they are delivered or pulled (tenant, vertical, consent)."""
from registry.models import IntegrationStatus
from scp_core.models import Consent

from .models import Delivery, Event, EventType, Subscription

_SERVING = {IntegrationStatus.ACTIVE, IntegrationStatus.RESTRICTED, IntegrationStatus.DEPRECATED}


def emit(*, event_type, tenant, data, vertical=None, person_id=None, integration=None):
    """Record an event in the outbox (call inside the transaction of the change)."""
    event = Event.objects.create(
        event_type=event_type, tenant=tenant, vertical=vertical, person_id=person_id, integration=integration, data=data
    )
    subscriptions = Subscription.objects.filter(active=True, integration__tenant=tenant).select_related("integration")
    deliveries = [
        Delivery(event=event, subscription=s)
        for s in subscriptions
        if event_type in s.event_types and _in_scope(event, s.integration)
    ]
    Delivery.objects.bulk_create(deliveries)
    if deliveries:
        from .tasks import deliver_webhook_task, enqueue_after_commit

        enqueue_after_commit(deliver_webhook_task, *(d.id for d in deliveries))
    return event


def _in_scope(event, integration):
    """Whether the event concerns what the integration may see, before consent."""
    if event.tenant_id != integration.tenant_id:
        return False
    if event.event_type == EventType.INTEGRATION_STATUS_CHANGED:
        return event.integration_id == integration.pk
    if event.vertical_id is None:
        return False
    return event.vertical.code in integration.read_scope or event.vertical.code in integration.vertical_codes()


def visible_to(event, integration):
    """The full check, at delivery or pull time: scope, the integration serving, and consent
    in effect now for events about a person (a consent withdrawal itself is announced, with
    no personal data beyond the person's id)."""
    if integration.status not in _SERVING and event.event_type != EventType.INTEGRATION_STATUS_CHANGED:
        return False
    if not _in_scope(event, integration):
        return False
    if event.person_id and event.event_type != EventType.CONSENT_WITHDRAWN:
        return Consent.objects.in_effect(event.vertical).filter(person_id=event.person_id).exists()
    return True


def body_of(event):
    """The JSON body of a webhook delivery, and of an event in the pull feed."""
    return {
        "type": event.event_type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data,
    }
