"""Webhook delivery rate of one Celery worker process: signed deliveries (consent and scope
re-checked, HMAC signature, HTTP POST to a real nginx receiver, attempt row, audit record and
disclosure) by the deployment's webhook worker (one process, a thread pool of
SCP_WEBHOOK_CONCURRENCY), against Celery no-op tasks in one solo process through the same
broker.

The figure (`webhook`) has the deliveries queued as `deliver_webhooks_task` batches of
`exchange.webhooks.BATCH` ids, as the sweeper claims a backlog (and as an event's fan-out to
several subscriptions is queued): each batch is claimed by one statement, its consent checked
by one query, its POSTs sent concurrently, and every delivery still recorded in its own
transaction. `webhook_per_task` is the same number of deliveries queued one
`deliver_webhook_task` each, as a single push queues its delivery. Every delivery of both is a
real signed POST to nginx, recorded (the run fails unless each one is delivered).

A marker task before each batch records when the worker reached it; the batch ends when the
worker reaches the end marker (solo: tasks run in queue order) or, with threads, when the last
delivery is recorded."""
import time
import uuid

import redis
from django.conf import settings
from django.utils import timezone

from exchange.models import Delivery, DeliveryStatus, Event, EventType, Subscription
from exchange.tasks import deliver_webhook_task, deliver_webhooks_task
from exchange.webhooks import BATCH, new_secret
from scp_core.models import Person

from . import stack
from .tasks import mark_task, noop_task

WARM_UP = 20  # tasks before the start marker: imports and the first connections


def _deliveries(integration, vertical, receiver_url, count):
    subscription = Subscription.objects.create(integration=integration, url=receiver_url, secret=new_secret(),
                                               event_types=[EventType.RECORD_CREATED])
    persons = list(Person.objects.in_tenant(integration.tenant).with_consent_in_effect(vertical)
                   .values_list("pk", flat=True)[:count])
    events = Event.objects.bulk_create([
        Event(event_type=EventType.RECORD_CREATED, tenant=integration.tenant, vertical=vertical,
              person_id=persons[i % len(persons)], integration=integration,
              data={"record_id": str(uuid.uuid4()), "person_id": str(persons[i % len(persons)]), "record_type": "immunization"})
        for i in range(count)
    ])
    deliveries = Delivery.objects.bulk_create([Delivery(event=e, subscription=subscription, next_attempt_at=timezone.now())
                                               for e in events])
    return subscription, [str(d.pk) for d in deliveries]


def _timed_batch(workdir, send, count, timeout, *, threads=0, done=None, warm_up=None):
    """Queue a warm-up, a start marker, `count` tasks and an end marker, and only then start a
    worker: the markers time its processing alone, never the producer or its start-up. With a
    thread pool tasks overlap, so the end is when `done()` first holds (polled)."""
    client = redis.Redis.from_url(settings.SCP_REDIS_URL)
    start, end = f"bench:{uuid.uuid4().hex}:start", f"bench:{uuid.uuid4().hex}:end"
    warm_up = min(WARM_UP, count) if warm_up is None else warm_up
    for i in range(warm_up):
        send(i)
    mark_task.apply_async((start,), queue=stack.QUEUE)
    for i in range(warm_up, warm_up + count):
        send(i)
    mark_task.apply_async((end,), queue=stack.QUEUE)
    worker = stack.celery_worker(workdir, threads=threads)
    finished = (lambda: client.exists(end)) if done is None else done
    try:
        deadline = time.monotonic() + timeout
        while not finished():
            if time.monotonic() > deadline or not worker.alive():
                raise RuntimeError(f"the worker did not finish {count} tasks in {timeout}s (see {worker.log})")
            time.sleep(0.02)
        ended = time.time()
    finally:
        worker.stop()
    seconds = (float(client.get(end)) if done is None else ended) - float(client.get(start))
    return {"tasks": count, "seconds": seconds, "rate": count / max(seconds, 1e-9)}


def measure(integration, vertical, workdir, *, deliveries, noops, timeout=600):
    receiver = stack.webhook_receiver(workdir)
    try:
        noop = _timed_batch(workdir, lambda i: noop_task.apply_async(queue=stack.QUEUE), noops, timeout)
        batched = _webhooks(integration, vertical, workdir, receiver, deliveries, timeout, batch=BATCH)
        per_task = _webhooks(integration, vertical, workdir, receiver, deliveries, timeout, batch=1)
    finally:
        receiver.stop()
    return {"noop": noop, "webhook": batched, "webhook_per_task": per_task}


def _webhooks(integration, vertical, workdir, receiver, deliveries, timeout, *, batch):
    """`deliveries` deliveries (after the warm-up's) to a subscription of their own, queued
    `batch` ids per task (one: deliver_webhook_task; more: deliver_webhooks_task)."""
    warm_up = min(WARM_UP, deliveries)
    subscription, ids = _deliveries(integration, vertical, receiver.url, deliveries + warm_up)
    # The warm-up's deliveries go one per task, like the no-op warm-up; then the batches.
    tasks = [ids[i:i + 1] for i in range(warm_up)] + [ids[i:i + batch] for i in range(warm_up, len(ids), batch)]
    if batch == 1:
        send = lambda i: deliver_webhook_task.apply_async((tasks[i][0],), queue=stack.QUEUE)  # noqa: E731
    else:
        send = lambda i: deliver_webhooks_task.apply_async((tasks[i],), queue=stack.QUEUE)  # noqa: E731
    delivered_all = lambda: Delivery.objects.filter(  # noqa: E731
        subscription=subscription, status=DeliveryStatus.DELIVERED).count() == len(ids)
    timed = _timed_batch(workdir, send, len(tasks) - warm_up, timeout, threads=settings.SCP_WEBHOOK_CONCURRENCY,
                         done=delivered_all, warm_up=warm_up)
    delivered = Delivery.objects.filter(subscription=subscription, status=DeliveryStatus.DELIVERED).count()
    if delivered != len(ids):
        raise RuntimeError(f"{delivered} of {len(ids)} webhook deliveries delivered")
    subscription.active = False
    subscription.save(update_fields=["active"])
    # The rate counts deliveries (not tasks) after the start marker.
    return {**timed, "tasks": len(tasks) - warm_up, "per_task": batch, "delivered": deliveries,
            "rate": deliveries / max(timed["seconds"], 1e-9)}
