"""The benchmark's data: persons of `ke` who all consent (so the governed and the bare
endpoint serve the same rows), and an integration walked to Active through the services,
each step by its role, with a real Keycloak client and a rate limit the load cannot reach."""
import datetime
import time
from dataclasses import dataclass

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from lifecycle import keycloak, services
from lifecycle.agreements import agreement_upload
from registry.models import Integration, IntegrationTemplate, Partner, RateLimitPolicy
from lifecycle.demo import seed_persons, seed_reference_data
from scp_core.models import ConsentStatus, Person, Tenant, Vertical
from lifecycle.consent import consent_record

TENANT, VERTICAL = "ke", "health"


@dataclass
class Partnered:
    integration: Integration
    client_id: str
    client_secret: str

    def token(self):
        response = requests.post(settings.KEYCLOAK_TOKEN_URL, timeout=10, data={
            "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret})
        response.raise_for_status()
        return response.json()["access_token"]

    def close(self):
        """Remove the run's Keycloak client (the integration row stays, as history)."""
        keycloak.delete_client(self.client_id)


def staff(username):
    return get_user_model().objects.get(username=username)


def reference():
    """The reference data (tenants, verticals, demo staff, template): (tenant, vertical). What the
    scale curve starts from: it keeps its persons' mixed consent, which seed() would re-grant."""
    seed_reference_data()
    return Tenant.objects.get(code=TENANT), Vertical.objects.get(code=VERTICAL)


def seed(persons):
    """Reference data, and at least `persons` persons of the tenant, every one consenting (the
    main run's database; on a grown one of mixed consent this re-grants person by person)."""
    tenant, vertical = reference()
    missing = persons - Person.objects.filter(tenant=tenant).count()
    if missing > 0:
        seed_persons(missing, tenant_codes=[TENANT], consent_mix=(("granted", 1.0),))
    regrant(Person.objects.in_tenant(tenant).exclude(pk__in=Person.objects.with_consent_in_effect(vertical)), vertical)
    return tenant, vertical


def regrant(persons, vertical):
    """Consent granted again (through the service, so audit and events stay true)."""
    root = staff("root")
    for person in persons:
        consent_record(person=person, vertical=vertical, status=ConsentStatus.GRANTED, actor=root)


def activate(tenant, vertical):
    """A new integration per run, walked Draft → Active by the demo roles."""
    integration = services.integration_create(
        actor=staff("ke-admin"), tenant=tenant, partner=Partner.objects.get(slug="acme-health"),
        integration_name=f"bench-{int(time.time())}", verticals=[vertical],
        template=IntegrationTemplate.objects.get(slug="health-records-basic", version=1),
    )
    integration = services.integration_submit(integration=integration, actor=staff("ke-admin"))
    integration = services.integration_review(integration=integration, actor=staff("ke-health-owner"),
                                              vertical=vertical, decision="approve")
    _sign_agreement(integration)
    integration = services.integration_approve(integration=integration, actor=staff("umbrella"))
    policy, _ = RateLimitPolicy.objects.get_or_create(name="bench-unlimited",
                                                      defaults={"requests_per_minute": 100_000_000})
    integration, credentials = services.integration_activate(integration=integration, actor=staff("ke-admin"))
    integration, _ = services.integration_configure_controls(integration=integration, actor=staff("ke-admin"),
                                                             rate_limit_policy=policy)
    return Partnered(integration, credentials["client_id"], credentials["client_secret"])


def _sign_agreement(integration):
    """The data-sharing agreement the sign-off needs (a plain-text one, built in memory)."""
    contract, today = integration.data_contract, timezone.localdate()
    agreement_upload(
        integration=integration, actor=staff("ke-admin"),
        document=SimpleUploadedFile("bench-agreement.txt", b"Data-sharing agreement of the benchmark run.\n"),
        signatories=["Benchmark (ke)", "Benchmark (acme-health)"], purposes=[integration.purpose_code],
        fields=sorted({f for v in integration.vertical_codes() for f in contract.approvable_fields(v)}),
        retention_days=1, effective_from=today, expires_on=today + datetime.timedelta(days=30),
    )
