"""Domain events (spec §5.3): written to the outbox in the caller's transaction, fanned out to
matching subscriptions as Delivery rows, and shown to partners only under the policy in force
when they are delivered or pulled (tenant, vertical, consent)."""
from audit import ledger
from registry.models import Integration

from .models import Delivery, Event, EventType, Subscription
from .scope import DataScope, refusal

_RECORD_EVENTS = {EventType.RECORD_CREATED, EventType.RECORD_UPDATED, EventType.RECORDS_IMPORTED}


def emit(*, event_type, tenant, data, vertical=None, person_id=None, integration=None):
    """Record an event in the outbox (call inside the transaction of the change)."""
    event = Event.objects.create(
        event_type=event_type, tenant=tenant, vertical=vertical, person_id=person_id, integration=integration, data=data
    )
    subscriptions = Subscription.objects.filter(active=True, integration__tenant=tenant).select_related("integration")
    # A withdrawal is told only to the integrations that received the person (the ledger).
    told = _knew_person(event) if event_type == EventType.CONSENT_WITHDRAWN else None
    deliveries = [
        Delivery(event=event, subscription=s)
        for s in subscriptions
        if event_type in s.event_types and _in_scope(event, s.integration)
        and (told is None or s.integration_id in told)
    ]
    Delivery.objects.bulk_create(deliveries)
    if len(deliveries) == 1:
        from .tasks import deliver_webhook_task, enqueue_after_commit

        enqueue_after_commit(deliver_webhook_task, deliveries[0].id)
    elif deliveries:  # its fan-out in one task: claimed by one statement, sent concurrently
        from .tasks import deliver_webhooks_task, enqueue_batch_after_commit

        enqueue_batch_after_commit(deliver_webhooks_task, [d.id for d in deliveries])
    return event


def _knew_person(event):
    """The integrations whose ledger shows they received the event's person in its vertical
    (for a narrowed consent, those of the withdrawn purposes only)."""
    received = ledger.recipients(event.person_id, event.tenant_id, event.vertical.code)
    purposes = event.data.get("purposes")
    if purposes and received:
        return set(Integration.objects.filter(pk__in=received, purpose_code__in=purposes).values_list("pk", flat=True))
    return received


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
    withdrawal itself is announced, with no personal data beyond the person's id, and only to
    integrations that received the person (issue #13: the disclosure ledger says which)."""
    return visible_bodies([(event, integration)])[0]


def visible_bodies(pairs):
    """visible_body of each (event, integration) of `pairs`, in order, with one consent query
    per integration and vertical for all of them (a worker's batch of deliveries)."""
    checks, asked = [], {}
    for event, integration in pairs:
        check = _before_consent(event, integration)
        if isinstance(check, DataScope):
            persons = _persons_of(event)
            asked.setdefault((integration.pk, check.vertical), (check, set()))[1].update(persons)
        checks.append(check)
    consenting = {key: scope.consenting(persons) for key, (scope, persons) in asked.items()}
    bodies = []
    for (event, integration), check in zip(pairs, checks):
        if not isinstance(check, DataScope):
            bodies.append(check)
            continue
        allowed = consenting[(integration.pk, check.vertical)]
        if event.event_type == EventType.RECORDS_IMPORTED:
            kept = [r for r in event.data.get("records", []) if r["person_id"] in allowed]
            bodies.append(body_of(event, data={**event.data, "records": kept}) if kept else None)
        else:
            bodies.append(body_of(event) if str(event.person_id) in allowed else None)
    return bodies


def _before_consent(event, integration):
    """Everything visible_body decides before consent: the body, or None, when that settles
    it; else the DataScope in which the event's persons must consent now."""
    if event.event_type == EventType.INTEGRATION_STATUS_CHANGED:
        return body_of(event) if _in_scope(event, integration) else None
    if refusal(integration) is not None or not _in_scope(event, integration):
        return None
    if event.event_type == EventType.CONSENT_WITHDRAWN and integration.pk not in _knew_person(event):
        return None  # it never received the person: it learns nothing of them
    data_scope = DataScope.of(integration, event.vertical)
    if event.event_type in _RECORD_EVENTS:
        rule = data_scope.record_rules.get(event.data.get("record_type"))
        if rule is None or not (rule["other_writers"] or event.integration_id == integration.pk):
            return None
    if event.event_type == EventType.RECORDS_IMPORTED or (event.person_id and event.event_type != EventType.CONSENT_WITHDRAWN):
        return data_scope
    return body_of(event)


def _persons_of(event):
    """The persons whose consent the event's body needs (as strings)."""
    if event.event_type == EventType.RECORDS_IMPORTED:
        return {r["person_id"] for r in event.data.get("records", [])}
    return {str(event.person_id)}


def release_of(event, body, integration, channel):
    """The disclosure ledger entry of giving `body` (visible_body's) of `event` to
    `integration`, or None when it names no person. An event body names persons and record ids
    only, never their data; what it discloses is that."""
    data = body["data"]
    if event.event_type == EventType.RECORDS_IMPORTED:
        person_ids = sorted({r["person_id"] for r in data.get("records", [])})
        fields = {"records.person_id": "plain", "records.record_id": "plain", "record_type": "plain"}
    elif event.person_id:
        person_ids = [str(event.person_id)]
        fields = {name: "plain" for name in data if name != "vertical"}
    else:
        return None
    return DataScope.of(integration, event.vertical).release(channel, person_ids, fields)


def merged(releases):
    """Releases of the same kind (vertical, channel, fields) as one ledger entry each."""
    kinds = {}
    for release in releases:
        key = (release["vertical"], release["channel"], tuple(sorted(release["fields"].items())))
        if key in kinds:
            kinds[key]["person_ids"] = sorted(set(kinds[key]["person_ids"]) | set(release["person_ids"]))
        else:
            kinds[key] = {**release, "person_ids": sorted(set(release["person_ids"]))}
    return list(kinds.values())


def body_of(event, data=None):
    """The JSON body of a webhook delivery, and of an event in the pull feed."""
    return {
        "type": event.event_type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data if data is None else data,
    }
