"""Issue #11, one test per finding of "Why": each failed on the main before the one scope
(`exchange.scope.DataScope`) and the object-scoped admin, and passes after. Real PostgreSQL,
Redis and Keycloak tokens throughout."""
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent, AuditRecord
from exchange.batch import import_store, run_import
from exchange.connectors import connector_run, run_due
from exchange.exports import run_export
from exchange.models import Connector, ExportJob, ImportJob
from lifecycle import services
from lifecycle.models import Role, RoleAssignment
from registry.models import DataContract, DataContractVersion, IntegrationTemplate, Partner
from scp_core.models import Consent, ConsentStatus, Tenant, VerticalRecord
from lifecycle.consent import consent_record

from .agreement_helpers import sign_agreement
from .conftest import client_token, make_person
from .exchange_helpers import activate

pytestmark = pytest.mark.django_db
GRANTED, WITHDRAWN = ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN


def _get(api, token, path):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api.get(path)


def _activate_reviewed(staff, demo, keycloak_clients, *, approved_fields, **create):
    """An Active ke/health integration whose reviewer approved only `approved_fields`; its token."""
    integration = services.integration_create(
        actor=staff["ke-admin"], tenant=demo["ke"], partner=Partner.objects.get(slug="acme-health"),
        integration_name="reviewed", verticals=[demo["health"]], **{"purpose_code": "treatment", **create})
    keycloak_clients.append(integration.client_id_for_keycloak)
    integration = services.integration_submit(integration=integration, actor=staff["ke-admin"])
    integration = services.integration_review(integration=integration, actor=staff["ke-health-owner"], vertical=demo["health"],
                                              decision="approve", approved_fields=approved_fields)
    sign_agreement(integration, staff["ke-admin"])
    integration = services.integration_approve(integration=integration, actor=staff["umbrella"])
    _integration, credentials = services.integration_activate(integration=integration, actor=staff["ke-admin"])
    return client_token(credentials["client_id"], credentials["client_secret"]).json()["access_token"]


# --- admin history screens -------------------------------------------------------------------


@pytest.fixture
def ug_consent(demo):
    person = make_person(demo["ug"], "UG-HIST-1", [(demo["health"], GRANTED)], family_name="Historyperson")
    consent = Consent.objects.get(person=person)
    consent_record(person=person, vertical=demo["health"], status=WITHDRAWN,
                   actor=get_user_model().objects.get(username="ug-admin"))
    return Consent.objects.get(pk=consent.pk)


@pytest.mark.parametrize("username", ["ke-admin", "auditor", "ke-health-owner", "partner-user"])
def test_nobody_outside_the_tenant_and_no_read_only_role_can_read_or_revert_a_consent_through_history(
        client, staff, ug_consent, username):
    client.force_login(staff[username])
    version = ug_consent.history.order_by("history_id").first()  # the granted version
    history_url = reverse("admin:scp_core_consent_history", args=[ug_consent.pk])
    form_url = reverse("admin:scp_core_consent_simple_history", args=[ug_consent.pk, version.history_id])
    for url in (history_url, form_url):
        page = client.get(url)
        if username != "auditor":  # the auditor may read every tenant, never change anything
            assert page.status_code in (302, 403, 404), (url, page.status_code)
            assert b"Historyperson" not in page.content
    posted = client.post(form_url, {"person": str(ug_consent.person_id), "vertical": ug_consent.vertical_id,
                                    "status": GRANTED, "prior_status": "", "effective_at_0": "2026-01-01",
                                    "effective_at_1": "00:00:00", "recorded_at_0": "2026-01-01", "recorded_at_1": "00:00:00"})
    assert posted.status_code in (302, 403, 404)
    ug_consent.refresh_from_db()
    assert ug_consent.status == WITHDRAWN


