"""Prometheus metrics (spec §6.2 step 5, ongoing monitoring) and their authenticated endpoint.

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR so all workers' samples
are collected together (prometheus_client's multiprocess mode).
"""
import hmac
import os

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

from lifecycle.roles import roles_of

EXCHANGE_REQUESTS = Counter(
    "scp_exchange_requests", "Exchange API requests by outcome", ["tenant", "integration", "status", "code"]
)
EXCHANGE_LATENCY = Histogram(
    "scp_exchange_request_seconds", "Exchange API latency", ["tenant", "integration"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
WEBHOOK_DELIVERIES = Counter(
    "scp_webhook_deliveries", "Webhook delivery attempts by result", ["tenant", "integration", "result"]
)
BATCH_ROWS = Counter("scp_batch_rows", "Batch rows processed", ["tenant", "integration", "kind", "outcome"])


def observe_request(*, tenant, integration, status, code, seconds):
    EXCHANGE_REQUESTS.labels(tenant or "-", integration or "-", str(status), code or "").inc()
    EXCHANGE_LATENCY.labels(tenant or "-", integration or "-").observe(seconds)


def count_webhook(*, tenant, integration_id, result):
    WEBHOOK_DELIVERIES.labels(tenant, str(integration_id), result).inc()


def count_batch_rows(*, integration, kind, outcome, rows):
    """`rows` rows of a batch job of `integration` (its tenant is loaded once per job)."""
    if rows:
        BATCH_ROWS.labels(integration.tenant.code, str(integration.pk), kind, outcome).inc(rows)


def _authorized(request):
    token = settings.SCP_METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    return roles_of(getattr(request, "user", None)).sees_everything


def metrics_view(request):
    """The scrape endpoint: a bearer token for Prometheus, or a signed-in operator/auditor."""
    if not _authorized(request):
        return HttpResponse("authentication required\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="scp-metrics"'})
    registry = DEFAULT_REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
