"""Batch exports (consent re-read per chunk, exclusions audited, files expire) and connectors
(schema drift fails safely with an incident and recovers; an outage degrades and keeps data)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord, Incident, IncidentKind
from exchange.connectors import connector_run
from exchange.exports import expire_exports, run_export
from exchange.models import Connector, ConnectorStatus, ExportJob
from scp_core.models import ConsentStatus, VerticalRecord
from lifecycle.consent import consent_record

from .conftest import make_person
from .exchange_helpers import activate

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner(staff, demo, keycloak_clients):
    return activate(staff, demo, keycloak_clients, name="batch")


def test_export_excludes_persons_whose_consent_ends_mid_export(api, partner, staff, demo, tmp_path, settings):
    settings.SCP_EXPORT_DIR = str(tmp_path)
    persons = sorted((make_person(demo["ke"], f"2200{i:03d}", [(demo["health"], ConsentStatus.GRANTED)]) for i in range(9)),
                     key=lambda p: p.pk)
    make_person(demo["ug"], "22009999", [(demo["health"], ConsentStatus.GRANTED)])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    response = api.post("/api/v1/exports/", {"vertical": "health", "format": "ndjson"}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    pending = api.get(f"/api/v1/exports/{job_id}/download/")
    assert pending.status_code == 409 and pending.json()["code"] == "invalid_transition"
    late = persons[-1]  # in the last chunk: withdrawn after the first chunk was written

    def withdraw_once(written):
        if written and not withdraw_once.done:
            withdraw_once.done = True
            consent_record(person=late, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
    withdraw_once.done = False

    run_export(job_id, chunk=4, progress=withdraw_once)
    status = api.get(f"/api/v1/exports/{job_id}/").json()
    assert status["status"] == "completed" and status["rows_written"] == 8 and status["rows_excluded"] == 1
    download = api.get(f"/api/v1/exports/{job_id}/download/")
    rows = [json.loads(line) for line in b"".join(download.streaming_content).decode().splitlines()]
    assert len(rows) == 8 and str(late.pk) not in {r["id"] for r in rows}
    assert set(rows[0]) == {"id", "given_name", "family_name", "national_id", "birth_date", "sex", "district"}
    audit = AuditRecord.objects.get(event_type=AuditEvent.BATCH_EXPORT)
    assert audit.details["consent"]["excluded_during_export"] == [str(late.pk)]
    # Files expire.
    ExportJob.objects.filter(pk=job_id).update(expires_at=timezone.now())
    assert expire_exports() == 1
    assert api.get(f"/api/v1/exports/{job_id}/download/").status_code == 404


class _Partner:
    """A partner system serving JSON records on loopback, whose answers the test changes."""

    def __init__(self):
        self.status, self.records = 200, []
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = json.dumps({"records": partner.records}).encode()
                self.send_response(partner.status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/immunizations"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_connector_fails_safely_on_schema_drift_and_recovers(partner, demo):
    person = make_person(demo["ke"], "22100001", [(demo["health"], ConsentStatus.GRANTED)])
    remote = _Partner()
    connector = Connector.objects.create(integration=partner.integration, name="clinic-pull", adapter="json_https",
                                         source=remote.url, vertical=demo["health"], record_type="immunization")
    good = {"external_id": "imm-1", "person_id": str(person.pk), "vaccine": "BCG", "dose": 1, "date": "2026-01-02"}
    remote.records = [good]
    assert connector_run(connector) == ConnectorStatus.HEALTHY
    assert VerticalRecord.objects.get(import_key__endswith=":imm-1").data == {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}
    # The partner changes a field's type: nothing is written, an incident is opened.
    remote.records = [good | {"dose": "2"}, {**good, "external_id": "imm-2"}]
    connector.refresh_from_db()
    assert connector_run(connector) == ConnectorStatus.FAILING
    assert VerticalRecord.objects.count() == 1
    assert VerticalRecord.objects.get().data["dose"] == 1
    assert Incident.objects.filter(kind=IncidentKind.SCHEMA_DRIFT, integration=partner.integration).exists()
    # Fixed: the next run recovers.
    remote.records = [good | {"dose": 2}, {**good, "external_id": "imm-2"}]
    connector.refresh_from_db()
    assert connector_run(connector) == ConnectorStatus.HEALTHY
    assert VerticalRecord.objects.count() == 2 and VerticalRecord.objects.get(import_key__endswith=":imm-1").data["dose"] == 2
    remote.server.shutdown()


def test_connector_outage_degrades_backs_off_and_keeps_the_last_good_data(partner, demo):
    person = make_person(demo["ke"], "22100002", [(demo["health"], ConsentStatus.GRANTED)])
    remote = _Partner()
    remote.records = [{"external_id": "a", "person_id": str(person.pk), "vaccine": "OPV", "dose": 1, "date": "2026-02-03"}]
    connector = Connector.objects.create(integration=partner.integration, name="flaky", adapter="json_https",
                                         source=remote.url, vertical=demo["health"], record_type="immunization")
    assert connector_run(connector) == ConnectorStatus.HEALTHY
    remote.status = 503
    gaps = []
    for _ in range(3):
        connector.refresh_from_db()
        now = timezone.now()
        assert connector_run(connector, now=now) == ConnectorStatus.DEGRADED
        connector.refresh_from_db()
        gaps.append((connector.next_run_at - now).total_seconds())
    assert gaps == [30, 60, 120]  # exponential backoff
    assert VerticalRecord.objects.count() == 1  # the last good data is kept
    remote.status = 200
    assert connector_run(connector) == ConnectorStatus.HEALTHY
    remote.server.shutdown()


def test_csv_file_adapter(partner, demo, tmp_path):
    person = make_person(demo["ke"], "22100003", [(demo["health"], ConsentStatus.GRANTED)])
    drop = tmp_path / "drop.csv"
    drop.write_text(f"external_id,person_id,vaccine,dose,date\nx1,{person.pk},MMR,1,2026-03-04\n")
    connector = Connector.objects.create(integration=partner.integration, name="sftp-drop", adapter="csv_file",
                                         source=str(drop), vertical=demo["health"], record_type="immunization")
    assert connector_run(connector) == ConnectorStatus.HEALTHY
    assert VerticalRecord.objects.get().data == {"vaccine": "MMR", "dose": 1, "date": "2026-03-04"}
    drop.unlink()
    connector.refresh_from_db()
    assert connector_run(connector) == ConnectorStatus.DEGRADED
