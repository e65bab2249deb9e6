"""Per-integration rate limits, counted in Redis so every server process shares them.

A fixed one-minute window per integration: one INCR and one EXPIRE, pipelined, per request.
"""
import threading
import time

import redis
from django.conf import settings

from audit.services import IncidentKind, IncidentSeverity, incident_open
from scp_core.errors import ApiError

_client = None
_local_counts = {}
_local_lock = threading.Lock()
WINDOW_SECONDS = 60


def _redis():
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.SCP_REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    return _client


def limit_of(integration):
    policy = integration.rate_limit_policy
    if policy is None:
        return settings.SCP_DEFAULT_RATE_LIMIT
    return policy.requests_per_minute + policy.burst


def count(name, now=None):
    """Count one event in the current one-minute window, shared by all processes; returns
    (count in this window, seconds until the window resets)."""
    now = now or time.time()
    window = int(now // WINDOW_SECONDS)
    reset = WINDOW_SECONDS - int(now % WINDOW_SECONDS)
    key = f"scp:{name}:{window}"
    if settings.SCP_REDIS_URL:
        try:
            pipe = _redis().pipeline()
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW_SECONDS + 5, nx=True)  # the next window reads it too
            return pipe.execute()[0], reset
        except redis.RedisError as exc:
            # Fail closed: an enforcement boundary does not serve what it cannot count.
            raise ApiError(503, "upstream_unavailable", "The rate limiter is unavailable.") from exc
    with _local_lock:  # embedded default only: one process, no Redis
        _local_counts[key] = _local_counts.get(key, 0) + 1
        return _local_counts[key], reset


def previous_window(name, now=None):
    """The count of the window before the current one (kept a little past its end)."""
    now = now or time.time()
    return _get(f"scp:{name}:{int(now // WINDOW_SECONDS) - 1}")


def _get(key):
    if not settings.SCP_REDIS_URL:
        return _local_counts.get(key, 0)
    try:
        return int(_redis().get(key) or 0)
    except redis.RedisError as exc:
        raise ApiError(503, "upstream_unavailable", "The rate limiter is unavailable.") from exc


def hit(integration, now=None):
    """Count one request; return the RateLimit headers or raise 429 rate_limited (the first
    refusal in a window opens a rate-limit-breach incident, spec §10)."""
    limit = limit_of(integration)
    used, reset = count(f"rl:{integration.pk}", now)
    headers = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(max(limit - used, 0)), "RateLimit-Reset": str(reset)}
    if used > limit:
        if used == limit + 1:
            _breach_incident(integration, limit)
        raise ApiError(429, "rate_limited", "Rate limit exceeded; retry later.", headers={**headers, "Retry-After": str(reset)})
    return headers


def _breach_incident(integration, limit):
    incident_open(
        kind=IncidentKind.RATE_LIMIT_BREACH, severity=IncidentSeverity.LOW,
        summary=f"{integration.integration_name}: more than {limit} requests in a minute",
        tenant=integration.tenant, integration=integration,
    )
