"""Prometheus metrics on an authenticated endpoint."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from exchange import batch, webhooks
from exchange.models import Delivery
from scp_core.models import ConsentStatus

from .conftest import make_person
from .exchange_helpers import activate
from .receiver import Receiver

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
    assert f'scp_exchange_request_seconds_bucket{{integration="{pk}",le="0.5",tenant="ke"}}' in body
    client.force_login(staff["auditor"])
    assert client.get("/metrics").status_code == 200
    client.force_login(staff["ke-health-owner"])
    assert client.get("/metrics").status_code == 401


def test_webhook_and_batch_throughput_are_counted_per_tenant_and_integration(api, client, staff, demo, keycloak_clients,
                                                                             settings, tmp_path):
    settings.SCP_METRICS_TOKEN = "scrape-me"
    settings.SCP_IMPORT_DIR = str(tmp_path)
    partner = activate(staff, demo, keycloak_clients, name="metered-batch")
    person = make_person(demo["ke"], "77700000", [(demo["health"], ConsentStatus.GRANTED)])
    pk = str(partner.integration.pk)
    # Given one delivered webhook
    with Receiver() as receiver:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
        assert api.post("/api/v1/subscriptions/", {"url": receiver.url, "event_types": ["record.created"]},
                        format="json").status_code == 201
        assert api.post("/api/v1/records/", {"person_id": str(person.pk), "vertical": "health", "record_type": "immunization",
                                             "data": {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}},
                        format="json").status_code == 201
        assert webhooks.deliver(Delivery.objects.get(subscription__integration=partner.integration).pk) == "delivered"
    # and an import of one good and one bad row
    upload = SimpleUploadedFile("rows.csv", f"person_id,vaccine,dose,date\n{person.pk},OPV,1,2026-05-17\n{person.pk},OPV,0,x\n".encode())
    job = batch.import_store(integration=partner.integration, vertical=demo["health"], record_type="immunization", upload=upload)
    assert batch.run_import(job.pk) == "completed"

    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").content.decode()
    assert f'scp_webhook_deliveries_total{{integration="{pk}",result="delivered",tenant="ke"}} 1.0' in body
    assert f'scp_batch_rows_total{{integration="{pk}",kind="import",outcome="written",tenant="ke"}} 1.0' in body
    assert f'scp_batch_rows_total{{integration="{pk}",kind="import",outcome="failed",tenant="ke"}} 1.0' in body