def test_the_tenants_own_admin_reads_history_but_cannot_revert_it(client, staff, ug_consent):
    client.force_login(staff["ug-admin"])
    version = ug_consent.history.order_by("history_id").first()
    assert client.get(reverse("admin:scp_core_consent_history", args=[ug_consent.pk])).status_code == 200
    form_url = reverse("admin:scp_core_consent_simple_history", args=[ug_consent.pk, version.history_id])
    assert client.get(form_url).status_code == 200
    assert client.post(form_url, {"status": GRANTED}).status_code == 403
    ug_consent.refresh_from_db()
    assert ug_consent.status == WITHDRAWN


# --- records minimized like persons ----------------------------------------------------------


@pytest.fixture
def two_writers(staff, demo, keycloak_clients):
    reader = activate(staff, demo, keycloak_clients, name="reader")
    writer = activate(staff, demo, keycloak_clients, name="writer")
    person = make_person(demo["ke"], "REC-1", [(demo["health"], GRANTED)])
    for partnered, vaccine in ((reader, "BCG"), (writer, "OPV")):
        VerticalRecord.objects.create(person=person, vertical=demo["health"], record_type="immunization",
                                      data={"vaccine": vaccine, "dose": 1, "date": "2026-01-02", "note": "not in the contract"},
                                      source_integration=partnered.integration)
    VerticalRecord.objects.create(person=person, vertical=demo["health"], record_type="diagnosis",
                                  data={"code": "A00"}, source_integration=reader.integration)
    return reader, writer, person


