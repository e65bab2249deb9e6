"""The policy matrix of the exchange (issue #4): real Keycloak tokens driven through every
rule, each allowed and each denied case, checking status, code and the audit record."""
import datetime
import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord, AuditResult, Incident, IncidentKind
from exchange.models import ExportJob
from exchange.pushes import expire_idempotency_keys
from lifecycle import keycloak, services
from registry.models import Integration, RateLimitPolicy
from scp_core.models import ConsentStatus, VerticalRecord

from .conftest import client_token, make_person
from .exchange_helpers import activate

pytestmark = pytest.mark.django_db
GRANTED, WITHDRAWN = ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN
PERSONS = "/api/v1/persons/?vertical=health"


@pytest.fixture
def world(staff, demo, keycloak_clients):
    health = demo["health"]
    people = {
        "granted": make_person(demo["ke"], "90011111", [(health, GRANTED)], given_name="Grace", phone="+254711111111"),
        "withdrawn": make_person(demo["ke"], "90022222", [(health, WITHDRAWN)]),
        "ug": make_person(demo["ug"], "90033333", [(health, GRANTED)]),
    }
    partner = activate(staff, demo, keycloak_clients)
    return partner, people


def call(api, token, path, method="get", body=None, **headers):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", **headers)
    if method == "get":
        return api.get(path)
    return api.post(path, body, format="json")


def last_audit():
    return AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST).latest("id")


