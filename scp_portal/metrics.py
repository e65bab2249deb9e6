"""The authenticated endpoint of the Prometheus metrics (spec §6.2 step 5, ongoing
monitoring); the metrics themselves are counted where things happen (exchange.metrics).

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR so all workers' samples
are collected together (prometheus_client's multiprocess mode).
"""
import hmac
import os

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

from lifecycle.roles import roles_of

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
