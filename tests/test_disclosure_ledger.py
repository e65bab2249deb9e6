"""Issue #13: the disclosure ledger. One person is walked through every channel by two
integrations with different purposes and masks; the ledger, the portal screen, the report and
the governance API (staff and the citizen app) show exactly those disclosures; an integration
whose purpose the person's consent does not cover receives nothing of them; tampering with a
disclosure is detected; embargoes, withdrawals told only to those who knew, and a partner's own
trail."""
import datetime
import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from audit.chain import seal_chain
from audit.models import AuditEvent, AuditRecord, Disclosure
from exchange import exports, webhooks
from exchange.models import Delivery, EventType, Subscription
from lifecycle.consent import consent_record
from lifecycle.disclosures import integration_embargo
from registry.models import DataContractVersion
from scp_core.errors import PermissionDeniedError, ValidationFailedError
from scp_core.models import Consent, ConsentStatus, Purpose

from .conftest import client_token, make_person, user_token
from .exchange_helpers import activate
from .receiver import Receiver
from .test_audit_trail import VERIFIER

pytestmark = pytest.mark.django_db

CITIZEN_APP = ("scp-citizen-app", "scp-citizen-app-dev-secret")


def _wider_contract():
    """The demo contract with other masks (national_id hashed, birth_date plain) and other
    writers' immunizations readable."""
    v1 = DataContractVersion.objects.get(contract__slug="health-records-basic", version=1)
    fields = {**v1.read_fields["health"], "national_id": "hash", "birth_date": "plain"}
    records = {"immunization": {**v1.read_records["health"]["immunization"], "other_writers": True}}
    return DataContractVersion.objects.create(contract=v1.contract, version=2, read_fields={"health": fields},
                                              write_schemas=v1.write_schemas, read_records={"health": records},
                                              data_categories=v1.data_categories)


@pytest.fixture
def walk(api, staff, demo, keycloak_clients):
    """A (public-health reporting, the template's masks) and B (treatment, other masks) and C
    (research) serve ke/health; the person consents to health for the first two purposes only."""
    a = activate(staff, demo, keycloak_clients, name="reporting A")
    b = activate(staff, demo, keycloak_clients, name="treatment B", data_contract=_wider_contract(), purpose_code="treatment")
    c = activate(staff, demo, keycloak_clients, name="research C", purpose_code="research")
    person = make_person(demo["ke"], "13000001", [(demo["health"], ConsentStatus.GRANTED)])
    Consent.objects.filter(person=person).update(purpose_codes=Consent.purpose_codes_of(["public_health_reporting", "treatment"]))
    return {"a": a, "b": b, "c": c, "person": person}


def _as(api, partner):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    return api


def _walk_every_channel(api, walk):
    a, b, c, person = walk["a"], walk["b"], walk["c"], walk["person"]
    pid = str(person.pk)
    with Receiver() as receiver:
        _as(api, a).post("/api/v1/subscriptions/", {"url": receiver.url, "event_types": ["record.created"]}, format="json")
        # A pulls the list; B reads the person; C, whose purpose is not covered, tries both.
        assert pid in [p["id"] for p in _as(api, a).get("/api/v1/persons/?vertical=health").json()["results"]]
        assert _as(api, b).get(f"/api/v1/persons/{pid}/?vertical=health").status_code == 200
        assert pid not in [p["id"] for p in _as(api, c).get("/api/v1/persons/?vertical=health").json()["results"]]
        refused = _as(api, c).get(f"/api/v1/persons/{pid}/?vertical=health")
        assert refused.status_code == 403 and refused.json()["code"] == "consent_denied"
        assert "purpose" in refused.json()["detail"] and "research" in refused.json()["detail"]
        # A exports and downloads.
        job_id = _as(api, a).post("/api/v1/exports/", {"vertical": "health", "format": "ndjson"}, format="json").json()["id"]
        assert exports.run_export(job_id) == "completed"
        download = _as(api, a).get(f"/api/v1/exports/{job_id}/download/")
        assert pid in b"".join(download.streaming_content).decode()
        # A pushes an immunization: delivered to A's webhook, read by B in its events feed.
        pushed = _as(api, a).post("/api/v1/records/", {"person_id": pid, "vertical": "health", "record_type": "immunization",
                                                       "data": {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}}, format="json")
        assert pushed.status_code == 201
        delivery = Delivery.objects.get(subscription__integration=a.integration, event__event_type=EventType.RECORD_CREATED)
        assert webhooks.deliver(delivery.pk) == "delivered" and len(receiver.received) == 1
    assert _persons_in_feed(api, b, "record.created") == [pid]
    assert _persons_in_feed(api, c, "record.created") == []
    return job_id


