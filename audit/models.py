"""The audit log (spec §9): one record per integration request and per governance action."""
from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEvent(models.TextChoices):
    API_REQUEST = "api.request", "exchange API request"
    INTEGRATION_CREATED = "integration.created", "integration created"
    INTEGRATION_TRANSITION = "integration.transition", "integration lifecycle transition"
    VERTICAL_REVIEW = "integration.vertical_review", "vertical owner review"
    CLIENT_SECRET_ISSUED = "integration.secret_issued", "client secret issued"
    INTEGRATION_CONTROLS = "integration.controls", "layered controls configured"
    CONSENT_CHANGED = "consent.changed", "consent changed"
    TEMPLATE_CHANGED = "registry.template_changed", "registry template revised or vetted"
    AUDIT_EXPORTED = "audit.exported", "audit exported"
    BATCH_IMPORT = "batch.import_completed", "batch import completed"
    BATCH_EXPORT = "batch.export_completed", "batch export completed"
    CONNECTOR_RUN = "connector.run", "connector pull"
    AUDIT_PURGED = "audit.purged", "audit segments purged by retention"
    AUDIT_VERIFY_FAILED = "audit.verify_failed", "audit verification failed"
    AUDIT_KEY_ROTATED = "audit.key_rotated", "audit signing key rotated"
    ROLE_CHANGED = "governance.role_changed", "governance role granted or revoked"
    TENANT_SETTINGS_CHANGED = "tenant.settings_changed", "tenant settings changed"
    CONNECTOR_CONFIGURED = "connector.configured", "connector configured"
    WEBHOOK_ATTEMPT = "webhook.attempt", "webhook delivery attempt"
    PORTAL_PERSON_VIEWED = "portal.person_viewed", "persons' data shown in the portal"
    DISCLOSURES_VIEWED = "disclosures.viewed", "a person's disclosures looked at"
    INTEGRATION_EMBARGOED = "integration.embargoed", "disclosures embargoed from the person's report"
    # Everyday governance (issue #14).
    NOTIFICATION_SENT = "notification.sent", "notification e-mail sent"
    RECERTIFICATION_OPENED = "recertification.opened", "recertification opened"
    RECERTIFICATION_ANSWERED = "recertification.answered", "recertification answered"
    RECERTIFICATION_LAPSED = "recertification.lapsed", "recertification lapsed"
    AGREEMENT_UPLOADED = "agreement.uploaded", "data-sharing agreement uploaded"
    AGREEMENT_DOWNLOADED = "agreement.downloaded", "data-sharing agreement document downloaded"
    AGREEMENT_ACCEPTED = "agreement.accepted", "data-sharing agreement renewal accepted"
    CREDENTIAL_ROTATED = "credential.rotated", "credential rotated (old one in grace)"
    CREDENTIAL_REVOKED = "credential.revoked", "credential revoked"
    WEBHOOK_REPLAYED = "webhook.replayed", "webhook delivery replayed"


class AuditResult(models.TextChoices):
    SUCCESS = "success", "success"
    FAILURE = "failure", "failure"
    DENIED = "denied", "denied"

    @classmethod
    def of_status(cls, status):
        """The result of an API response: refusals by policy are denials, other errors failures."""
        if status < 400:
            return cls.SUCCESS
        return cls.DENIED if status in (401, 403, 429) else cls.FAILURE


class AuditRecord(models.Model):
    """One audited event. Rows are only ever inserted. In PostgreSQL the table is partitioned by
    month of `occurred_at` (audit.partitions), its primary key (id, occurred_at)."""

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    event_type = models.CharField(max_length=40, choices=AuditEvent.choices)
    request_id = models.CharField(max_length=64, blank=True)
    tenant = models.ForeignKey("scp_core.Tenant", null=True, blank=True, on_delete=models.PROTECT)
    integration = models.ForeignKey(
        "registry.Integration", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The actor as a foreign key where one exists, and always as text, which outlives the row.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=200, blank=True)
    client_id = models.CharField(max_length=120, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    verticals = models.JSONField(default=list)
    result = models.CharField(max_length=10, choices=AuditResult.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=60, blank=True)
    details = models.JSONField(default=dict)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["tenant", "id"])]

    def __str__(self):
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.event_type} {self.result}"


class IncidentSeverity(models.TextChoices):
    LOW = "low", "low"
    MEDIUM = "medium", "medium"
    HIGH = "high", "high"
    CRITICAL = "critical", "critical"


class IncidentKind(models.TextChoices):
    MIS_SCOPED_REQUEST = "mis_scoped_request", "mis-scoped request: a vertical outside scope"
    TENANT_MISMATCH = "tenant_mismatch", "mis-scoped request: a token of another tenant"
    FOREIGN_CLIENT = "foreign_client", "mis-scoped request: another integration's client"
    FOREIGN_OBJECT = "foreign_object", "mis-scoped request: another tenant's or integration's ids"
    AUTHENTICATION_FAILURES = "authentication_failures", "repeated authentication failures"
    RATE_LIMIT_BREACH = "rate_limit_breach", "rate limit breach"
    VERIFICATION_FAILED = "verification_failed", "audit verification failed"
    SCHEMA_DRIFT = "schema_drift", "external schema change"
    DELIVERY_FAILING = "delivery_failing", "webhook endpoint failing"


