"""The SCP core data the Integration Layer guards: tenants, verticals, persons, consent, records."""
import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords


class Tenant(models.Model):
    """A country served by SCP; every integration and every person belongs to exactly one."""

    code = models.SlugField(max_length=8, unique=True, help_text="Country code, e.g. 'ke'.")
    name = models.CharField(max_length=100)
    audit_retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Audit records older than this are purged by whole sealed segments; empty keeps them."
    )
    # Periodic re-approval of every integration by its vertical owners (issue #14).
    recertification_interval_days = models.PositiveIntegerField(
        null=True, blank=True, default=180,
        help_text="Every integration is re-approved by its vertical owners this often; empty: never.",
    )
    recertification_answer_days = models.PositiveIntegerField(
        default=14, help_text="Days the owners have to answer; unanswered, the integration is restricted, "
        "and suspended as many days later.",
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.name} ({self.code})"


class Vertical(models.Model):
    """A domain of SCP (health, education, social protection, ...)."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.code

    @classmethod
    def id_of(cls, code):
        """The id of the vertical `code`, as a subquery the database runs once per statement.

        Hot filters compare `vertical_id` with it instead of joining the vertical by code: the
        planner then knows one vertical's share of the rows (a third, not "one row") and probes
        the consent index person by person, so a page deep in a million persons costs what the
        first one does. Nothing is cached in the process, so no test or deployment can see a
        stale id."""
        return models.Subquery(cls.objects.filter(code=code).values("id")[:1])


class Sex(models.TextChoices):
    FEMALE = "F", "female"
    MALE = "M", "male"
    OTHER = "X", "other / not stated"


class PersonQuerySet(models.QuerySet):
    def in_tenant(self, tenant):
        return self.filter(tenant=tenant)

    def with_consent_in_effect(self, vertical, at=None):
        """Persons whose consent for `vertical` is in effect at `at` (default: now).

        Evaluated in the database on every call, so a withdrawal is effective on the
        very next request: nothing is cached.
        """
        consents = Consent.objects.in_effect(vertical, at=at)
        return self.filter(id__in=consents.values("person_id"))


class Person(models.Model):
    """A person registered in SCP, scoped to one tenant."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="persons")
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    national_id = models.CharField(max_length=32)
    birth_date = models.DateField()
    sex = models.CharField(max_length=1, choices=Sex.choices)
    phone = models.CharField(max_length=32, blank=True)
    district = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = PersonQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "national_id"], name="person_unique_national_id"),
        ]
        indexes = [models.Index(fields=["tenant", "updated_at"])]

    def __str__(self):
        return f"{self.given_name} {self.family_name}"


class Purpose(models.Model):
    """A purpose of processing in the tenant's controlled vocabulary (issue #13): each
    integration declares one, reviewed with its request; a consent may cover only some."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="purposes")
    code = models.SlugField(max_length=40)
    name = models.CharField(max_length=200)
    investigation = models.BooleanField(
        default=False, help_text="Disclosures for this purpose may be embargoed from the person's report "
                                 "until a release date the umbrella authority approves.")

    class Meta:
        ordering = ["tenant", "code"]
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="purpose_code_unique_per_tenant")]

    def __str__(self):
        return f"{self.code} ({self.tenant_id})"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", "granted"
    WITHDRAWN = "withdrawn", "withdrawn"


class ConsentQuerySet(models.QuerySet):
    def in_effect(self, vertical, at=None):
        """Consents granting access to `vertical` at time `at`.

        A change takes effect at `effective_at`; until then the status before the change
        (`prior_status`) still holds. So a withdrawal dated now blocks at once, and one
        dated in the future leaves the grant in force until that moment.
        """
        return self.filter(vertical=vertical).in_effect_at(at)

    def covering(self, purpose_code):
        """Consents that cover `purpose_code`: those naming no purpose cover every purpose."""
        return self.filter(Q(purpose_codes="") | Q(purpose_codes__contains=f",{purpose_code},"))

    def in_effect_at(self, at=None):
        """The consent rule itself (see in_effect); the exchange reads it only through
        exchange.scope.DataScope."""
        at = at or timezone.now()
        return self.filter(
            Q(status=ConsentStatus.GRANTED, effective_at__lte=at)
            | Q(prior_status=ConsentStatus.GRANTED, effective_at__gt=at)
        )


class Consent(models.Model):
    """The current consent of one person for one vertical; every change is kept in history."""

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="consents")
    vertical = models.ForeignKey(Vertical, on_delete=models.PROTECT, related_name="consents")
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    prior_status = models.CharField(max_length=10, choices=ConsentStatus.choices, blank=True)
    effective_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(default=timezone.now)
    # The purposes the consent covers, as ",code,code," (a LIKE both databases index-free
    # evaluate in the consent filter); empty: every purpose of the vertical.
    purpose_codes = models.CharField(max_length=500, blank=True, default="", db_default="")

    objects = ConsentQuerySet.as_manager()
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["person", "vertical"], name="consent_one_per_person_vertical"),
        ]
        indexes = [models.Index(fields=["vertical", "status", "effective_at"])]

    def __str__(self):
        return f"{self.person_id}/{self.vertical_id}: {self.status}"

    @property
    def purposes(self):
        """The purpose codes the consent names ([]: every purpose)."""
        return [code for code in self.purpose_codes.split(",") if code]

    @staticmethod
    def purpose_codes_of(codes):
        return f",{','.join(sorted(set(codes)))}," if codes else ""


class VerticalRecord(models.Model):
    """A record held in one vertical about one person (e.g. an immunization)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="records")
    # No index of its own: (vertical, updated_at) below serves every lookup by vertical, and each
    # index is paid for by every row a batch import writes.
    vertical = models.ForeignKey(Vertical, on_delete=models.PROTECT, related_name="records", db_index=False)
    record_type = models.CharField(max_length=60)
    data = models.JSONField()
    source_integration = models.ForeignKey(
        "registry.Integration", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The row's natural key in a batch import ("<job id>:<line>"), so a resumed job never duplicates.
    # Unique by a constraint rather than `unique=True`, which would add a second (LIKE) index
    # that no query uses and every imported row pays for.
    import_key = models.CharField(max_length=80, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["vertical", "updated_at"])]
        constraints = [models.UniqueConstraint(fields=["import_key"], name="verticalrecord_import_key_unique")]

    def __str__(self):
        return f"{self.record_type} of {self.person_id}"
