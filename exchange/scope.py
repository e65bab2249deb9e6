"""The one scope every data path of the exchange reads through (issue #11).

A `DataScope` is built once per request, or once per chunk of a background job, from
(integration, vertical, now). It answers everything the policy decides about data:

- may the integration act now (state and active window, for reads or writes);
- which persons (its tenant's, with consent for the vertical in effect at `at` and covering
  the integration's declared purpose);
- which person fields, masked how (the read scope fixed at activation);
- which record types and record fields it may read (the contract's record rules, narrowed
  by the reviewer, and whether records of other writers are included).

Views, exports and their downloads, imports, connectors, events and webhook deliveries ask
it; none of them writes the consent filter or the list of serving states again.
"""
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from registry.models import SERVING_STATES, IntegrationStatus
from scp_core.errors import ApiError
from scp_core.models import Consent, Person, Vertical, VerticalRecord

from .masking import minimize

S = IntegrationStatus
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def refusal(integration, *, write=False, at=None):
    """Why the integration may not act now (an ApiError with the contract's code), or None.
    Active serves all; Restricted reads only; Deprecated serves; every other state refuses."""
    status = integration.status
    if status == S.SUSPENDED:
        return ApiError(403, "integration_suspended", "The integration is suspended.")
    if status == S.RESTRICTED and write:
        return ApiError(403, "integration_restricted", "The integration is restricted to reads.")
    if status not in SERVING_STATES:
        return ApiError(403, "integration_not_active", f"The integration is {status}, not active.")
    at = at or timezone.now()
    if not integration.is_in_active_window(at):
        if integration.agreement_lapsed(at):  # its agreement's end counts like `active_until`
            return ApiError(403, "outside_active_window", "The integration's data-sharing agreement has expired.")
        return ApiError(403, "outside_active_window", "The integration is outside its active window.")
    return None


@dataclass(frozen=True)
class DataScope:
    integration: object  # registry.models.Integration
    vertical: str        # the vertical's code
    at: datetime

    @classmethod
    def of(cls, integration, vertical, at=None):
        """`vertical` is a code or a Vertical; `at` defaults to now."""
        code = vertical if isinstance(vertical, str) else vertical.code
        return cls(integration=integration, vertical=code, at=at or timezone.now())

    # --- may it act now -------------------------------------------------------------------

    def refusal(self, *, write=False):
        return refusal(self.integration, write=write, at=self.at)

    # --- persons --------------------------------------------------------------------------

    @property
    def person_fields(self):
        """{field: masking rule} of persons in this vertical (empty: none readable)."""
        return self.integration.read_scope.get(self.vertical, {})

    def _consents(self, purpose=True):
        consents = Consent.objects.filter(vertical_id=Vertical.id_of(self.vertical)).in_effect_at(self.at)
        return consents.covering(self.integration.purpose_code) if purpose else consents

    def persons(self):
        """Persons of the integration's tenant whose consent for the vertical is in effect."""
        return Person.objects.filter(tenant_id=self.integration.tenant_id,
                                     id__in=self._consents().values("person_id"))

    def tenant_persons(self):
        """Every person of the tenant, consent or not (to tell 404 from 403)."""
        return Person.objects.filter(tenant_id=self.integration.tenant_id)

    def consenting(self, person_ids):
        """The subset of `person_ids` (an iterable, or a subquery expression) that are persons of
        the tenant with consent in effect, as a set of strings."""
        ids = self._consents().filter(person__tenant_id=self.integration.tenant_id, person_id__in=person_ids)
        return {str(p) for p in ids.values_list("person_id", flat=True)}

    def has_consent(self, person_id):
        return bool(self.consenting([person_id]))

    def consent_refusal(self, person_id):
        """Why the person's data may not be released here (an ApiError), or None."""
        if self.has_consent(person_id):
            return None
        if self._consents(purpose=False).filter(person_id=person_id).exists():
            return ApiError(403, "consent_denied", "The person's consent does not cover this integration's "
                                                   f"purpose ({self.integration.purpose_code or 'none declared'}).")
        return ApiError(403, "consent_denied", "The person's consent for this vertical is not in effect.")

    # --- what was released (the disclosure ledger, audit.ledger) ------------------------

    def release(self, channel, person_ids, fields=None):
        """The ledger entry of releasing `fields` ({field: masking rule}; by default the person
        fields) of `person_ids` through `channel` under this scope."""
        integration = self.integration
        return {"integration": integration.pk, "tenant_id": integration.tenant_id, "partner": integration.partner.slug,
                "vertical": self.vertical, "purpose_code": integration.purpose_code, "channel": channel,
                "fields": dict(self.person_fields if fields is None else fields),
                "contract_version": integration.data_contract.ref, "person_ids": [str(p) for p in person_ids]}

    def record_release(self, channel, records):
        """The ledger entries of releasing `records` (minimized dicts), one per record type."""
        by_type = {}
        for record in records:
            by_type.setdefault(record["record_type"], set()).add(record["person_id"])
        releases = []
        for record_type, person_ids in sorted(by_type.items()):
            rule = self.record_rules.get(record_type, {}).get("fields", {})
            fields = {"person_id": "plain", **{f"{record_type}.{name}": masking for name, masking in rule.items()}}
            releases.append(self.release(channel, sorted(person_ids), fields))
        return releases

    def minimize_person(self, person):
        return minimize(person, self.person_fields)

    # --- records --------------------------------------------------------------------------

    @property
    def record_rules(self):
        """{record_type: {"fields": {field: rule}, "other_writers": bool}} readable here."""
        return self.integration.record_scope.get(self.vertical, {})

    def records(self):
        """Readable records: of the contract's readable types, of consenting persons of the
        tenant, and of other writers only where the contract allows it."""
        allowed = Q(pk__in=[])
        for record_type, rule in self.record_rules.items():
            q = Q(record_type=record_type)
            if not rule.get("other_writers"):
                q &= Q(source_integration_id=self.integration.pk)
            allowed |= q
        return VerticalRecord.objects.filter(
            allowed, vertical_id=Vertical.id_of(self.vertical), person__tenant_id=self.integration.tenant_id,
            person_id__in=self._consents().values("person_id"),
        )

    def minimize_record(self, record):
        """A record as this integration may see it: its `data` cut to the readable fields,
        each masked by its rule."""
        fields = self.record_rules.get(record.record_type, {}).get("fields", {})
        data = record.data if isinstance(record.data, dict) else {}
        return {
            "id": str(record.id),
            "person_id": str(record.person_id),
            "vertical": self.vertical,
            "record_type": record.record_type,
            "data": minimize({f: data.get(f) for f in fields}, fields),
            "created_at": record.created_at.isoformat().replace("+00:00", "Z"),
            "updated_at": record.updated_at.isoformat().replace("+00:00", "Z"),
        }
