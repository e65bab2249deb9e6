"""The shared integration registry (spec §4.5) and tenant-scoped integrations (spec §6.4)."""
import uuid

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
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
    # Told of its integrations' state changes, expiries and failing endpoints, beside the
    # partner's users (lifecycle.notifications).
    contact_email = models.EmailField(blank=True)

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


class ImmutableError(Exception):
    """A change to something that governance has frozen (referenced contracts, archived integrations)."""


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
    `read_records`:  {"health": {"immunization": {"fields": {"vaccine": "plain", "date": "year"},
                                                  "other_writers": false}}}
                     which record types and which fields of their `data` may be read, masked
                     how, and whether records written by other integrations are included (a
                     type absent here is not readable at all).
    """

    contract = models.ForeignKey(DataContract, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    read_fields = models.JSONField(default=dict)
    write_schemas = models.JSONField(default=dict)
    read_records = models.JSONField(default=dict, blank=True)
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

    def approvable_fields(self, vertical_code):
        """What a reviewer may approve in a vertical: person fields, and record fields as
        "record_type.field"."""
        records = self.read_records.get(vertical_code, {})
        return set(self.read_fields.get(vertical_code, {})) | {
            f"{record_type}.{field}" for record_type, rule in records.items() for field in rule.get("fields", {})
        }

    def readable_verticals(self):
        return set(self.read_fields)

    def is_referenced(self):
        return self.templates.exists() or self.integrations.exists()

    def save(self, *args, **kwargs):
        # A version that a template or an integration points at is what was approved:
        # changing it would change an approval after the fact. Make a new version instead.
        if self.pk and self.is_referenced():
            raise ImmutableError(f"Data contract {self.ref} is referenced and can no longer change.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.is_referenced():
            raise ImmutableError(f"Data contract {self.ref} is referenced and cannot be deleted.")
        return super().delete(*args, **kwargs)


class IntegrationTemplate(models.Model):
    """A vetted, reusable integration definition shared across tenants (spec §4.5)."""

    slug = models.SlugField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=200)
    purpose = models.TextField()
    purpose_code = models.SlugField(max_length=40, blank=True,
                                    help_text="The purpose it proposes, from each tenant's vocabulary.")
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

    @property
    def is_vetted(self):
        return self.vetted_at is not None

    def newest_vetted(self):
        return (
            IntegrationTemplate.objects.filter(slug=self.slug, vetted_at__isnull=False).order_by("-version").first()
        )


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
# The states in which an integration is served (Restricted for reads only, Deprecated with
# headers); every other state refuses. The one list: the exchange, jobs and monitoring use it.
SERVING_STATES = frozenset({S.ACTIVE, S.RESTRICTED, S.DEPRECATED})


class IntegrationQuerySet(models.QuerySet):
    def visible_to(self, roles):
        """Integrations a user with these `lifecycle.roles.Roles` may see."""
        if roles.sees_everything:
            return self
        q = models.Q(tenant_id__in=roles.admin_tenants) | models.Q(partner_id__in=roles.partners)
        for tenant_id, vertical_id in roles.owned_verticals:
            q |= models.Q(tenant_id=tenant_id, verticals__id=vertical_id)
        return self.filter(q).distinct()

    def operated_by(self, roles):
        """Integrations these roles operate (not merely review): every one for the global roles,
        their tenants' for tenant admins, their partner's for partner users."""
        if roles.sees_everything:
            return self
        return self.filter(models.Q(tenant_id__in=roles.admin_tenants) | models.Q(partner_id__in=roles.partners))

    def awaiting_review_by(self, roles):
        """Requested integrations that declare a vertical these roles own in its tenant and that
        vertical's owner has not reviewed yet (the review queue, and "waiting for me")."""
        q = models.Q(pk__in=[])
        for tenant_id, vertical_id in roles.owned_verticals:
            q |= models.Q(tenant_id=tenant_id, verticals__id=vertical_id) & ~models.Q(vertical_reviews__vertical_id=vertical_id)
        return self.filter(status=S.REQUESTED).filter(q).distinct()

    def serving(self):
        return self.filter(status__in=SERVING_STATES)

    def for_token(self, integration_id):
        """The integration named by a partner token, with what the policy checks joined in."""
        return self.select_related("tenant", "partner", "data_contract__contract", "rate_limit_policy").filter(
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
    # The declared purpose, from the tenant's vocabulary (scp_core.Purpose); reviewed with the
    # request, editable only in Draft, so fixed by activation (issue #13).
    purpose_code = models.SlugField(max_length=40, blank=True)
    # Disclosures to an investigation are withheld from the person's report until this date,
    # set only with the umbrella authority's recorded approval (lifecycle.disclosures).
    embargo_until = models.DateTimeField(null=True, blank=True, editable=False)
    active_from = models.DateTimeField(default=timezone.now)
    active_until = models.DateTimeField(null=True, blank=True)
    # When its data-sharing agreement ends (kept by lifecycle.agreements: the latest upload's
    # before the sign-off, then the approved or accepted one's): read with the row and checked
    # beside `active_until` on every request, so an expired agreement stops the exchange at
    # once, before the sweep suspends the integration.
    agreement_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The data-sharing agreement the umbrella authority signed off (recorded by the approval) or
    # later accepted as its renewal: the one in force, whose end `agreement_until` is once the
    # integration is approved. A later upload waits for acceptance (lifecycle.agreements).
    approved_agreement = models.ForeignKey(
        "DataSharingAgreement", null=True, blank=True, editable=False, on_delete=models.PROTECT, related_name="+"
    )
    data_contract = models.ForeignKey(DataContractVersion, on_delete=models.PROTECT, related_name="integrations")
    auth_client_id = models.CharField(max_length=120, blank=True, db_index=True)
    rate_limit_policy = models.ForeignKey(
        RateLimitPolicy, null=True, blank=True, on_delete=models.PROTECT, related_name="integrations"
    )
    replacement = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaces"
    )
    # The read scope fixed at activation: {vertical: {field: masking rule}} (see
    # effective_read_fields). Stored so the governed request path reads it with the record.
    read_scope = models.JSONField(default=dict, blank=True, editable=False)
    # The record read scope fixed at activation (see effective_record_read).
    record_scope = models.JSONField(default=dict, blank=True, editable=False)
    # Layered controls (spec §7.2).
    ip_allowlist = models.JSONField(default=list, blank=True, help_text="CIDRs allowed to call; empty: any.")
    api_key_prefix = models.CharField(max_length=12, blank=True, help_text="First characters of the API key, to identify it.")
    api_key_hash = models.CharField(max_length=128, blank=True, editable=False)
    high_risk = models.BooleanField(default=False, help_text="High-risk integrations must present their pinned client certificate (mTLS).")
    client_cert_sha256 = models.CharField(max_length=64, blank=True, help_text="SHA-256 fingerprint (hex) of the pinned client certificate.")
    other_tenants = models.ManyToManyField(
        Tenant, blank=True, related_name="cross_tenant_integrations",
        help_text="Tenants beyond its own that a cross-tenant integration reaches (needs an umbrella grant).",
    )
    cross_tenant_granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="created_integrations"
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
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

    def save(self, *args, **kwargs):
        # Archived integrations are immutable history (spec §6.2 step 7): refuse any change.
        if self.pk and not self._state.adding:
            stored = Integration.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if stored == S.ARCHIVED:
                raise ImmutableError("An archived integration is locked and cannot change.")
        super().save(*args, **kwargs)

    @property
    def newer_template(self):
        """The newest vetted version of its template, when newer than the one it was approved on."""
        if self.template is None:
            return None
        newest = self.template.newest_vetted()
        return newest if newest and newest.version > self.template.version else None

    def writable_record_types(self, vertical_code):
        """{record_type: JSON Schema} this integration may write in a vertical it declared."""
        if vertical_code not in {v.code for v in self.verticals.all()}:
            return {}
        return self.data_contract.write_schemas.get(vertical_code, {})

    def effective_read_fields(self):
        """{vertical: {field: masking rule}}: the strictest intersection of the template's and
        the integration's verticals, the contract version's fields and what each vertical's
        reviewer approved (a reviewer may narrow the fields, never widen them)."""
        verticals = {v.code for v in self.verticals.all()}
        if self.template is not None:
            verticals &= {v.code for v in self.template.verticals.all()}
        narrowed = {r.vertical.code: r.approved_fields for r in self.vertical_reviews.all() if r.approved_fields}
        effective = {}
        for code in verticals & set(self.data_contract.read_fields):
            fields = self.data_contract.read_fields[code]
            if code in narrowed:
                fields = {f: rule for f, rule in fields.items() if f in narrowed[code]}
            effective[code] = fields
        return effective

    def effective_record_read(self):
        """{vertical: {record_type: {"fields": {field: rule}, "other_writers": bool}}}: the
        contract's record read rules in the effective read verticals. A reviewer who narrowed
        the fields narrows these too: only entries "record_type.field" they listed remain."""
        verticals = set(self.effective_read_fields())
        narrowed = {r.vertical.code: set(r.approved_fields) for r in self.vertical_reviews.all() if r.approved_fields}
        effective = {}
        for code in verticals & set(self.data_contract.read_records):
            types = {}
            for record_type, rule in self.data_contract.read_records[code].items():
                fields = dict(rule.get("fields", {}))
                if code in narrowed:
                    fields = {f: m for f, m in fields.items() if f"{record_type}.{f}" in narrowed[code]}
                if fields:
                    types[record_type] = {"fields": fields, "other_writers": bool(rule.get("other_writers"))}
            if types:
                effective[code] = types
        return effective

    @property
    def is_serving(self):
        return self.status in SERVING_STATES

    def is_in_active_window(self, at=None):
        at = at or timezone.now()
        return (self.active_from <= at and (self.active_until is None or at < self.active_until)
                and not self.agreement_lapsed(at))

    def agreement_lapsed(self, at=None):
        """Whether its data-sharing agreement has ended (none recorded: no end)."""
        return self.agreement_until is not None and (at or timezone.now()) >= self.agreement_until

    # --- transitions (spec §6.1, §6.3); bodies change fields only -------------------------

    @transition(field=status, source=S.DRAFT, target=S.REQUESTED)
    def submit(self, by):
        self.submitted_by = by

    @transition(field=status, source=S.REQUESTED, target=S.REVIEWED)
    def review(self):
        pass

    @transition(field=status, source=[S.REQUESTED, S.REVIEWED], target=S.REJECTED)
    def reject(self):
        pass

    @transition(field=status, source=S.REVIEWED, target=S.APPROVED)
    def approve(self, cross_tenant_granted_by=None, agreement=None, agreement_until=None):
        self.cross_tenant_granted_by = cross_tenant_granted_by
        # The agreement signed off, and its end: from now on a new upload waits for acceptance.
        self.approved_agreement = agreement
        self.agreement_until = agreement_until

    @transition(field=status, source=S.APPROVED, target=S.ACTIVE)
    def activate(self, auth_client_id):
        self.auth_client_id = auth_client_id
        self.read_scope = self.effective_read_fields()
        self.record_scope = self.effective_record_read()

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
    approved_fields = models.JSONField(
        default=list, blank=True, help_text="Fields approved for reading; empty means all the contract allows."
    )
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["integration", "vertical"], name="one_review_per_vertical"),
        ]


