"""Celery tasks of the lifecycle: they take ids and call services."""
import logging

from celery import shared_task
from django.utils import timezone

from registry.models import Integration

from . import agreements, credentials, keycloak, notifications, recertification, reminders
from .services import integration_expire, integration_sync_client

logger = logging.getLogger(__name__)


@shared_task(
    autoretry_for=(keycloak.KeycloakUnavailable,),
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=None,
)
def sync_keycloak_client_task(integration_id):
    integration_sync_client(integration_id)


@shared_task
def expire_integrations_task():
    """Move every integration past its `active_until` out of service, with the reason recorded."""
    now = timezone.now()
    expired = Integration.objects.serving().filter(active_until__lte=now).values_list("pk", flat=True)
    for pk in expired:
        integration_expire(integration=Integration.objects.get(pk=pk), now=now)
    return len(expired)


_SWEEPS = {
    "expiring": reminders.sweep,
    "recertification": recertification.sweep,
    "agreements": agreements.sweep,
    "credentials": credentials.sweep,
}


@shared_task
def governance_sweep_task():
    """The everyday governance clock (issue #14): expiry warnings, recertification deadlines,
    agreements past their expiry, credentials past their grace or their maximum age. Each sweep
    runs on its own: one that fails (Keycloak down, say) is logged and the others still run."""
    now = timezone.now()
    outcome = {}
    for name, sweep in _SWEEPS.items():
        try:
            outcome[name] = sweep(now)
        except Exception as exc:  # noqa: BLE001 -- isolate each sweep; retried on the next tick
            logger.exception("governance sweep %s failed", name)
            outcome[name] = {"error": f"{exc.__class__.__name__}: {exc}"[:300]}
    return outcome


@shared_task
def send_pending_notifications_task():
    """Notifications whose task was lost or whose sender died are sent again (at most once each)."""
    return [notifications.send(pk) for pk in notifications.pending()]
