"""Celery on Redis; with no broker configured, tasks run eagerly (embedded default only)."""
from .envtools import env, env_bool, env_int

CELERY_BROKER_URL = env("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
# Celery's Django fixup closes the database connection before and after every task unless
# told to reuse it; a fresh PostgreSQL connection per webhook delivery cost more than the
# delivery itself (README, "Benchmarks"). Reused for this many tasks; CONN_HEALTH_CHECKS
# replaces a broken one first.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# Webhook deliveries wait on the network: they have their own queue, served by a worker with a
# thread pool (many deliveries in flight per process, README "Services"); imports, exports and
# the rest stay on the default queue `celery`, in processes.
WEBHOOK_QUEUE = "webhooks"
CELERY_TASK_ROUTES = {
    "exchange.tasks.deliver_webhook_task": {"queue": WEBHOOK_QUEUE},
    "exchange.tasks.deliver_webhooks_task": {"queue": WEBHOOK_QUEUE},
    "exchange.tasks.deliver_due_webhooks_task": {"queue": WEBHOOK_QUEUE},
}

CELERY_BEAT_SCHEDULE = {
    # Integrations past `active_until` leave Active within a minute (the exchange already
    # refuses them from that very moment: it checks the window per request).
    "expire-integrations": {"task": "lifecycle.tasks.expire_integrations_task", "schedule": 60.0},
    # Everyday governance (issue #14): expiry warnings, recertification deadlines, aged
    # credentials, ended grace periods; and notifications whose first send failed.
    "governance-sweep": {"task": "lifecycle.tasks.governance_sweep_task", "schedule": 300.0},
    "send-pending-notifications": {"task": "lifecycle.tasks.send_pending_notifications_task", "schedule": 60.0},
    # Audit records are covered by the hash chain from their sealing on: every few seconds.
    "seal-audit": {"task": "audit.tasks.seal_audit_task", "schedule": 5.0},
    "purge-audit": {"task": "audit.tasks.purge_audit_task", "schedule": 3600.0},
    # The audit records' monthly partitions, months ahead (an append never waits for one).
    "audit-partitions": {"task": "audit.tasks.ensure_audit_partitions_task", "schedule": 86400.0},
    # Due webhook deliveries, including any the broker never carried (the outbox holds them).
    "deliver-due-webhooks": {"task": "exchange.tasks.deliver_due_webhooks_task", "schedule": 5.0},
    "expire-exports": {"task": "exchange.tasks.expire_exports_task", "schedule": 3600.0},
    "expire-idempotency-keys": {"task": "exchange.tasks.expire_idempotency_keys_task", "schedule": 3600.0},
    "run-due-connectors": {"task": "exchange.tasks.run_due_connectors_task", "schedule": 30.0},
    # Batch imports whose worker died resume from their checkpoint.
    "resume-stalled-imports": {
        "task": "exchange.tasks.resume_stalled_imports_task",
        "schedule": float(env_int("SCP_IMPORT_SWEEP_SECONDS", 15)),
    },
}
