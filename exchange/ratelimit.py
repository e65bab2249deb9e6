"""Per-integration rate limits, counted in Redis so every server process shares them.

A fixed one-minute window per integration: one INCR and one EXPIRE, pipelined, per request.
"""
import threading
import time

import redis
from django.conf import settings

from scp_portal.problems import ApiError

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


def hit(integration, now=None):
    """Count one request; return (limit, remaining, reset_seconds) or raise 429 rate_limited."""
    now = now or time.time()
    window = int(now // WINDOW_SECONDS)
    reset = WINDOW_SECONDS - int(now % WINDOW_SECONDS)
    limit = limit_of(integration)
    key = f"scp:rl:{integration.pk}:{window}"
    if settings.SCP_REDIS_URL:
        try:
            pipe = _redis().pipeline()
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS + 5, nx=True)
            count = pipe.execute()[0]
        except redis.RedisError as exc:
            # Fail closed: an enforcement boundary does not serve what it cannot count.
            raise ApiError(503, "upstream_unavailable", "The rate limiter is unavailable.") from exc
    else:  # embedded default only: one process, no Redis
        with _local_lock:
            count = _local_counts[key] = _local_counts.get(key, 0) + 1
    remaining = max(limit - count, 0)
    headers = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining), "RateLimit-Reset": str(reset)}
    if count > limit:
        raise ApiError(429, "rate_limited", "Rate limit exceeded; retry later.", headers={**headers, "Retry-After": str(reset)})
    return headers
