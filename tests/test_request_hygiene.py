"""Issue #11 §6, request hygiene under /api/: body limits before parsing, every response
audited exactly once (500s included), unauthenticated failures throttled per address with a
bounded audit footprint, and the server's own request id beside the caller's."""
import time
import uuid

import pytest
import yaml
from django.http import HttpResponse
from django.test import Client
from django.urls import path

from audit.models import AuditEvent, AuditRecord
from exchange.authentication import PartnerPrincipal
from lifecycle.disclosures import CITIZEN_APP
from scp_portal import urls as project_urls
from scp_portal.middleware import _audit_fallback

from .exchange_helpers import activate

pytestmark = pytest.mark.django_db


def _boom(request):
    raise RuntimeError("unexpected")


urlpatterns = [path("api/v1/boom/", _boom), *project_urls.urlpatterns]


def _requests():
    return AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST)


@pytest.fixture
def partner(staff, demo, keycloak_clients):
    return activate(staff, demo, keycloak_clients, name="hygiene")


def test_a_9_mb_json_body_is_refused_with_413_before_parsing_and_recorded(partner):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    before = _requests().count()
    for url in ("/api/v1/records/", "/api/v1/exports/", "/api/v1/subscriptions/", "/api/v1/governance/consents/"):
        response = client.post(url, b"{" + b" " * (9 * 1024 * 1024) + b"}", content_type="application/json")
        assert response.status_code == 413, (url, response.status_code)
        assert response["Content-Type"] == "application/problem+json" and response.json()["code"] == "payload_too_large"
    # Refused before anyone was authenticated: counted per address, recorded once a window.
    assert _requests().count() == before + 1
    assert _requests().latest("id").status_code == 413


@pytest.mark.urls("tests.test_request_hygiene")
def test_an_unexpected_error_is_a_500_problem_with_exactly_one_audit_record(settings):
    settings.DEBUG = False
    before = _requests().count()
    response = Client(raise_request_exception=False).get("/api/v1/boom/")
    assert response.status_code == 500 and response.json()["code"] == "server_error"
    record = _requests().get(request_id=response["X-Request-ID"])
    assert record.status_code == 500 and record.error_code == "server_error" and record.result == "failure"
    assert _requests().count() == before + 1


def test_governance_requests_are_audited_once_each(api, staff, demo):
    api.force_authenticate(staff["ke-admin"])
    before = _requests().count()
    response = api.get("/api/v1/governance/integrations/")
    assert response.status_code == 200
    record = _requests().get(request_id=response["X-Request-ID"])
    assert record.actor == "ke-admin" and record.status_code == 200
    assert _requests().count() == before + 1


def test_unauthenticated_failures_are_throttled_per_address_with_one_record_per_window(settings):
    settings.SCP_AUTH_FAILURE_LIMIT = 5
    address = f"10.88.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"  # a fresh counter per run
    client = Client(HTTP_X_REAL_IP=address, HTTP_AUTHORIZATION="Bearer not-a-token")
    before = _requests().count()
    statuses = [client.get("/api/v1/persons/?vertical=health").status_code for _ in range(12)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    refused = client.get("/api/v1/persons/?vertical=health")
    assert refused.json()["code"] == "rate_limited" and 0 < int(refused["Retry-After"]) <= 60
    # Thirteen refusals, one record (the window's first, which says how the rest are counted).
    records = _requests().filter(id__gt=0, source_ip=address)
    assert records.count() == 1 and _requests().count() == before + 1
    assert "unauthenticated_refusals" in records.get().details
    # Unknown URLs from the address are refused and counted the same way, never recorded one by one.
    assert client.get("/api/v1/nowhere/").status_code == 429 and records.count() == 1
    # Another address is not affected.
    assert Client(HTTP_X_REAL_IP="10.99.0.1").get("/api/v1/persons/?vertical=health").status_code == 401


def test_the_callers_request_id_is_kept_beside_the_servers_own(partner):
    theirs = str(uuid.uuid4())
    response = Client(HTTP_AUTHORIZATION=f"Bearer {partner.token}", HTTP_X_REQUEST_ID=theirs).get(
        "/api/v1/persons/?vertical=health")
    assert response.status_code == 200
    assert response["X-Request-ID"] != theirs and response["X-Client-Request-ID"] == theirs
    record = _requests().get(request_id=response["X-Request-ID"])
    assert record.details["client_request_id"] == theirs


def test_the_openapi_document_declares_every_error_as_problem_json(partner):
    response = Client(HTTP_AUTHORIZATION=f"Bearer {partner.token}").get("/api/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    checked = 0
    for route, item in document["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert list(answer["content"]) == ["application/problem+json"], (route, method, status)
                    checked += 1
            assert {"401", "403"} <= set(operation["responses"]), (route, method)
    assert checked > 50


@pytest.mark.django_db
def test_the_fallback_audit_record_names_every_kind_of_caller(rf, staff, demo):
    """The API guard's own audit record (a response no view recorded: an outage, a 500) names
    a partner by its client id, the citizen app by its name and staff by their user; none of
    them may break it (a partner principal has no username: that once turned 503s into 500s)."""
    callers = [
        (PartnerPrincipal(integration=None, claims={}, client_id="scp-int-fallback"), "scp-int-fallback", None),
        (CITIZEN_APP, "scp-citizen-app", None),
        (staff["ke-admin"], "ke-admin", staff["ke-admin"]),
    ]
    for principal, actor, user in callers:
        request = rf.get("/api/v1/persons/?vertical=health")
        request.user, request.request_id, request.client_request_id = principal, str(uuid.uuid4()), ""
        request.scp_audit = {"client_id": getattr(principal, "client_id", "")}
        _audit_fallback(request, HttpResponse(status=503), time.perf_counter())
        record = AuditRecord.objects.get(request_id=request.request_id)
        assert (record.actor, record.actor_user) == (actor, user) and record.status_code == 503
