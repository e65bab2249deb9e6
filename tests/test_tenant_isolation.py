"""A tenant admin of `ke` sees nothing of `ug` in any portal screen or API response."""
import pytest
from django.contrib import admin
from django.urls import reverse

from audit.models import AuditRecord
from lifecycle import services
from registry.models import IntegrationTemplate, Partner
from scp_core.models import ConsentStatus

from .conftest import make_person

pytestmark = pytest.mark.django_db

UG_MARKERS = [b"Uganda", b"UG-ONLY-SYNC", b"Ugandaperson", b"(ug)"]


@pytest.fixture
def two_tenants(staff, demo):
    template = IntegrationTemplate.objects.get(slug="health-records-basic")
    partner = Partner.objects.get(slug="acme-health")
    made = {}
    for code, name in (("ke", "KE-ONLY-SYNC"), ("ug", "UG-ONLY-SYNC")):
        integration = services.integration_create(
            actor=staff[f"{code}-admin"], tenant=demo[code], partner=partner, integration_name=name,
            verticals=[demo["health"]], template=template,
        )
        made[code] = services.integration_submit(integration=integration, actor=staff[f"{code}-admin"])
    made["ke_person"] = make_person(demo["ke"], "700", [(demo["health"], ConsentStatus.GRANTED)], family_name="Kenyaperson")
    made["ug_person"] = make_person(demo["ug"], "800", [(demo["health"], ConsentStatus.GRANTED)], family_name="Ugandaperson")
    return made


def _admin_pages(made):
    """Every changelist of the admin, plus the ke objects' detail pages."""
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        urls.append(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
    urls.append(reverse("admin:registry_integration_change", args=[made["ke"].pk]))
    urls.append(reverse("admin:registry_integration_history", args=[made["ke"].pk]))
    urls.append(reverse("admin:registry_integration_add"))
    urls.append(reverse("admin:exchange_connector_add"))
    return urls


def test_ke_admin_sees_nothing_of_ug_in_any_screen(client, staff, two_tenants):
    client.force_login(staff["ke-admin"])
    seen_ke = False
    for url in _admin_pages(two_tenants):
        response = client.get(url)
        assert response.status_code in (200, 403), url
        for marker in UG_MARKERS:
            assert marker not in response.content, (url, marker)
        seen_ke |= b"KE-ONLY-SYNC" in response.content
    assert seen_ke  # the screens do show their own tenant
    # Direct URLs of ug objects are not found.
    assert client.get(reverse("admin:registry_integration_change", args=[two_tenants["ug"].pk])).status_code in (302, 404)
    assert b"Ugandaperson" not in client.get(
        reverse("admin:scp_core_person_change", args=[two_tenants["ug_person"].pk]), follow=True
    ).content


def test_ke_admin_sees_nothing_of_ug_in_any_api_response(api, staff, two_tenants):
    api.force_authenticate(staff["ke-admin"])
    listing = api.get("/api/v1/governance/integrations/")
    assert [i["integration_name"] for i in listing.json()] == ["KE-ONLY-SYNC"]
    assert api.get(f"/api/v1/governance/integrations/{two_tenants['ug'].pk}/").status_code == 404
    response = api.post(f"/api/v1/governance/integrations/{two_tenants['ug'].pk}/suspend/", {}, format="json")
    assert response.status_code == 404
    response = api.post("/api/v1/governance/consents/", {
        "person_id": str(two_tenants["ug_person"].pk), "vertical": "health", "status": "withdrawn",
    }, format="json")
    assert response.status_code == 404
    for response in (listing, response):
        for marker in UG_MARKERS:
            assert marker not in response.content


def test_audit_screen_is_scoped_to_the_tenant(client, staff, two_tenants):
    assert AuditRecord.objects.filter(tenant__code="ug").exists()
    client.force_login(staff["ke-admin"])
    page = client.get(reverse("admin:audit_auditrecord_changelist"))
    assert page.status_code == 200
    ug_record = AuditRecord.objects.filter(tenant__code="ug").first()
    assert client.get(reverse("admin:audit_auditrecord_change", args=[ug_record.pk])).status_code in (302, 404)


def test_auditor_sees_everything_and_changes_nothing(client, staff, two_tenants):
    client.force_login(staff["auditor"])
    page = client.get(reverse("admin:registry_integration_changelist"))
    assert b"UG-ONLY-SYNC" in page.content and b"KE-ONLY-SYNC" in page.content
    change = client.get(reverse("admin:registry_integration_change", args=[two_tenants["ke"].pk]))
    assert change.status_code == 200 and b'data-action="' not in change.content
    assert client.get(reverse("admin:registry_integration_add")).status_code == 403
    url = reverse("admin:registry_integration_action", args=[two_tenants["ke"].pk, "suspend"])
    client.post(url, {"reason": "x"})
    two_tenants["ke"].refresh_from_db()
    assert two_tenants["ke"].status == "requested"


def test_exchange_screens_render_for_tenant_admins_and_auditors(client, staff, two_tenants):
    for user in ("ke-admin", "auditor"):
        client.force_login(staff[user])
        for name in ("subscription", "delivery", "importjob", "exportjob", "connector"):
            page = client.get(reverse(f"admin:exchange_{name}_changelist"))
            assert page.status_code == 200, (user, name)
    client.force_login(staff["partner-user"])
    assert client.get(reverse("admin:exchange_delivery_changelist")).status_code == 403
