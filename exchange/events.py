"""Domain events (spec §5.3): written to the outbox in the caller's transaction, fanned out to
matching subscriptions as Delivery rows, and shown to partners only under the policy in force
when they are delivered or pulled (tenant, vertical, consent)."""
from .models import Delivery, Event, EventType, Subscription
from .scope import DataScope, refusal

_RECORD_EVENTS = {EventType.RECORD_CREATED, EventType.RECORD_UPDATED, EventType.RECORDS_IMPORTED}


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


def visible_body(event, integration):
    """The body of `event` as `integration` may receive it now (webhook delivery or pull feed),
    or None when it may not: the full check, through the integration's DataScope, at delivery
    or pull time: scope, the integration serving now (state and window), consent in effect now
    for events about persons (a chunk of imported records keeps only those whose person
    consents now), and for record events the contract's record read rules. A consent
    withdrawal itself is announced, with no personal data beyond the person's id."""
    if event.event_type == EventType.INTEGRATION_STATUS_CHANGED:
        return body_of(event) if _in_scope(event, integration) else None
    if refusal(integration) is not None or not _in_scope(event, integration):
        return None
    data_scope = DataScope.of(integration, event.vertical)
    if event.event_type in _RECORD_EVENTS:
        rule = data_scope.record_rules.get(event.data.get("record_type"))
        if rule is None or not (rule["other_writers"] or event.integration_id == integration.pk):
            return None
    if event.event_type == EventType.RECORDS_IMPORTED:
        records = event.data.get("records", [])
        consenting = data_scope.consenting({r["person_id"] for r in records})
        kept = [r for r in records if r["person_id"] in consenting]
        return body_of(event, data={**event.data, "records": kept}) if kept else None
    if event.person_id and event.event_type != EventType.CONSENT_WITHDRAWN and not data_scope.has_consent(event.person_id):
        return None
    return body_of(event)


def body_of(event, data=None):
    """The JSON body of a webhook delivery, and of an event in the pull feed."""
    return {
        "type": event.event_type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data if data is None else data,
    }
