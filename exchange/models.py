"""State the exchange keeps for partners: idempotent replies to pushes (spec §8.2), the
event outbox, webhook subscriptions and their deliveries (spec §5.2, §5.3)."""
import uuid
from urllib.parse import urlsplit

from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords


class IdempotencyRecord(models.Model):
    """The first response to a push with a given Idempotency-Key, replayed for repeats."""

    integration = models.ForeignKey("registry.Integration", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["integration", "key"], name="idempotency_key_unique")]


class EventType(models.TextChoices):
    RECORD_CREATED = "record.created", "record created"
    RECORD_UPDATED = "record.updated", "record updated"
    CONSENT_WITHDRAWN = "consent.withdrawn", "consent withdrawn"
    INTEGRATION_STATUS_CHANGED = "integration.status_changed", "integration status changed"
    RECORDS_IMPORTED = "records.imported", "records imported (one event per chunk of a batch file)"


class Event(models.Model):
    """A domain event in the transactional outbox: written in the same transaction as the
    change it reports, delivered (or pulled) later under the policy in force then."""

    id = models.BigAutoField(primary_key=True)
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    tenant = models.ForeignKey("scp_core.Tenant", on_delete=models.PROTECT, related_name="+")
    vertical = models.ForeignKey("scp_core.Vertical", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    person_id = models.UUIDField(null=True, blank=True)
    integration = models.ForeignKey("registry.Integration", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["tenant", "id"])]


def endpoint_display(url):
    """A webhook URL as shown anywhere (screens, e-mails): scheme, host, port and path; never
    the credentials or the query string it may carry."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class Subscription(models.Model):
    """A partner's webhook endpoint for some event types (within its verticals)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    integration = models.ForeignKey("registry.Integration", on_delete=models.CASCADE, related_name="subscriptions")
    url = models.URLField(max_length=500)
    event_types = models.JSONField()
    secret = models.CharField(max_length=100, help_text="whsec_... signing secret (shown to the partner once)")
    active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    circuit_open_until = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.integration} → {endpoint_display(self.url)}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    DELIVERED = "delivered", "delivered"
    SKIPPED = "skipped", "skipped (not visible at delivery time)"
    DEAD = "dead", "dead letter"


class Delivery(models.Model):
    """One event for one subscription. Its id is the `webhook-id`, stable across retries."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="deliveries")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # While an attempt is in flight: until when it holds the delivery (exchange.webhooks).
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "subscription"], name="one_delivery_per_subscription")]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"


class ImportJob(models.Model):
    """A batch file pushed by a partner (spec §5.3, §8.2): processed in checkpointed chunks,
    resumable after any crash without losing or duplicating a row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    integration = models.ForeignKey("registry.Integration", on_delete=models.PROTECT, related_name="+")
    vertical = models.ForeignKey("scp_core.Vertical", on_delete=models.PROTECT, related_name="+")
    record_type = models.CharField(max_length=60)
    file_format = models.CharField(max_length=10, choices=[("csv", "CSV"), ("ndjson", "NDJSON")])
    file_path = models.CharField(max_length=500)
    file_size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    rows_failed = models.PositiveIntegerField(default=0)
    next_line = models.PositiveIntegerField(default=1, help_text="checkpoint: the next data line to process")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="times a worker took the job")


class ImportRowError(models.Model):
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    line = models.PositiveIntegerField()
    errors = models.JSONField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "line"], name="one_error_row_per_line")]


class ExportJob(models.Model):
    """A batch export (pull, file-based) of the integration's scoped, consented, minimized data."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    integration = models.ForeignKey("registry.Integration", on_delete=models.PROTECT, related_name="+")
    vertical = models.ForeignKey("scp_core.Vertical", on_delete=models.PROTECT, related_name="+")
    file_format = models.CharField(max_length=10, choices=[("csv", "CSV"), ("ndjson", "NDJSON")])
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    rows_written = models.PositiveIntegerField(default=0)
    rows_excluded = models.PositiveIntegerField(default=0, help_text="persons whose consent ended during the export")
    file_path = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # The checkpoint, moved after every chunk: a job whose worker died resumes from here.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="times a worker took the job")
    last_person_id = models.UUIDField(null=True, blank=True)
    file_bytes = models.BigIntegerField(default=0)
    ids_bytes = models.BigIntegerField(default=0)
    excluded_ids = models.JSONField(default=list, blank=True)


class ConnectorStatus(models.TextChoices):
    HEALTHY = "healthy", "healthy"
    DEGRADED = "degraded", "degraded (partner unreachable; last good data kept)"
    FAILING = "failing", "failing (schema drift; nothing written)"


class Connector(models.Model):
    """Binds an adapter (JSON over HTTPS, CSV file) to an integration, a vertical, a record
    type and a schedule: SCP-initiated pulls from the partner's system (spec §3, §5.1)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    integration = models.ForeignKey("registry.Integration", on_delete=models.PROTECT, related_name="connectors")
    name = models.CharField(max_length=100)
    adapter = models.CharField(max_length=20, choices=[("json_https", "JSON over HTTPS"), ("csv_file", "CSV file")])
    source = models.CharField(max_length=500, help_text="URL (json_https) or file path (csv_file)")
    vertical = models.ForeignKey("scp_core.Vertical", on_delete=models.PROTECT, related_name="+")
    record_type = models.CharField(max_length=60)
    every_seconds = models.PositiveIntegerField(default=3600)
    status = models.CharField(max_length=10, choices=ConnectorStatus.choices, default=ConnectorStatus.HEALTHY)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_run_at = models.DateTimeField(default=timezone.now)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    history = HistoricalRecords(excluded_fields=["status", "consecutive_failures", "next_run_at", "last_success_at", "last_error"])

    def __str__(self):
        return self.name
