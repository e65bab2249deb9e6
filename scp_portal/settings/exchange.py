"""The partner exchange: proxies, rate limits, aggregates and idempotency."""
from .celery import CELERY_BROKER_URL
from .envtools import env, env_int, env_list

# Only these addresses may tell us the client's address and certificate (the TLS terminator).
SCP_TRUSTED_PROXIES = env_list("SCP_TRUSTED_PROXIES", ["127.0.0.1", "::1"])
# Redis for rate-limit counters, shared by every server process. Unset on the embedded
# default only, where a per-process counter is used instead.
SCP_REDIS_URL = env("SCP_REDIS_URL", CELERY_BROKER_URL.rsplit("/", 1)[0] + "/1" if CELERY_BROKER_URL else "")
# Requests per minute of integrations without a rate-limit policy.
SCP_DEFAULT_RATE_LIMIT = env_int("SCP_DEFAULT_RATE_LIMIT", 600)
# Aggregate cells counting fewer persons than this are suppressed.
SCP_AGGREGATE_MIN_CELL = env_int("SCP_AGGREGATE_MIN_CELL", 5)
# How long an Idempotency-Key is remembered.
SCP_IDEMPOTENCY_TTL_HOURS = env_int("SCP_IDEMPOTENCY_TTL_HOURS", 24)
# Largest JSON body a push may have.
SCP_MAX_PUSH_BYTES = env_int("SCP_MAX_PUSH_BYTES", 64 * 1024)
# Failed authentications from one address within a minute that open an incident.
SCP_AUTH_FAILURE_THRESHOLD = env_int("SCP_AUTH_FAILURE_THRESHOLD", 10)
