"""Webhook delivery rate of one Celery worker process: signed deliveries (consent and scope
re-checked, HMAC signature, HTTP POST to a real nginx receiver, attempt row) against Celery
no-op tasks through the same broker and worker. Markers before and after each batch record
when the worker reached them, so worker start-up is not counted."""
import time
import uuid

import redis
from django.conf import settings
from django.utils import timezone

from exchange.models import Delivery, DeliveryStatus, Event, EventType, Subscription
from exchange.tasks import deliver_webhook_task
from exchange.webhooks import new_secret
from scp_core.models import Consent, Person

from . import stack
from .tasks import mark_task, noop_task


def _deliveries(integration, vertical, receiver_url, count):
    subscription = Subscription.objects.create(integration=integration, url=receiver_url, secret=new_secret(),
                                               event_types=[EventType.RECORD_CREATED])
    persons = list(Person.objects.filter(tenant=integration.tenant, pk__in=Consent.objects.in_effect(vertical)
                                         .values("person_id")).values_list("pk", flat=True)[:count])
    events = Event.objects.bulk_create([
        Event(event_type=EventType.RECORD_CREATED, tenant=integration.tenant, vertical=vertical,
              person_id=persons[i % len(persons)], data={"record_id": str(uuid.uuid4()), "person_id": str(persons[i % len(persons)])})
        for i in range(count)
    ])
    deliveries = Delivery.objects.bulk_create([Delivery(event=e, subscription=subscription, next_attempt_at=timezone.now())
                                               for e in events])
    return subscription, [str(d.pk) for d in deliveries]


def _timed_batch(send, count, timeout):
    """Markers around `count` tasks; returns tasks per second between the markers."""
    client = redis.Redis.from_url(settings.SCP_REDIS_URL)
    start, end = f"bench:{uuid.uuid4().hex}:start", f"bench:{uuid.uuid4().hex}:end"
    mark_task.apply_async((start,), queue=stack.QUEUE)
    for i in range(count):
        send(i)
    mark_task.apply_async((end,), queue=stack.QUEUE)
    deadline = time.monotonic() + timeout
    while not client.exists(end):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not finish {count} tasks in {timeout}s")
        time.sleep(0.05)
    seconds = float(client.get(end)) - float(client.get(start))
    return {"tasks": count, "seconds": seconds, "rate": count / max(seconds, 1e-9)}


def measure(integration, vertical, workdir, *, deliveries, noops, timeout=600):
    receiver, worker = stack.webhook_receiver(workdir), stack.celery_worker(workdir)
    try:
        _timed_batch(lambda i: None, 0, timeout=120)  # the worker is up and connected
        noop = _timed_batch(lambda i: noop_task.apply_async(queue=stack.QUEUE), noops, timeout)
        subscription, ids = _deliveries(integration, vertical, receiver.url, deliveries)
        webhook = _timed_batch(lambda i: deliver_webhook_task.apply_async((ids[i],), queue=stack.QUEUE), deliveries, timeout)
        delivered = Delivery.objects.filter(subscription=subscription, status=DeliveryStatus.DELIVERED).count()
        if delivered != deliveries:
            raise RuntimeError(f"{delivered} of {deliveries} webhook deliveries delivered (see {worker.log})")
        subscription.active = False
        subscription.save(update_fields=["active"])
    finally:
        worker.stop()
        receiver.stop()
    return {"noop": noop, "webhook": {**webhook, "delivered": delivered}}
