"""Prometheus metrics on an authenticated endpoint."""
import pytest

from .exchange_helpers import activate

pytestmark = pytest.mark.django_db


def test_metrics_count_exchange_requests_and_need_authentication(api, client, staff, demo, keycloak_clients, settings):
    settings.SCP_METRICS_TOKEN = "scrape-me"
    partner = activate(staff, demo, keycloak_clients, name="metered")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    assert api.get("/api/v1/persons/?vertical=health").status_code == 200
    assert api.get("/api/v1/persons/?vertical=education").status_code == 403
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").content.decode()
    pk = str(partner.integration.pk)
    assert f'scp_exchange_requests_total{{code="",integration="{pk}",status="200",tenant="ke"}}' in body
    assert f'scp_exchange_requests_total{{code="vertical_not_permitted",integration="{pk}",status="403",tenant="ke"}}' in body
    assert 'scp_exchange_request_seconds_bucket{le="0.5",tenant="ke"}' in body
    client.force_login(staff["auditor"])
    assert client.get("/metrics").status_code == 200
    client.force_login(staff["ke-health-owner"])
    assert client.get("/metrics").status_code == 401
