"""Monitoring charts and the compliance view render real data, scoped by role."""
import datetime

import pytest
from django.utils import timezone

from registry.models import DataContractVersion, Integration

from .exchange_helpers import activate

pytestmark = pytest.mark.django_db


@pytest.fixture
def activity(api, staff, demo, keycloak_clients):
    busy = activate(staff, demo, keycloak_clients, name="busy clinic")
    idle = activate(staff, demo, keycloak_clients, name="idle clinic")
    Integration.objects.filter(pk=idle.integration.pk).update(active_until=timezone.now() + datetime.timedelta(days=3))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {busy.token}")
    for _ in range(3):
        api.get("/api/v1/persons/?vertical=health")
    api.get("/api/v1/persons/?vertical=education")
    return busy, idle


def test_monitoring_charts_show_requests_denials_latency_and_incidents(client, staff, activity):
    client.force_login(staff["auditor"])
    page = client.get("/admin/monitoring/?tenant=ke&hours=6")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="bar-requests"' in html and 'class="bar-denied"' in html and 'class="bar-p95"' in html
    assert "vertical_not_permitted" in html  # denials by reason
    assert "mis-scoped request" in html  # the incident it opened
    assert "(4 in all, 1 denied)" in html
    busy, _ = activity
    one = client.get(f"/admin/monitoring/?integration={busy.integration.pk}").content.decode()
    assert "busy clinic" in one


def test_compliance_lists_what_needs_attention(client, staff, activity):
    client.force_login(staff["ke-admin"])
    html = client.get("/admin/compliance/").content.decode()
    assert "idle clinic" in html and "active_until within 14 days" in html
    assert "credentials never used" in html
    assert "superseded" not in html
    # When the data contract gets a newer version, integrations on the old one are listed
    contract = activity[0].integration.data_contract
    DataContractVersion.objects.create(contract=contract.contract, version=contract.version + 1,
                                       read_fields=contract.read_fields, write_schemas=contract.write_schemas)
    html = client.get("/admin/compliance/").content.decode()
    assert f"data contract {contract.ref} superseded by version {contract.version + 1}" in html
    client.force_login(staff["ug-admin"])
    assert "idle clinic" not in client.get("/admin/compliance/").content.decode()
    client.force_login(staff["ke-health-owner"])
    assert client.get("/admin/compliance/").status_code == 403