def _persons_in_feed(api, partner, event_type):
    return [e["data"]["person_id"] for e in _as(api, partner).get("/api/v1/events/").json()["events"] if e["type"] == event_type]


def _expected(walk):
    a, b = walk["a"].integration, walk["b"].integration
    a.refresh_from_db()
    b.refresh_from_db()
    event_fields = {"person_id": "plain", "record_id": "plain", "record_type": "plain"}
    return {
        (str(a.pk), "api_list"): a.read_scope["health"],
        (str(b.pk), "api_detail"): b.read_scope["health"],
        (str(a.pk), "export"): a.read_scope["health"],
        (str(a.pk), "export_download"): a.read_scope["health"],
        (str(a.pk), "webhook"): event_fields,
        (str(b.pk), "events_feed"): event_fields,
    }


def test_every_channel_is_in_the_ledger_the_screen_the_report_and_the_api_with_its_fields_and_masks(api, client, staff, walk):
    _walk_every_channel(api, walk)
    person, expected = walk["person"], _expected(walk)
    a, b = walk["a"].integration, walk["b"].integration
    assert a.read_scope["health"]["national_id"] == "last:4" and b.read_scope["health"]["national_id"] == "hash"

    # The ledger: exactly those disclosures, with purpose and contract version.
    rows = list(Disclosure.objects.filter(person_ids__contains=[str(person.pk)]))
    assert {(str(d.integration_id), d.channel): d.fields for d in rows} == expected and len(rows) == len(expected)
    assert {d.purpose_code for d in rows if d.integration_id == a.pk} == {"public_health_reporting"}
    assert {d.purpose_code for d in rows if d.integration_id == b.pk} == {"treatment"}
    assert {d.contract_version for d in rows if d.integration_id == b.pk} == {"health-records-basic@v2"}
    assert not Disclosure.objects.filter(integration=walk["c"].integration).exists()
    assert all(d.record.disclosures.filter(pk=d.pk).exists() and d.record.details["disclosures"]["digest"] for d in rows)

    # The governance API: the tenant admin, the auditor and the citizen app see the same.
    citizen = client_token(*CITIZEN_APP).json()["access_token"]
    for token in (user_token("ke-admin"), user_token("auditor"), citizen):
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        page = api.get(f"/api/v1/governance/persons/{person.pk}/disclosures/")
        assert page.status_code == 200, page.content
        body = page.json()
        assert body["withheld"] == 0 and body["next"] is None
        assert {(e["integration_id"], e["channel"]): e["fields"] for e in body["results"]} == expected
        assert [e["audit_record_id"] for e in body["results"]] == sorted((e["audit_record_id"] for e in body["results"]), reverse=True)
        assert {e["partner"] for e in body["results"]} == {"acme-health"}
        assert {e["integration_name"] for e in body["results"]} == {"reporting A", "treatment B"}
    paged = api.get(f"/api/v1/governance/persons/{person.pk}/disclosures/?limit=4").json()
    rest = api.get(paged["next"]).json()
    assert len(paged["results"]) == 4 and len(rest["results"]) == 2 and rest["next"] is None
    # Others are refused: ROOT and the umbrella authority (403), a vertical owner or another
    # tenant's admin (404: not their person); the citizen
    # app's token holds this right only.
    for username, status in (("root", 403), ("umbrella", 403), ("ke-health-owner", 404), ("ug-admin", 404)):
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token(username)}")
        assert api.get(f"/api/v1/governance/persons/{person.pk}/disclosures/").status_code == status
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {citizen}")
    assert api.get("/api/v1/governance/integrations/").status_code == 401
    assert api.get("/api/v1/persons/?vertical=health").status_code == 401

    # The portal screen and the printable report (HTML and JSON), each look audited.
    looks = AuditRecord.objects.filter(event_type=AuditEvent.DISCLOSURES_VIEWED).count()
    client.force_login(staff["ke-admin"])
    screen = client.get(f"/admin/scp_core/person/{person.pk}/disclosures/")
    assert screen.status_code == 200 and screen.content.decode().count('class="disclosure"') == len(expected)
    assert "national_id (last:4)" in screen.content.decode() and "national_id (hash)" in screen.content.decode()
    report = client.get(f"/admin/scp_core/person/{person.pk}/disclosures/report/")
    assert report.status_code == 200 and report.content.decode().count('class="disclosure"') == len(expected)
    as_json = client.get(f"/admin/scp_core/person/{person.pk}/disclosures/report/?format=json").json()
    assert {(e["integration_id"], e["channel"]): e["fields"] for e in as_json["disclosures"]} == expected
    assert AuditRecord.objects.filter(event_type=AuditEvent.DISCLOSURES_VIEWED).count() == looks + 3
    client.force_login(staff["ug-admin"])
    assert client.get(f"/admin/scp_core/person/{person.pk}/disclosures/").status_code == 404


