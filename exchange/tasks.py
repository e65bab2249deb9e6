"""Celery tasks of the exchange: they take ids and call the services."""
import logging

from celery import shared_task
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_after_commit(task, *ids):
    """Queue `task` once per id after the current transaction commits. If the broker is down,
    nothing is lost: the rows wait in the database for the beat sweepers."""
    _send_after_commit(task, [str(id_) for id_ in ids])


def enqueue_batch_after_commit(task, ids):
    """Queue `task` once with all of `ids` after the current transaction commits (the sweeper
    takes them if the broker is down)."""
    ids = [str(id_) for id_ in ids]
    _send_after_commit(task, [ids] if ids else [])


def _send_after_commit(task, arguments):
    """`task.delay(argument)` for each of `arguments`, once the transaction commits; the first
    broker failure leaves the rest to the sweepers."""

    def send():
        for argument in arguments:
            try:
                task.delay(argument)
            except Exception:  # noqa: BLE001 -- any broker failure
                logger.warning("broker unavailable; %s left to the sweeper", task.name)
                return

    if arguments:
        transaction.on_commit(send)


@shared_task
def deliver_webhook_task(delivery_id):
    from .webhooks import deliver

    return deliver(delivery_id)


@shared_task
def deliver_webhooks_task(delivery_ids):
    """Several deliveries, claimed by one statement and sent concurrently (an event's fan-out
    to its subscriptions). A task delivered twice sends nothing twice: the claim decides."""
    from .webhooks import deliver_many

    return sum(1 for status in deliver_many(delivery_ids) if status)


@shared_task
def deliver_due_webhooks_task():
    """The sweeper: every due delivery, including those the broker never carried, claimed a
    batch at a time, several in flight at once (SCP_WEBHOOK_CONCURRENCY)."""
    from .webhooks import deliver_many, due_deliveries

    return sum(1 for status in deliver_many(due_deliveries()) if status)


@shared_task
def run_import_task(job_id):
    from .batch import run_import

    return run_import(job_id)


@shared_task
def resume_stalled_imports_task():
    """The sweeper: restart imports and exports whose worker died, that wait for their retry,
    or that were never started."""
    from .jobs import requeue_stalled

    due = requeue_stalled()
    for job_id in due["import"]:
        run_import_task.delay(str(job_id))
    for job_id in due["export"]:
        run_export_task.delay(str(job_id))
    return {kind: [str(pk) for pk in ids] for kind, ids in due.items()}


@shared_task
def run_export_task(job_id):
    from .exports import run_export

    return run_export(job_id)


@shared_task
def expire_exports_task():
    from .exports import expire_exports

    return expire_exports()


@shared_task
def run_due_connectors_task():
    from .connectors import run_due

    return run_due()


@shared_task
def expire_idempotency_keys_task():
    """Forget Idempotency-Keys older than SCP_IDEMPOTENCY_TTL_HOURS (they no longer replay)."""
    from .pushes import expire_idempotency_keys

    return expire_idempotency_keys()