def test_records_are_minimized_by_the_contract_and_other_writers_are_hidden(api, two_writers):
    reader, _writer, _person = two_writers
    listed = _get(api, reader.token, "/api/v1/records/?vertical=health").json()["results"]
    # Only its own immunization: not the other integration's, not a type the contract does not
    # let it read, and `data` cut to the contract's fields.
    assert [(r["record_type"], r["data"]) for r in listed] == [("immunization", {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"})]


def test_a_new_contract_version_can_let_records_of_other_writers_be_read_masked(api, staff, demo, keycloak_clients, two_writers):
    _reader, _writer, person = two_writers
    v1 = DataContractVersion.objects.get(contract__slug="health-records-basic", version=1)
    v2 = DataContractVersion.objects.create(
        contract=DataContract.objects.get(slug="health-records-basic"), version=2, read_fields=v1.read_fields,
        write_schemas=v1.write_schemas, data_categories=v1.data_categories,
        read_records={"health": {"immunization": {"fields": {"vaccine": "plain", "date": "year"}, "other_writers": True}}},
    )
    token = _activate_reviewed(staff, demo, keycloak_clients, data_contract=v2,
                               approved_fields=["id", "immunization.vaccine", "immunization.date"])
    listed = _get(api, token, "/api/v1/records/?vertical=health").json()["results"]
    assert sorted(r["data"]["vaccine"] for r in listed) == ["BCG", "OPV"]
    assert all(r["data"] == {"vaccine": r["data"]["vaccine"], "date": 2026} for r in listed)
    # The reviewer narrowed the persons' fields to `id` too.
    person_page = _get(api, token, f"/api/v1/persons/{person.pk}/?vertical=health").json()
    assert person_page == {"id": str(person.pk)}


# --- exports, imports and connectors ---------------------------------------------------------


@pytest.fixture
def partner(staff, demo, keycloak_clients):
    return activate(staff, demo, keycloak_clients, name="batch")


def test_an_export_downloaded_after_a_withdrawal_no_longer_holds_that_person(api, partner, staff, demo, tmp_path, settings):
    settings.SCP_EXPORT_DIR = str(tmp_path)
    persons = [make_person(demo["ke"], f"EXP-{i}", [(demo["health"], GRANTED)]) for i in range(3)]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    for file_format in ("ndjson", "csv"):
        job_id = api.post("/api/v1/exports/", {"vertical": "health", "format": file_format}, format="json").json()["id"]
        run_export(job_id)
        assert api.get(f"/api/v1/exports/{job_id}/").json()["rows_written"] == len(persons) - (file_format == "csv")
        if file_format == "ndjson":  # withdrawn after the export completed, before the download
            consent_record(person=persons[0], vertical=demo["health"], status=WITHDRAWN, actor=staff["ke-admin"])
        download = api.get(f"/api/v1/exports/{job_id}/download/")
        body = b"".join(download.streaming_content).decode()
        assert str(persons[0].pk) not in body and str(persons[1].pk) in body
        audit = AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST, details__path=f"/api/v1/exports/{job_id}/download/").get()
        if file_format == "ndjson":
            assert audit.details["consent"]["excluded_at_download"] == [str(persons[0].pk)]
        else:  # the csv export ran after the withdrawal: nothing to exclude at download
            assert body.splitlines()[0].startswith("id,") and len(body.splitlines()) == 3


def test_jobs_stop_within_a_chunk_when_the_integration_is_suspended_and_say_why(api, partner, staff, demo, tmp_path, settings):
    settings.SCP_EXPORT_DIR, settings.SCP_IMPORT_DIR = str(tmp_path / "exports"), str(tmp_path / "imports")
    persons = [make_person(demo["ke"], f"SUS-{i}", [(demo["health"], GRANTED)]) for i in range(6)]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    job_id = api.post("/api/v1/exports/", {"vertical": "health", "format": "ndjson"}, format="json").json()["id"]

    def suspend_after_first_chunk(written):
        if written and partner.refresh().status == "active":
            services.integration_suspend(integration=partner.integration, actor=staff["ke-admin"], reason="breach")

    assert run_export(job_id, chunk=2, progress=suspend_after_first_chunk) == "failed"
    status = api.get(f"/api/v1/exports/{job_id}/")  # the partner's token is refused now
    assert status.status_code == 403 and status.json()["code"] == "integration_suspended"
    job = ExportJob.objects.get(pk=job_id)
    assert job.status == "failed" and job.error.startswith("integration_suspended") and job.rows_written == 2 and not job.file_path

    # An import queued before the suspension writes nothing and says why.
    rows = "".join(f"{p.pk},BCG,1,2026-01-02\n" for p in persons)
    upload = SimpleUploadedFile("rows.csv", f"person_id,vaccine,dose,date\n{rows}".encode())
    job = import_store(integration=partner.refresh(), vertical=demo["health"], record_type="immunization", upload=upload)
    assert run_import(job.pk) == "failed"
    job = ImportJob.objects.get(pk=job.pk)
    assert job.error.startswith("integration_suspended") and not VerticalRecord.objects.exists()

    # A connector of the suspended integration pulls nothing and says why.
    connector = Connector.objects.create(integration=partner.integration, name="c", adapter="csv_file",
                                         source=str(tmp_path / "missing.csv"), vertical=demo["health"], record_type="immunization")
    connector_run(connector)
    connector.refresh_from_db()
    assert connector.last_error.startswith("integration_suspended") and connector.consecutive_failures == 0


# --- aggregates ------------------------------------------------------------------------------


def test_no_count_below_the_threshold_comes_back_by_differencing_the_offered_queries(api, partner, demo, settings):
    settings.SCP_AGGREGATE_MIN_CELL = 5
    for i in range(12):
        make_person(demo["ke"], f"AGG-A{i}", [(demo["health"], GRANTED)], district="Kisumu", sex="F")
    for i in range(2):
        make_person(demo["ke"], f"AGG-B{i}", [(demo["health"], GRANTED)], district="Lamu", sex="M")
    total = _get(api, partner.token, "/api/v1/aggregates/?vertical=health").json()["total"]
    assert total == 14
    for group_by in ("district", "sex", "birth_year"):
        cells = _get(api, partner.token, f"/api/v1/aggregates/?vertical=health&group_by={group_by}").json()["cells"]
        hidden = [c for c in cells if c["suppressed"]]
        difference = total - sum(c["count"] for c in cells if not c["suppressed"])
        # Lamu (2) is hidden; were Kisumu shown, the total minus Kisumu would give Lamu back.
        # The hidden cells are at least two and sum to at least 2t - 1 (or are all of them).
        assert bool(hidden) == (group_by != "birth_year"), cells  # everyone was born in 1990
        assert not hidden or len(hidden) >= 2 and (difference >= 2 * 5 - 1 or len(hidden) == len(cells)), (group_by, cells)


def test_group_by_only_over_fields_the_integration_may_read(api, staff, demo, keycloak_clients):
    token = _activate_reviewed(staff, demo, keycloak_clients, approved_fields=["id", "sex"],
                               template=IntegrationTemplate.objects.get(slug="health-records-basic"))
    assert _get(api, token, "/api/v1/aggregates/?vertical=health&group_by=sex").status_code == 200
    for group_by in ("district", "birth_year"):
        denied = _get(api, token, f"/api/v1/aggregates/?vertical=health&group_by={group_by}")
        assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"


# --- governed admin screens write through services ---------------------------------------------


def test_role_assignments_connectors_and_tenant_settings_are_audited_with_history(client, staff, demo, partner, tmp_path):
    client.force_login(staff["root"])
    response = client.post(reverse("admin:lifecycle_roleassignment_add"),
                           {"user": staff["auditor"].pk, "role": Role.TENANT_ADMIN, "tenant": demo["ke"].pk})
    assert response.status_code == 302, response.content[-2000:]
    assignment = RoleAssignment.objects.get(user=staff["auditor"], role=Role.TENANT_ADMIN)
    assert assignment.history.count() == 1
    assert AuditRecord.objects.filter(event_type=AuditEvent.ROLE_CHANGED, details__granted__role=Role.TENANT_ADMIN).exists()

    response = client.post(reverse("admin:scp_core_tenant_change", args=[demo["ke"].pk]),
                           {"code": "ke", "name": "Kenya", "audit_retention_days": "400",
                            "recertification_interval_days": "90", "recertification_answer_days": "14"})
    assert response.status_code == 302
    assert Tenant.objects.get(code="ke").history.count() >= 1
    changed = AuditRecord.objects.get(event_type=AuditEvent.TENANT_SETTINGS_CHANGED)
    assert changed.details["after"]["audit_retention_days"] == "400"
    assert changed.details["after"]["recertification_interval_days"] == "90"

    client.force_login(staff["ke-admin"])
    response = client.post(reverse("admin:exchange_connector_add"), {
        "integration": partner.integration.pk, "name": "clinic feed", "adapter": "csv_file", "source": str(tmp_path / "x.csv"),
        "vertical": demo["health"].pk, "record_type": "immunization", "every_seconds": "3600"})
    assert response.status_code == 302, response.content[-2000:]
    connector = Connector.objects.get(name="clinic feed")
    assert connector.history.count() == 1
    assert AuditRecord.objects.filter(event_type=AuditEvent.CONNECTOR_CONFIGURED, integration=partner.integration).exists()
    # The tenant's own admin may not touch roles or tenant settings.
    assert client.post(reverse("admin:lifecycle_roleassignment_add"),
                       {"user": staff["ke-admin"].pk, "role": Role.ROOT}).status_code == 403
    assert not RoleAssignment.objects.filter(user=staff["ke-admin"], role=Role.ROOT).exists()


# --- staff tokens ------------------------------------------------------------------------------


def test_the_governance_api_takes_only_staff_access_tokens_issued_for_it(api, staff, partner, settings):
    import requests

    from .conftest import user_token

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token('ke-admin')}")
    assert api.get("/api/v1/governance/integrations/").status_code == 200
    grant = requests.post(settings.KEYCLOAK_TOKEN_URL, data={
        "grant_type": "password", "client_id": "scp-cli", "username": "ke-admin", "password": "ke-admin", "scope": "openid",
    }, timeout=10).json()
    for token in (grant["id_token"], grant["refresh_token"], partner.token):  # not staff access tokens for this API
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        response = api.get("/api/v1/governance/integrations/")
        assert response.status_code == 401 and response.json()["code"] == "token_invalid"


# --- found by an attacker's review of the change ------------------------------------------------


def test_group_by_is_refused_over_a_masked_field(api, staff, demo, keycloak_clients):
    """Cell labels would unmask a masked field: a hashed district counted per cell, matched to
    the hashes of the persons' list, gives the hashes back their names."""
    v1 = DataContractVersion.objects.get(contract__slug="health-records-basic", version=1)
    hashed = DataContractVersion.objects.create(
        contract=DataContract.objects.get(slug="health-records-basic"), version=3,
        read_fields={"health": {**v1.read_fields["health"], "district": "hash"}}, write_schemas=v1.write_schemas)
    token = _activate_reviewed(staff, demo, keycloak_clients, approved_fields=[], data_contract=hashed)
    denied = _get(api, token, "/api/v1/aggregates/?vertical=health&group_by=district")
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
    assert _get(api, token, "/api/v1/aggregates/?vertical=health&group_by=birth_year").status_code == 200  # year: allowed


def test_a_csv_export_whose_cells_span_lines_is_still_filtered_row_by_row(api, partner, staff, demo, tmp_path, settings):
    settings.SCP_EXPORT_DIR = str(tmp_path)
    persons = [make_person(demo["ke"], f"NL-{i}", [(demo["health"], GRANTED)], given_name="Multi\nLine",
                           family_name=f"Row{i}") for i in range(4)]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    job_id = api.post("/api/v1/exports/", {"vertical": "health", "format": "csv"}, format="json").json()["id"]
    run_export(job_id)
    consent_record(person=persons[1], vertical=demo["health"], status=WITHDRAWN, actor=staff["ke-admin"])
    body = b"".join(api.get(f"/api/v1/exports/{job_id}/download/").streaming_content).decode()
    assert "Row1" not in body and str(persons[1].pk) not in body
    assert all(f"Row{i}" in body and str(persons[i].pk) in body for i in (0, 2, 3))


def test_job_endpoints_hold_to_the_token_verticals(api, partner, demo):
    """A job in a vertical the token does not carry is refused like any mis-scoped request."""
    job = ExportJob.objects.create(integration=partner.integration, vertical=demo["education"], file_format="csv")
    response = _get(api, partner.token, f"/api/v1/exports/{job.pk}/")
    assert response.status_code == 403 and response.json()["code"] == "vertical_not_permitted"


def test_one_broken_connector_does_not_stop_the_others(partner, demo, tmp_path):
    (tmp_path / "bad.csv").write_bytes(b"external_id,person_id,vaccine,dose,date\n\xff\xfe,x\n")
    person = make_person(demo["ke"], "CONN-OK", [(demo["health"], GRANTED)])
    (tmp_path / "good.csv").write_text(f"external_id,person_id,vaccine,dose,date\ne1,{person.pk},BCG,1,2026-01-02\n")
    for name in ("bad", "good"):
        Connector.objects.create(integration=partner.integration, name=name, adapter="csv_file",
                                 source=str(tmp_path / f"{name}.csv"), vertical=demo["health"], record_type="immunization")
    outcome = run_due()
    assert sorted(outcome.values()) == ["failing", "healthy"]
    assert VerticalRecord.objects.filter(person=person).count() == 1
    outside = Connector.objects.create(integration=partner.integration, name="etc", adapter="csv_file", source="/etc/passwd",
                                       vertical=demo["health"], record_type="immunization")
    assert connector_run(outside) == "failing"  # a source outside the connector files directory is refused


def test_an_autocomplete_lookup_of_persons_is_audited(client, staff, demo):
    person = make_person(demo["ke"], "AC-1", [(demo["health"], GRANTED)], family_name="Lookedup")
    client.force_login(staff["ke-admin"])
    response = client.get("/admin/autocomplete/", {"app_label": "scp_core", "model_name": "consent",
                                                   "field_name": "person", "term": "Lookedup"})
    if response.status_code == 200 and b"Lookedup" in response.content:
        viewed = AuditRecord.objects.filter(event_type=AuditEvent.PORTAL_PERSON_VIEWED, details__screen="person autocomplete")
        assert viewed.exists() and str(person.pk) in viewed.get().details["persons"]
    else:  # the lookup is not offered at all: nothing shown, nothing to record
        assert b"Lookedup" not in response.content
