"""Prometheus metrics of the exchange, per tenant and integration (spec §6.2 step 5): requests
and their latency, webhook deliveries, batch rows. Served by scp_portal.metrics."""
from prometheus_client import Counter, Histogram

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
