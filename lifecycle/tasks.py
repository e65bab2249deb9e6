"""Celery tasks of the lifecycle: they take ids and call services."""
from celery import shared_task

from . import keycloak


@shared_task(
    autoretry_for=(keycloak.KeycloakUnavailable,),
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=None,
)
def sync_keycloak_client_task(integration_id):
    from .services import integration_sync_client

    integration_sync_client(integration_id)