def _superuser_sql(sql):
    subprocess.run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -q -d {connection.settings_dict['NAME']} "
                                            f"-p {connection.settings_dict['PORT'] or 5432}"],
                   input=f"SET session_replication_role = replica; {sql}".encode(), check=True, capture_output=True)


def _verify(*args):
    try:
        call_command("audit_verify", *args)
    except CommandError as exc:
        return str(exc)
    return "OK"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("tamper", ["change", "remove", "add", "retime", "move"])
def test_tampering_with_a_disclosure_is_detected_in_the_database_and_in_an_export(api, staff, walk, tamper, tmp_path):
    _walk_every_channel(api, walk)
    person = walk["person"]
    seal_chain("ke")
    assert _verify("--tenant", "ke", "--no-seal") == "OK"
    out = tmp_path / "export"
    call_command("audit_export", "--tenant", "ke", "--out", str(out))
    assert _verify(str(out)) == "OK"

    # In an export: the disclosure of one line changed; both verifiers name its record.
    lines = (out / "records.jsonl").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if '"disclosures"' in line)
    entry = json.loads(lines[at])
    entry["disclosures"][0]["fields"] = {"id": "plain"}
    lines[at] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    (out / "records.jsonl").write_text("\n".join(lines) + "\n")
    assert str(entry["record_id"]) in _verify(str(out)) and "disclosures" in _verify(str(out))
    standalone = subprocess.run([sys.executable, "-I", str(VERIFIER), str(out)], capture_output=True, text=True)
    assert standalone.returncode == 1 and str(entry["record_id"]) in standalone.stdout + standalone.stderr

    # In the database (an insider bypassing the triggers): detected, naming the record.
    target = Disclosure.objects.filter(person_ids__contains=[str(person.pk)]).order_by("id").first()
    if tamper == "change":
        _superuser_sql(f"UPDATE audit_disclosure SET fields = '{{\"id\": \"plain\"}}' WHERE id = {target.pk}")
    elif tamper == "remove":
        _superuser_sql(f"DELETE FROM audit_disclosure WHERE id = {target.pk}")
    elif tamper == "retime":
        _superuser_sql(f"UPDATE audit_disclosure SET disclosed_at = disclosed_at - interval '1 day' WHERE id = {target.pk}")
    elif tamper == "move":  # to another tenant: it would vanish from the person's report
        _superuser_sql(f"UPDATE audit_disclosure SET tenant_id = (SELECT id FROM scp_core_tenant WHERE code = 'ug') "
                       f"WHERE id = {target.pk}")
    else:  # a disclosure the record never made
        _superuser_sql(f"INSERT INTO audit_disclosure (record_id, disclosed_at, tenant_id, integration_id, partner, vertical, "
                       f"purpose_code, channel, fields, contract_version, person_ids) SELECT record_id, disclosed_at, tenant_id, "
                       f"integration_id, partner, vertical, purpose_code, channel, fields, contract_version, "
                       f"'[\"00000000-0000-0000-0000-000000000001\"]' FROM audit_disclosure WHERE id = {target.pk}")
    failure = _verify("--tenant", "ke", "--no-seal")
    assert failure != "OK" and str(target.record_id) in failure, failure