class Incident(models.Model):
    """Something the umbrella authority and auditors must look at (spec §10)."""

    opened_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=40, choices=IncidentKind.choices)
    severity = models.CharField(max_length=10, choices=IncidentSeverity.choices)
    tenant = models.ForeignKey("scp_core.Tenant", null=True, blank=True, on_delete=models.PROTECT)
    integration = models.ForeignKey(
        "registry.Integration", null=True, blank=True, on_delete=models.PROTECT, related_name="incidents"
    )
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict)
    request_id = models.CharField(max_length=64, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Repeated attempts of one kind by one integration are one incident, counted.
    occurrences = models.PositiveIntegerField(default=1)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-opened_at"]

    def __str__(self):
        return f"[{self.severity}] {self.summary}"


class AuditSeal(models.Model):
    """A record's place in its chain (one chain per tenant, plus `_platform` for requests
    that name no tenant): `hash` = SHA-256(prev_hash, canonical record). Inserted by the
    sealer in commit order, so concurrent writers never fork the chain."""

    chain = models.CharField(max_length=16)
    seq = models.BigIntegerField()
    record = models.OneToOneField(
        AuditRecord, on_delete=models.DO_NOTHING, db_constraint=False, related_name="seal"
    )
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_seal_chain_seq_unique")]


class AuditSigningKey(models.Model):
    """A key that signs checkpoints, as published to regulators, with the period it signed
    for: a checkpoint verifies only with the key it names, signed within that key's period."""

    key_id = models.CharField(max_length=16, primary_key=True)
    public_key = models.CharField(max_length=64)
    first_used_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    def in_use_at(self, moment):
        return self.first_used_at <= moment and (self.retired_at is None or moment <= self.retired_at)


class AuditCheckpoint(models.Model):
    """An Ed25519 signature over a chain's hash at a sequence number. An anchor is the
    checkpoint a retention purge leaves behind: the chain verifies from it on."""

    chain = models.CharField(max_length=16)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    signed_at = models.CharField(max_length=40, help_text="ISO 8601, as signed")
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=100)
    is_anchor = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["chain", "seq"])]


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"


class AuditExportJob(models.Model):
    """An export requested from the portal; run by a Celery task, its progress shown live."""

    tenant = models.ForeignKey("scp_core.Tenant", on_delete=models.PROTECT)
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    records_done = models.PositiveIntegerField(default=0)
    records_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"audit export of {self.tenant.code} ({self.status})"

    @property
    def percent(self):
        if self.status == ExportStatus.COMPLETED:
            return 100
        return int(100 * self.records_done / self.records_total) if self.records_total else 0


class DisclosureChannel(models.TextChoices):
    API_LIST = "api_list", "API list"
    API_DETAIL = "api_detail", "API detail"
    RECORDS = "records", "records"
    EXPORT = "export", "export file"
    EXPORT_DOWNLOAD = "export_download", "export download"
    WEBHOOK = "webhook", "webhook delivery"
    EVENTS_FEED = "events_feed", "events feed"


class Disclosure(models.Model):
    """One release of persons' data (issue #13): to which integration and partner, through
    which channel, which fields with which masking rule, for which purpose, under which contract
    version, and the audit record it belongs to, which commits to it (a digest in its details,
    audit.ledger). Rows are only ever inserted, like the audit records."""

    # In PostgreSQL the key is (record_id, disclosed_at) → the record's (id, occurred_at), the
    # partitioned table's primary key (audit migration 0017); a disclosure's time is its record's.
    record = models.ForeignKey(AuditRecord, on_delete=models.PROTECT, related_name="disclosures", db_constraint=False)
    disclosed_at = models.DateTimeField()
    tenant = models.ForeignKey("scp_core.Tenant", on_delete=models.PROTECT, related_name="+")
    integration = models.ForeignKey("registry.Integration", on_delete=models.PROTECT, related_name="+")
    partner = models.CharField(max_length=60)
    vertical = models.CharField(max_length=40)
    purpose_code = models.CharField(max_length=40, blank=True)
    channel = models.CharField(max_length=20, choices=DisclosureChannel.choices)
    fields = models.JSONField(default=dict, help_text="{field: masking rule}")
    contract_version = models.CharField(max_length=120)
    # The persons disclosed, as text ids; PostgreSQL indexes them (GIN), so a person's history
    # is an index lookup and a page of 100 persons is one row.
    person_ids = models.JSONField(default=list)

    class Meta:
        ordering = ["-disclosed_at", "-id"]
        indexes = [models.Index(fields=["integration", "disclosed_at"])]
