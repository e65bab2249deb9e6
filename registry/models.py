"""The shared integration registry (spec §4.5) and tenant-scoped integrations (spec §6.4)."""
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from scp_core.models import Tenant, Vertical


class PartnerType(models.TextChoices):
    GOVERNMENT = "government", "government"
    NGO = "ngo", "NGO"
    PRIVATE = "private", "private"
    INTERNATIONAL = "international", "international"


class Partner(models.Model):
    """An external organization operating an integrated system."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    partner_type = models.CharField(max_length=20, choices=PartnerType.choices)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.name


class RateLimitPolicy(models.Model):
    """How many requests an integration may make; applied at activation."""

    name = models.SlugField(max_length=60, unique=True)
    requests_per_minute = models.PositiveIntegerField()
    burst = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "rate limit policies"

    def __str__(self):
        return f"{self.name} ({self.requests_per_minute}/min)"


class DataContract(models.Model):
    """A named data contract; its content lives in immutable numbered versions."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)

    def __str__(self):
        return self.slug


class DataContractVersion(models.Model):
    """One version of a data contract: per vertical, what may be read (and how it is masked)
    and what may be written (a JSON Schema per record type).

    `read_fields`:   {"health": {"id": "plain", "national_id": "last:4", "birth_date": "year"}}
    `write_schemas`: {"health": {"immunization": {<JSON Schema of the record's data>}}}
    """

    contract = models.ForeignKey(DataContract, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    read_fields = models.JSONField(default=dict)
    write_schemas = models.JSONField(default=dict)
    data_categories = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["contract", "version"]
        constraints = [
            models.UniqueConstraint(fields=["contract", "version"], name="contract_version_unique"),
        ]

    def __str__(self):
        return self.ref

    @property
    def ref(self):
        return f"{self.contract.slug}@v{self.version}"

    def readable_verticals(self):
        return set(self.read_fields)


class IntegrationTemplate(models.Model):
    """A vetted, reusable integration definition shared across tenants (spec §4.5)."""

    slug = models.SlugField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=200)
    purpose = models.TextField()
    data_contract = models.ForeignKey(DataContractVersion, on_delete=models.PROTECT, related_name="templates")
    verticals = models.ManyToManyField(Vertical, related_name="templates")
    vetted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["slug", "version"]
        constraints = [
            models.UniqueConstraint(fields=["slug", "version"], name="template_version_unique"),
        ]

    def __str__(self):
        return f"{self.slug} v{self.version}"


class IntegrationStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    REQUESTED = "requested", "Requested"
    REVIEWED = "reviewed", "Reviewed"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    ACTIVE = "active", "Active"
    RESTRICTED = "restricted", "Restricted"
    SUSPENDED = "suspended", "Suspended"
    DEPRECATED = "deprecated", "Deprecated"
    ARCHIVED = "archived", "Archived"


S = IntegrationStatus


class IntegrationQuerySet(models.QuerySet):
    def for_token(self, integration_id):
        """The integration named by a partner token, with what the policy checks joined in."""
        return self.select_related("tenant", "data_contract").prefetch_related("verticals").filter(
            integration_id=integration_id
        )


class Integration(ConcurrentTransitionMixin, models.Model):
    """A governed connection between SCP and one partner system, bound to one tenant.

    The status only changes through the transition methods below, each called by one
    service in `lifecycle.services` that checks who may take it and writes the audit.
    """

    integration_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="integrations")
    integration_name = models.CharField(max_length=200)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="integrations")
    template = models.ForeignKey(
        IntegrationTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="integrations"
    )
    status = FSMField(default=S.DRAFT, choices=S.choices, protected=True)
    verticals = models.ManyToManyField(Vertical, related_name="integrations")
    purpose = models.TextField(blank=True)
    active_from = models.DateTimeField(default=timezone.now)
    active_until = models.DateTimeField(null=True, blank=True)
    data_contract = models.ForeignKey(DataContractVersion, on_delete=models.PROTECT, related_name="integrations")
    auth_client_id = models.CharField(max_length=120, blank=True, db_index=True)
    rate_limit_policy = models.ForeignKey(
        RateLimitPolicy, null=True, blank=True, on_delete=models.PROTECT, related_name="integrations"
    )
    replacement = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaces"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="created_integrations"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = IntegrationQuerySet.as_manager()
    history = HistoricalRecords(excluded_fields=["created_at"])

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.integration_name} ({self.tenant.code})"

    @property
    def partner_name(self):
        return self.partner.name

    @property
    def data_contract_ref(self):
        return self.data_contract.ref

    @property
    def client_id_for_keycloak(self):
        """The Keycloak clientId this integration owns (stable, so provisioning is idempotent)."""
        return f"scp-int-{self.integration_id}"

    def vertical_codes(self):
        return sorted(v.code for v in self.verticals.all())

    def is_in_active_window(self, at=None):
        at = at or timezone.now()
        return self.active_from <= at and (self.active_until is None or at < self.active_until)

    # --- transitions (spec §6.1, §6.3); bodies change fields only -------------------------

    @transition(field=status, source=S.DRAFT, target=S.REQUESTED)
    def submit(self):
        pass

    @transition(field=status, source=S.REQUESTED, target=S.REVIEWED)
    def review(self):
        pass

    @transition(field=status, source=[S.REQUESTED, S.REVIEWED], target=S.REJECTED)
    def reject(self):
        pass

    @transition(field=status, source=S.REVIEWED, target=S.APPROVED)
    def approve(self):
        pass

    @transition(field=status, source=S.APPROVED, target=S.ACTIVE)
    def activate(self, auth_client_id):
        self.auth_client_id = auth_client_id

    @transition(field=status, source=S.ACTIVE, target=S.RESTRICTED)
    def restrict(self):
        pass

    @transition(field=status, source=[S.ACTIVE, S.RESTRICTED, S.DEPRECATED], target=S.SUSPENDED)
    def suspend(self):
        pass

    @transition(field=status, source=[S.RESTRICTED, S.SUSPENDED], target=S.ACTIVE)
    def reinstate(self):
        pass

    @transition(field=status, source=[S.ACTIVE, S.RESTRICTED], target=S.DEPRECATED)
    def deprecate(self, replacement):
        self.replacement = replacement

    @transition(
        field=status, source=[S.RESTRICTED, S.SUSPENDED, S.DEPRECATED, S.REJECTED], target=S.ARCHIVED
    )
    def archive(self):
        pass


class ReviewDecision(models.TextChoices):
    APPROVE = "approve", "approve"
    REJECT = "reject", "reject"


class VerticalReview(models.Model):
    """A vertical owner's decision on one declared vertical of a requested integration."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="vertical_reviews")
    vertical = models.ForeignKey(Vertical, on_delete=models.PROTECT)
    decision = models.CharField(max_length=10, choices=ReviewDecision.choices)
    reason = models.TextField(blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["integration", "vertical"], name="one_review_per_vertical"),
        ]