@receiver(m2m_changed, sender=Integration.verticals.through)
@receiver(m2m_changed, sender=Integration.other_tenants.through)
def _refuse_scope_change_of_archived(sender, instance, action, **kwargs):
    if action.startswith("pre_") and isinstance(instance, Integration) and instance.status == S.ARCHIVED:
        raise ImmutableError("An archived integration is locked and cannot change.")


class CredentialKind(models.TextChoices):
    CLIENT_SECRET = "client_secret", "client secret (Keycloak)"
    API_KEY = "api_key", "API key"


class CredentialQuerySet(models.QuerySet):
    def usable(self, at=None):
        """Credentials that still authenticate: not revoked, and current or within their grace."""
        at = at or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=at))


class Credential(models.Model):
    """One issued credential of an integration: its Keycloak client secret or its API key.

    A rotation issues a new one and gives the old one an `expires_at` (its grace period, at
    most 7 days); revocation ends it at once. The secret itself is never stored: an API key
    only as its SHA-256 hash, a client secret not at all (Keycloak holds it)."""

    integration = models.ForeignKey(Integration, on_delete=models.PROTECT, related_name="credentials")
    kind = models.CharField(max_length=20, choices=CredentialKind.choices)
    prefix = models.CharField(max_length=12, blank=True, help_text="First characters of an API key, to identify it.")
    key_hash = models.CharField(max_length=128, blank=True, editable=False)
    issued_at = models.DateTimeField(default=timezone.now)
    issued_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="End of its grace period after a rotation.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        ordering = ["integration", "kind", "-issued_at"]
        indexes = [models.Index(fields=["integration", "kind", "revoked_at"])]
        constraints = [
            # One current credential per integration and kind: a rotation or a registration
            # that would make a second one fails instead of leaving a phantom in the register.
            models.UniqueConstraint(fields=["integration", "kind"],
                                    condition=models.Q(revoked_at__isnull=True, expires_at__isnull=True),
                                    name="credential_one_current_per_kind"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.integration_id} issued {self.issued_at:%Y-%m-%d}"


def _agreements_storage():
    # Stored outside the web root (never under MEDIA_ROOT or STATIC_ROOT): served only by the
    # portal's own view after its permission check.
    return FileSystemStorage(location=settings.SCP_AGREEMENTS_DIR, base_url=None)


class DataSharingAgreementQuerySet(models.QuerySet):
    def visible_to(self, roles):
        """Agreements of the integrations a user with these `lifecycle.roles.Roles` may see."""
        if roles.sees_everything:
            return self
        return self.filter(integration__in=Integration.objects.visible_to(roles).values("pk"))


class DataSharingAgreement(models.Model):
    """The signed agreement an integration is approved under (issue #14): the document pinned
    by its SHA-256, with what it covers. Its expiry suspends the integration like `active_until`.
    Rows are not changed after upload: a renewed agreement is a new row."""

    integration = models.ForeignKey(Integration, on_delete=models.PROTECT, related_name="agreements")
    document = models.FileField(storage=_agreements_storage, upload_to="%Y/%m/", max_length=300)
    filename = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    signatories = models.JSONField(default=list, help_text="Who signed, for whom: [\"name (organization)\", ...]")
    purposes = models.JSONField(default=list, help_text="Purpose codes the agreement covers.")
    fields = models.JSONField(default=list, help_text="Fields the agreement lets the partner receive.")
    retention_days = models.PositiveIntegerField(help_text="How long the partner may keep what it receives.")
    effective_from = models.DateField()
    expires_on = models.DateField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now)

    objects = DataSharingAgreementQuerySet.as_manager()

    class Meta:
        ordering = ["integration", "-uploaded_at"]

    def __str__(self):
        return f"{self.filename} (sha256 {self.sha256[:12]}…, until {self.expires_on})"
