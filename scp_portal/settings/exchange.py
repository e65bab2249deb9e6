"""The partner exchange: proxies, rate limits, aggregates and idempotency."""
from .base import BASE_DIR, DEBUG
from .celery import CELERY_BROKER_URL
from .envtools import env, env_bool, env_int, env_list

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
# Refused unauthenticated requests (bad or missing token, unknown URL, oversized body) from
# one address within a minute that open an incident, and past which the address is answered
# 429 until the minute ends.
SCP_AUTH_FAILURE_THRESHOLD = env_int("SCP_AUTH_FAILURE_THRESHOLD", 10)
SCP_AUTH_FAILURE_LIMIT = env_int("SCP_AUTH_FAILURE_LIMIT", 30)
# Largest body of any API request but an import upload (checked before anything parses it).
SCP_MAX_API_BODY_BYTES = env_int("SCP_MAX_API_BODY_BYTES", 1024 * 1024)
# Webhook receivers on loopback over plain HTTP: development and tests only.
SCP_WEBHOOK_ALLOW_LOOPBACK = env_bool("SCP_WEBHOOK_ALLOW_LOOPBACK", DEBUG)
# An import (or connector run) that wrote at least this many rows refreshes the planner's
# statistics of the records table at its end (scp_core.statistics.analyze).
SCP_ANALYZE_AFTER_ROWS = env_int("SCP_ANALYZE_AFTER_ROWS", 10_000)
# Deliveries in flight at once in one sweep of due deliveries (exchange.webhooks.deliver_many).
SCP_WEBHOOK_CONCURRENCY = env_int("SCP_WEBHOOK_CONCURRENCY", 16)
# Batch imports: where uploads are kept, their largest size, and after how long without a
# heartbeat a running job counts as abandoned and is resumed by the sweeper.
SCP_IMPORT_DIR = env("SCP_IMPORT_DIR", str(BASE_DIR / "var" / "imports"))
SCP_MAX_IMPORT_BYTES = env_int("SCP_MAX_IMPORT_BYTES", 100 * 1024 * 1024)
SCP_IMPORT_STALE_SECONDS = env_int("SCP_IMPORT_STALE_SECONDS", 60)
SCP_IMPORT_SWEEP_SECONDS = env_int("SCP_IMPORT_SWEEP_SECONDS", 15)
# A batch job taken this many times without finishing (its workers keep dying) ends failed.
SCP_JOB_MAX_ATTEMPTS = env_int("SCP_JOB_MAX_ATTEMPTS", 5)
# Batch export files are deleted this long after they are produced.
SCP_EXPORT_TTL_HOURS = env_int("SCP_EXPORT_TTL_HOURS", 24)
# Bearer token of the Prometheus scraper for /metrics (staff with a global role may also look).
SCP_METRICS_TOKEN = env("SCP_METRICS_TOKEN", "")
# Retry-After of the 503 answered while the database is unreachable.
SCP_DATABASE_RETRY_AFTER_SECONDS = env_int("SCP_DATABASE_RETRY_AFTER_SECONDS", 5)
# Connectors: CSV drops are read only below this directory; a pull is refused past these sizes.
SCP_CONNECTOR_FILES_DIR = env("SCP_CONNECTOR_FILES_DIR", str(BASE_DIR / "var" / "connectors"))
SCP_CONNECTOR_MAX_BYTES = env_int("SCP_CONNECTOR_MAX_BYTES", 10 * 1024 * 1024)
SCP_CONNECTOR_MAX_ROWS = env_int("SCP_CONNECTOR_MAX_ROWS", 100_000)