def test_an_embargo_withholds_an_investigations_disclosures_from_the_person_but_not_from_the_auditor(
        api, client, staff, demo, keycloak_clients):
    police = activate(staff, demo, keycloak_clients, name="investigation D", purpose_code="investigation")
    reporting = activate(staff, demo, keycloak_clients, name="reporting E")
    person = make_person(demo["ke"], "13000002", [(demo["health"], ConsentStatus.GRANTED)])  # every purpose
    # Only the umbrella authority embargoes, only an investigation, only with a reason.
    until = timezone.now() + datetime.timedelta(days=90)
    with pytest.raises(PermissionDeniedError):
        integration_embargo(integration=police.integration, actor=staff["ke-admin"], until=until, reason="case 7")
    with pytest.raises(ValidationFailedError):
        integration_embargo(integration=reporting.integration, actor=staff["umbrella"], until=until, reason="case 7")
    integration_embargo(integration=police.integration, actor=staff["umbrella"], until=until, reason="case 7")
    assert AuditRecord.objects.filter(event_type=AuditEvent.INTEGRATION_EMBARGOED, integration=police.integration).exists()
    for partner in (police, reporting):
        assert _as(api, partner).get(f"/api/v1/persons/{person.pk}/?vertical=health").status_code == 200

    def seen(token):
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return api.get(f"/api/v1/governance/persons/{person.pk}/disclosures/").json()

    for token in (user_token("ke-admin"), client_token(*CITIZEN_APP).json()["access_token"]):
        body = seen(token)
        assert body["withheld"] == 1 and [e["integration_name"] for e in body["results"]] == ["reporting E"]
    audited = seen(user_token("auditor"))
    assert audited["withheld"] == 0 and {e["integration_name"] for e in audited["results"]} == {"reporting E", "investigation D"}
    assert next(e for e in audited["results"] if e["integration_name"] == "investigation D")["embargoed_until"]
    for viewer in ("ke-admin", "auditor"):  # the report handed to the person withholds, whoever prints it
        client.force_login(staff[viewer])
        report = client.get(f"/admin/scp_core/person/{person.pk}/disclosures/report/")
        assert "no-store" in report["Cache-Control"]  # the admin's never_cache
        text = report.content.decode()
        assert 'id="withheld"' in text and "investigation D" not in text and "reporting E" in text, viewer
    # Lifted (by the umbrella authority): shown to the person again.
    integration_embargo(integration=police.integration, actor=staff["umbrella"], until=None, reason="case closed")
    assert seen(user_token("ke-admin"))["withheld"] == 0


def test_a_withdrawal_is_told_only_to_the_integrations_that_received_the_person(api, staff, demo, keycloak_clients):
    knew = activate(staff, demo, keycloak_clients, name="knew")
    never = activate(staff, demo, keycloak_clients, name="never")
    person = make_person(demo["ke"], "13000003", [(demo["health"], ConsentStatus.GRANTED)])
    with Receiver() as receiver:
        for partner in (knew, never):
            subscribed = _as(api, partner).post("/api/v1/subscriptions/", {"url": receiver.url,
                                                                           "event_types": ["consent.withdrawn"]}, format="json")
            assert subscribed.status_code == 201, subscribed.content
    assert _as(api, knew).get(f"/api/v1/persons/{person.pk}/?vertical=health").status_code == 200
    consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
    told = Delivery.objects.filter(event__event_type=EventType.CONSENT_WITHDRAWN)
    assert set(told.values_list("subscription__integration_id", flat=True)) == {knew.integration.pk}
    assert Subscription.objects.filter(integration=never.integration).exists()
    assert _persons_in_feed(api, knew, "consent.withdrawn") == [str(person.pk)]
    assert _persons_in_feed(api, never, "consent.withdrawn") == []


def test_narrowing_a_consents_purposes_tells_only_the_integrations_of_the_purposes_withdrawn(
        api, staff, demo, keycloak_clients):
    reporting = activate(staff, demo, keycloak_clients, name="reporting")
    treating = activate(staff, demo, keycloak_clients, name="treating", purpose_code="treatment")
    person = make_person(demo["ke"], "13000005", [(demo["health"], ConsentStatus.GRANTED)])  # every purpose
    with Receiver() as receiver:
        for partner in (reporting, treating):
            assert _as(api, partner).post("/api/v1/subscriptions/", {"url": receiver.url, "event_types": ["consent.withdrawn"]},
                                          format="json").status_code == 201
            assert _as(api, partner).get(f"/api/v1/persons/{person.pk}/?vertical=health").status_code == 200
    consent_record(person=person, vertical=demo["health"], status=ConsentStatus.GRANTED, purposes=["treatment"],
                   actor=staff["ke-admin"])
    told = Delivery.objects.filter(event__event_type=EventType.CONSENT_WITHDRAWN)
    assert set(told.values_list("subscription__integration_id", flat=True)) == {reporting.integration.pk}
    assert "public_health_reporting" in told.get().event.data["purposes"]
    assert _as(api, reporting).get(f"/api/v1/persons/{person.pk}/?vertical=health").status_code == 403
    assert _as(api, treating).get(f"/api/v1/persons/{person.pk}/?vertical=health").status_code == 200
    assert _persons_in_feed(api, treating, "consent.withdrawn") == []


