"""Celery tasks of the lifecycle: they take ids and call services."""
from celery import shared_task
from django.utils import timezone

from registry.models import Integration

from . import keycloak
from .services import integration_expire, integration_sync_client


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
