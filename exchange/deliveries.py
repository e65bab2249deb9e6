"""What people do to webhook deliveries (issue #14): replay one, from the partner's pages or
the portal's delivery screen, through one service that checks who may and audits it."""
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from lifecycle.permissions import require
from scp_core.errors import InvalidTransitionError

from .models import Delivery, DeliveryStatus, Subscription
from .tasks import deliver_webhook_task, enqueue_after_commit

# A dead letter (retries exhausted, a permanent 4xx) and a delivered one may be sent again. A
# pending delivery is already queued; a skipped one was withheld because the person was not
# visible to the integration at delivery time, and a replay is no way around that decision.
REPLAYABLE = frozenset({DeliveryStatus.DEAD, DeliveryStatus.DELIVERED})


def delivery_replay(*, delivery, actor, request_id=""):
    """Queue `delivery` for sending again now, with a fresh retry schedule; returns it.

    It is the same delivery (the same `webhook-id`, as Standard Webhooks has for a message
    sent again), its earlier attempts kept, and it is checked like any delivery when it is
    sent: consent, vertical and the integration's state at that moment. A disabled
    subscription is enabled again (see `_reenable`). Refused unless `actor` may
    `replay-delivery` on the integration, the delivery is a dead letter or was delivered, and
    the integration is served."""
    integration = delivery.subscription.integration
    require(actor, "replay-delivery", integration)
    with transaction.atomic():
        # Under its row lock: an attempt in flight records its outcome under the same lock.
        locked = Delivery.objects.select_for_update(of=("self",)).select_related(
            "event__vertical", "subscription__integration__tenant").get(pk=delivery.pk)
        subscription, integration = locked.subscription, locked.subscription.integration
        if locked.status not in REPLAYABLE:
            raise InvalidTransitionError(_not_replayable(locked))
        if not integration.is_serving:
            raise InvalidTransitionError(
                f"The integration is {integration.get_status_display()}: nothing is delivered to it now.")
        before = {"status": locked.status, "attempts": locked.attempts, "last_error": locked.last_error}
        reenabled = _reenable(subscription)
        locked.status = DeliveryStatus.PENDING
        locked.attempts = 0  # a full retry schedule again (next_attempt counts from here)
        locked.next_attempt_at = timezone.now()
        locked.last_error = ""
        locked.delivered_at = None
        locked.claimed_until = None
        locked.save(update_fields=["status", "attempts", "next_attempt_at", "last_error", "delivered_at",
                                   "claimed_until"])
        audit_record(
            event_type=AuditEvent.WEBHOOK_REPLAYED, tenant=integration.tenant, integration=integration,
            actor_user=actor, client_id=integration.auth_client_id, request_id=request_id,
            verticals=[locked.event.vertical.code] if locked.event.vertical_id else [],
            details={"delivery": str(locked.pk), "subscription": str(subscription.pk),
                     "event_id": locked.event_id, "event_type": locked.event.event_type,
                     "endpoint_host": urlsplit(subscription.url).hostname,
                     "before": before, "after": {"status": locked.status},
                     "subscription_reenabled": reenabled},
        )
        # The sweeper would find it within seconds anyway; this sends it at once.
        enqueue_after_commit(deliver_webhook_task, locked.pk)
    return locked


def _reenable(subscription):
    """A disabled endpoint (410 Gone, too many failures) is enabled again by a replay: the
    partner was told to fix it and replay from the portal, and this is them saying it is fixed.
    Returns whether it was disabled; its target is checked again when the delivery is sent."""
    locked = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if locked.active:
        return False
    locked.active = True
    locked.disabled_reason = ""
    locked.consecutive_failures = 0
    locked.circuit_open_until = None
    locked.save(update_fields=["active", "disabled_reason", "consecutive_failures", "circuit_open_until"])
    return True


def _not_replayable(delivery):
    if delivery.status == DeliveryStatus.PENDING:
        return "This delivery is already queued: it is sent at its next attempt."
    if delivery.status == DeliveryStatus.SKIPPED:
        return ("This delivery was withheld at delivery time (the person was not visible to the integration then) "
                "and is not replayed.")
    return f"A delivery that is {delivery.get_status_display()} cannot be replayed."