def test_a_head_request_or_a_webhook_that_never_connected_releases_nothing(api, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="quiet")
    person = make_person(demo["ke"], "13000006", [(demo["health"], ConsentStatus.GRANTED)])
    assert _as(api, partner).head("/api/v1/persons/?vertical=health").status_code == 200
    assert _as(api, partner).head(f"/api/v1/persons/{person.pk}/?vertical=health").status_code == 200
    assert list(Disclosure.objects.values_list("channel", flat=True)) == []
    with Receiver() as receiver:
        closed = receiver.url  # nothing listens there once the receiver is gone
        assert _as(api, partner).post("/api/v1/subscriptions/", {"url": closed, "event_types": ["record.created"]},
                                      format="json").status_code == 201
    assert _as(api, partner).post("/api/v1/records/", {"person_id": str(person.pk), "vertical": "health",
                                                       "record_type": "immunization",
                                                       "data": {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}},
                                  format="json").status_code == 201
    delivery = Delivery.objects.get(subscription__integration=partner.integration)
    webhooks.deliver(delivery.pk)
    assert delivery.attempt_log.get().error == "ConnectionError"
    assert not Disclosure.objects.filter(channel="webhook").exists()


def test_a_consent_names_only_its_tenants_purposes(api, staff, demo):
    person = make_person(demo["ke"], "13000004", [])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token('ke-admin')}")
    bad = api.post("/api/v1/governance/consents/", {"person_id": str(person.pk), "vertical": "health", "status": "granted",
                                                    "purposes": ["treatment", "marketing"]}, format="json")
    assert bad.status_code == 422 and "marketing" in json.dumps(bad.json()["errors"])
    assert not Consent.objects.filter(person=person).exists()
    good = api.post("/api/v1/governance/consents/", {"person_id": str(person.pk), "vertical": "health", "status": "granted",
                                                     "purposes": ["treatment"]}, format="json")
    assert good.status_code == 201 and good.json()["purposes"] == ["treatment"]
    empty = api.post("/api/v1/governance/consents/", {"person_id": str(person.pk), "vertical": "health", "status": "granted",
                                                      "purposes": []}, format="json")
    assert empty.status_code == 422  # an empty list would read as "every purpose"


def test_a_partner_sees_what_its_integrations_received(api, client, staff, walk):
    _walk_every_channel(api, walk)
    # Reading records discloses the record fields, named by record type, with their masks.
    assert _as(api, walk["a"]).get("/api/v1/records/?vertical=health").status_code == 200
    records = Disclosure.objects.get(integration=walk["a"].integration, channel="records")
    assert records.person_ids == [str(walk["person"].pk)]
    assert records.fields == {"person_id": "plain", "immunization.vaccine": "plain", "immunization.dose": "plain",
                              "immunization.date": "plain"}
    client.force_login(staff["partner-user"])
    assert 'id="received-link"' in client.get("/admin/registry/integration/").content.decode()
    page = client.get("/admin/registry/integration/received/")
    assert page.status_code == 200
    text = page.content.decode()
    for name, channel in (("reporting A", "api_list"), ("treatment B", "events_feed")):
        assert name in text and channel in text
    assert "research C" not in text  # it received nothing


def test_a_tenant_admin_keeps_the_purpose_vocabulary_and_only_root_marks_an_investigation(client, staff, demo):
    client.force_login(staff["ke-admin"])
    added = client.post("/admin/scp_core/purpose/add/", {"tenant": demo["ke"].pk, "code": "vaccination_outreach",
                                                         "name": "Vaccination outreach"})
    assert added.status_code == 302
    outreach = Purpose.objects.get(tenant=demo["ke"], code="vaccination_outreach")
    assert AuditRecord.objects.filter(event_type=AuditEvent.TENANT_SETTINGS_CHANGED, tenant=demo["ke"],
                                      details__purpose__after__code="vaccination_outreach").exists()
    refused = client.post(f"/admin/scp_core/purpose/{outreach.pk}/change/", {"name": "Outreach", "investigation": "on"})
    assert refused.status_code == 200 and not Purpose.objects.get(pk=outreach.pk).investigation  # the form says why
    # Another tenant's vocabulary is neither listed nor writable.
    assert client.post("/admin/scp_core/purpose/add/", {"tenant": demo["ug"].pk, "code": "x", "name": "X"}).status_code == 200
    assert not Purpose.objects.filter(code="x").exists()
    ug_research = Purpose.objects.get(tenant=demo["ug"], code="research")
    assert client.get(f"/admin/scp_core/purpose/{ug_research.pk}/change/").status_code == 302  # not found: to the index
    client.force_login(staff["root"])
    assert client.post(f"/admin/scp_core/purpose/{outreach.pk}/change/", {"name": "Outreach", "investigation": "on"}).status_code == 302
    assert Purpose.objects.get(pk=outreach.pk).investigation