def assert_denied(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    record = last_audit()
    if status == 401 and "unauthenticated_refusals" in record.details:
        return record  # nobody was authenticated: an address's refusals are recorded once a window
    assert record.status_code == status and record.error_code == code
    assert record.result == (AuditResult.DENIED if status in (401, 403, 429) else AuditResult.FAILURE)
    return record


def assert_allowed(response, status=200):
    assert response.status_code == status, response.content
    record = last_audit()
    assert record.result == AuditResult.SUCCESS and record.status_code == status
    return record


# --- token --------------------------------------------------------------------------------


def test_token_rules(api, world, settings):
    partner, _ = world
    record = assert_allowed(call(api, partner.token, PERSONS))
    assert record.client_id == partner.client_id and record.details["token"]["kid"]
    api.credentials()
    assert_denied(api.get(PERSONS), 401, "token_missing")
    assert_denied(call(api, "garbage", PERSONS), 401, "token_invalid")
    # A realm token without the exchange audience (the portal's own service account).
    portal = client_token(settings.KEYCLOAK_PORTAL_CLIENT_ID, settings.KEYCLOAK_PORTAL_CLIENT_SECRET).json()["access_token"]
    assert_denied(call(api, portal, PERSONS), 401, "token_invalid")


def test_expired_token_is_refused(api, world, settings):
    partner, _ = world
    settings.SCP_JWT_LEEWAY_SECONDS = 0
    uuid_ = keycloak.find_client(partner.client_id)["id"]
    keycloak._admin.request("PUT", f"/clients/{uuid_}", json={
        **keycloak.find_client(partner.client_id), "attributes": {"access.token.lifespan": "1"}})
    short = partner.new_token()
    time.sleep(2.2)
    assert_denied(call(api, short, PERSONS), 401, "token_expired")


def test_token_of_another_client_or_with_other_claims_is_refused(api, world, keycloak_clients):
    partner, _ = world
    integration = partner.integration
    rogue = f"scp-rogue-{uuid.uuid4()}"
    keycloak_clients.append(rogue)
    rogue_uuid = keycloak.ensure_client(client_id=rogue, tenant_code="ke", integration_id=integration.pk, verticals=["health"])
    rogue_token = client_token(rogue, keycloak.regenerate_secret(rogue_uuid)).json()["access_token"]
    assert_denied(call(api, rogue_token, PERSONS), 403, "permission_denied")
    # The integration's own client, its tenant claim tampered with in Keycloak.
    keycloak.ensure_client(client_id=partner.client_id, tenant_code="ug", integration_id=integration.pk, verticals=["health"])
    tampered = partner.new_token()
    assert_denied(call(api, tampered, PERSONS), 403, "tenant_mismatch")


# --- integration state and window ---------------------------------------------------------


def test_state_rules(api, world, staff, demo):
    partner, people = world
    admin = staff["ke-admin"]
    push = {"person_id": str(people["granted"].pk), "vertical": "health", "record_type": "immunization",
            "data": {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}}
    services.integration_restrict(integration=partner.integration, actor=admin)
    assert_allowed(call(api, partner.token, PERSONS))
    assert_denied(call(api, partner.token, "/api/v1/records/", "post", push), 403, "integration_restricted")
    services.integration_suspend(integration=partner.refresh(), actor=admin, reason="violation")
    assert_denied(call(api, partner.token, PERSONS), 403, "integration_suspended")
    services.integration_reinstate(integration=partner.refresh(), actor=admin)
    assert_allowed(call(api, partner.token, PERSONS))
    replacement = Integration.objects.create(
        tenant=demo["ke"], partner=partner.integration.partner, integration_name="v2",
        data_contract=partner.integration.data_contract, created_by=admin,
    )
    services.integration_deprecate(integration=partner.refresh(), actor=admin, replacement=replacement)
    response = call(api, partner.token, PERSONS)
    assert_allowed(response)
    assert response["Deprecation"] == "true"
    assert response["Link"] == f'</api/v1/integrations/{replacement.pk}/>; rel="successor-version"'
    # The Link names a route that answers: the successor's description, for this partner.
    successor = call(api, partner.token, f"/api/v1/integrations/{replacement.pk}/")
    assert_allowed(successor)
    assert successor.json()["integration_name"] == "v2" and successor.json()["status"] == "draft"
    own = call(api, partner.token, f"/api/v1/integrations/{partner.integration.pk}/").json()
    assert own["status"] == "deprecated" and own["verticals"] == ["health"]
    assert_denied(call(api, partner.token, f"/api/v1/integrations/{uuid.uuid4()}/"), 404, "not_found")
    services.integration_archive(integration=partner.refresh(), actor=admin)
    assert_denied(call(api, partner.token, PERSONS), 403, "integration_not_active")


def test_active_window_is_enforced(api, world):
    partner, _ = world
    now = timezone.now()
    Integration.objects.filter(pk=partner.integration.pk).update(active_until=now - datetime.timedelta(seconds=1))
    assert_denied(call(api, partner.token, PERSONS), 403, "outside_active_window")
    Integration.objects.filter(pk=partner.integration.pk).update(active_from=now + datetime.timedelta(hours=1), active_until=None)
    assert_denied(call(api, partner.token, PERSONS), 403, "outside_active_window")


# --- layered controls ---------------------------------------------------------------------


def test_ip_allowlist(api, world, staff):
    partner, _ = world
    services.integration_configure_controls(integration=partner.integration, actor=staff["ke-admin"], ip_allowlist=["10.9.0.0/16"])
    assert_denied(call(api, partner.token, PERSONS), 403, "ip_not_allowed")
    # The terminator (a trusted proxy) reports the client's address.
    assert_allowed(call(api, partner.token, PERSONS, HTTP_X_REAL_IP="10.9.1.1"))
    # From an untrusted peer the header is ignored.
    assert_denied(call(api, partner.token, PERSONS, HTTP_X_REAL_IP="10.9.1.1", REMOTE_ADDR="203.0.113.9"), 403, "ip_not_allowed")
    services.integration_configure_controls(integration=partner.integration, actor=staff["ke-admin"], ip_allowlist=["127.0.0.0/8"])
    assert_allowed(call(api, partner.token, PERSONS))


def test_api_key_as_secondary_identifier(api, world, staff):
    partner, _ = world
    integration, key = services.integration_configure_controls(
        integration=partner.integration, actor=staff["ke-admin"], issue_api_key=True)
    assert key.startswith("scpk_") and key not in integration.api_key_hash
    assert_denied(call(api, partner.token, PERSONS), 401, "api_key_invalid")
    assert_denied(call(api, partner.token, PERSONS, HTTP_X_API_KEY=key + "x"), 401, "api_key_invalid")
    assert_allowed(call(api, partner.token, PERSONS, HTTP_X_API_KEY=key))


def test_client_certificate_pinning_for_high_risk(api, world, staff, client_cert):
    partner, _ = world
    pem, fingerprint = client_cert
    services.integration_configure_controls(
        integration=partner.integration, actor=staff["ke-admin"], high_risk=True, client_cert_sha256=fingerprint)
    assert_denied(call(api, partner.token, PERSONS), 403, "client_certificate_required")
    from urllib.parse import quote

    headers = {"HTTP_X_SSL_CLIENT_VERIFY": "SUCCESS", "HTTP_X_SSL_CLIENT_CERT": quote(pem)}
    assert_allowed(call(api, partner.token, PERSONS, **headers))
    # The same headers from a peer that is not the terminator are not believed.
    assert_denied(call(api, partner.token, PERSONS, REMOTE_ADDR="203.0.113.9", **headers), 403, "client_certificate_required")


# --- rate limit ---------------------------------------------------------------------------


def test_rate_limit_is_shared_and_answers_429(api, world, staff):
    partner, _ = world
    policy = RateLimitPolicy.objects.create(name=f"tiny-{uuid.uuid4().hex[:6]}", requests_per_minute=3, burst=0)
    services.integration_configure_controls(integration=partner.integration, actor=staff["ke-admin"], rate_limit_policy=policy)
    remaining = []
    for _ in range(3):
        response = call(api, partner.token, PERSONS)
        assert_allowed(response)
        remaining.append(int(response["RateLimit-Remaining"]))
    assert remaining == sorted(remaining, reverse=True) and response["RateLimit-Limit"] == "3"
    record = assert_denied(call(api, partner.token, PERSONS), 429, "rate_limited")
    assert 1 <= int(api.get(PERSONS)["Retry-After"]) <= 60
    assert record.integration_id == partner.integration.pk


# --- tenant, verticals, consent, minimization ------------------------------------------------


def test_tenant_vertical_consent_and_minimization(api, world):
    partner, people = world
    response = call(api, partner.token, PERSONS)
    assert_allowed(response)
    results = response.json()["results"]
    assert [p["id"] for p in results] == [str(people["granted"].pk)]
    assert set(results[0]) == {"id", "given_name", "family_name", "national_id", "birth_date", "sex", "district"}
    assert results[0]["national_id"] == "****1111" and results[0]["birth_date"] == 1990
    # Another tenant's person: 404, never data.
    assert_denied(call(api, partner.token, f"/api/v1/persons/{people['ug'].pk}/?vertical=health"), 404, "not_found")
    # Without consent: a consent denial, with the check in the audit record.
    record = assert_denied(call(api, partner.token, f"/api/v1/persons/{people['withdrawn'].pk}/?vertical=health"), 403, "consent_denied")
    assert record.details["consent"] == {"checked": 1, "allowed": 0, "denied": [str(people["withdrawn"].pk)]}
    assert_allowed(call(api, partner.token, f"/api/v1/persons/{people['granted'].pk}/?vertical=health"))
    # A vertical outside the scope: denied at once, and an incident is opened (§10).
    assert_denied(call(api, partner.token, "/api/v1/persons/?vertical=education"), 403, "vertical_not_permitted")
    kinds = set(Incident.objects.filter(integration=partner.integration).values_list("kind", flat=True))
    assert kinds == {IncidentKind.MIS_SCOPED_REQUEST, IncidentKind.FOREIGN_OBJECT}  # the ug person, the vertical
    assert_denied(call(api, partner.token, "/api/v1/persons/"), 422, "validation_error")


def test_every_kind_of_mis_scoped_attempt_opens_its_incident_and_repeats_are_counted(api, world, staff, demo,
                                                                                     keycloak_clients):
    partner, people = world
    other = activate(staff, demo, keycloak_clients, name="other integration")
    job = ExportJob.objects.create(integration=other.integration, vertical=demo["health"], file_format="csv")
    for _ in range(3):  # another tenant's ids and another integration's job, three times each
        assert_denied(call(api, partner.token, f"/api/v1/persons/{people['ug'].pk}/?vertical=health"), 404, "not_found")
        assert_denied(call(api, partner.token, f"/api/v1/exports/{job.pk}/"), 404, "not_found")
        assert_denied(call(api, partner.token, "/api/v1/records/", "post", {
            "person_id": str(people["ug"].pk), "vertical": "health", "record_type": "immunization",
            "data": {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}}), 404, "not_found")
        assert_denied(call(api, partner.token, "/api/v1/aggregates/?vertical=education"), 403, "vertical_not_permitted")
    # A token of another client naming this integration, and one whose tenant is not its own.
    rogue = f"scp-rogue-{uuid.uuid4()}"
    keycloak_clients.append(rogue)
    rogue_uuid = keycloak.ensure_client(client_id=rogue, tenant_code="ke", integration_id=partner.integration.pk,
                                        verticals=["health"])
    rogue_token = client_token(rogue, keycloak.regenerate_secret(rogue_uuid)).json()["access_token"]
    assert_denied(call(api, rogue_token, PERSONS), 403, "permission_denied")
    keycloak.ensure_client(client_id=partner.client_id, tenant_code="ug", integration_id=partner.integration.pk,
                           verticals=["health"])
    assert_denied(call(api, partner.new_token(), PERSONS), 403, "tenant_mismatch")
    incidents = {i.kind: i for i in Incident.objects.filter(integration=partner.integration)}
    assert set(incidents) == {IncidentKind.FOREIGN_OBJECT, IncidentKind.MIS_SCOPED_REQUEST, IncidentKind.FOREIGN_CLIENT,
                              IncidentKind.TENANT_MISMATCH}
    assert incidents[IncidentKind.FOREIGN_OBJECT].occurrences == 9  # grouped, not nine incidents
    assert incidents[IncidentKind.MIS_SCOPED_REQUEST].occurrences == 3
    assert incidents[IncidentKind.FOREIGN_CLIENT].details["client_id"] == rogue


def test_updated_since_filters_and_validates(api, world):
    partner, people = world
    later = timezone.now() + datetime.timedelta(minutes=5)
    response = call(api, partner.token, f"{PERSONS}&updated_since={later.isoformat().replace('+00:00', 'Z')}")
    assert response.status_code == 200 and response.json()["results"] == []
    assert_denied(call(api, partner.token, f"{PERSONS}&updated_since=yesterday"), 422, "validation_error")


# --- push: contract validation and idempotency ------------------------------------------------


def test_push_validates_against_the_contract_and_writes_nothing_on_violation(api, world):
    partner, people = world
    good = {"person_id": str(people["granted"].pk), "vertical": "health", "record_type": "immunization",
            "data": {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}}
    for data in (
        {"vaccine": "BCG", "dose": 1, "date": "2026-01-02", "lot": "X1"},  # unknown field
        {"vaccine": "BCG", "date": "2026-01-02"},                          # missing field
        {"vaccine": "BCG", "dose": "1", "date": "2026-01-02"},             # wrong type (schema drift)
        {"vaccine": "BCG", "dose": 0, "date": "2026-01-02"},               # out of range
        {"vaccine": "BCG", "dose": 1, "date": "02/01/2026"},               # wrong date format
    ):
        record = assert_denied(call(api, partner.token, "/api/v1/records/", "post", {**good, "data": data}), 422, "contract_violation")
        assert record.verticals == ["health"]
    assert_denied(call(api, partner.token, "/api/v1/records/", "post", {**good, "record_type": "diagnosis"}), 422, "contract_violation")
    assert_denied(call(api, partner.token, "/api/v1/records/", "post", {**good, "vertical": "education"}), 403, "vertical_not_permitted")
    assert_denied(call(api, partner.token, "/api/v1/records/", "post", {**good, "person_id": str(people["ug"].pk)}), 404, "not_found")
    assert_denied(call(api, partner.token, "/api/v1/records/", "post", {**good, "person_id": str(people["withdrawn"].pk)}), 403, "consent_denied")
    assert not VerticalRecord.objects.exists()
    response = call(api, partner.token, "/api/v1/records/", "post", good)
    assert_allowed(response, 201)
    assert VerticalRecord.objects.get().data == good["data"]
    listed = call(api, partner.token, "/api/v1/records/?vertical=health").json()["results"]
    assert [r["id"] for r in listed] == [response.json()["id"]]


def test_idempotency_key_replays_or_conflicts(api, world):
    partner, people = world
    body = {"person_id": str(people["granted"].pk), "vertical": "health", "record_type": "immunization",
            "data": {"vaccine": "OPV", "dose": 2, "date": "2026-03-04"}}
    first = call(api, partner.token, "/api/v1/records/", "post", body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = call(api, partner.token, "/api/v1/records/", "post", body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert VerticalRecord.objects.count() == 1
    changed = {**body, "data": {**body["data"], "dose": 3}}
    assert_denied(call(api, partner.token, "/api/v1/records/", "post", changed, HTTP_IDEMPOTENCY_KEY="k-1"), 409, "idempotency_conflict")
    assert VerticalRecord.objects.count() == 1
    # After the documented time the key is forgotten: the same key is a new push.
    assert expire_idempotency_keys(now=timezone.now() + datetime.timedelta(hours=25)) == 1
    assert call(api, partner.token, "/api/v1/records/", "post", changed, HTTP_IDEMPOTENCY_KEY="k-1").status_code == 201
    assert VerticalRecord.objects.count() == 2


# --- aggregates ---------------------------------------------------------------------------


def test_aggregates_are_consent_filtered_and_suppress_small_cells(api, world, demo, settings):
    partner, people = world
    settings.SCP_AGGREGATE_MIN_CELL = 3
    for i in range(4):
        make_person(demo["ke"], f"9100{i}", [(demo["health"], GRANTED)], district="Mombasa")
    response = call(api, partner.token, "/api/v1/aggregates/?vertical=health")
    assert_allowed(response)
    assert response.json()["total"] == 5  # 4 + the granted one; withdrawn and ug excluded
    by_district = call(api, partner.token, "/api/v1/aggregates/?vertical=health&group_by=district").json()
    cells = {c["group"]: c for c in by_district["cells"]}
    # Nairobi (1) is below the threshold; the total minus Mombasa would give it back, so Mombasa
    # is hidden too (secondary suppression): the hidden cells sum to 5 >= 2 * 3 - 1.
    assert cells["Nairobi"] == {"group": "Nairobi", "count": None, "suppressed": True}
    assert cells["Mombasa"] == {"group": "Mombasa", "count": None, "suppressed": True}
    assert by_district["total"] == 5
    assert_denied(call(api, partner.token, "/api/v1/aggregates/?vertical=health&group_by=phone"), 422, "validation_error")


# --- lean path ----------------------------------------------------------------------------


def test_list_page_runs_a_handful_of_queries_without_n_plus_1(api, world, demo):
    partner, _ = world
    for i in range(60):
        make_person(demo["ke"], f"9200{i:03d}", [(demo["health"], GRANTED)])
    call(api, partner.token, PERSONS)  # warm the JWKS cache: no Keycloak call per request after this
    with CaptureQueriesContext(connection) as small:
        call(api, partner.token, f"{PERSONS}&page_size=5")
    with CaptureQueriesContext(connection) as large:
        response = call(api, partner.token, f"{PERSONS}&page_size=50")
    assert len(response.json()["results"]) == 50
    assert len(large.captured_queries) == len(small.captured_queries) <= 4, [q["sql"][:120] for q in large.captured_queries]


def test_repeated_authentication_failures_and_rate_limit_breaches_open_incidents(api, world, staff, settings):
    partner, _ = world
    settings.SCP_AUTH_FAILURE_THRESHOLD = 3
    address = f"10.77.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"  # a fresh counter per run
    for _ in range(4):
        call(api, "garbage", PERSONS, HTTP_X_REAL_IP=address)
    failures = Incident.objects.filter(kind=IncidentKind.AUTHENTICATION_FAILURES)
    assert failures.count() == 1 and failures.get().details["source_ip"] == address
    assert last_audit().source_ip == address
    policy = RateLimitPolicy.objects.create(name=f"one-{uuid.uuid4().hex[:6]}", requests_per_minute=1, burst=0)
    services.integration_configure_controls(integration=partner.integration, actor=staff["ke-admin"], rate_limit_policy=policy)
    for _ in range(3):
        call(api, partner.token, PERSONS)
    breach = Incident.objects.filter(kind=IncidentKind.RATE_LIMIT_BREACH, integration=partner.integration)
    assert breach.count() == 1
