"""Issue #11 §8, enumerated: every exchange route × every integration state and window gets
the contract's code, and every data path leaves out a person whose consent was withdrawn.
The routes come from the URL resolver, so a new exchange route is covered without anyone
listing it."""
import datetime
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLResolver, get_resolver
from django.utils import timezone

from audit.models import Disclosure
from exchange import exports, webhooks
from exchange.batch import import_store, run_import
from exchange.events import emit
from exchange.models import Delivery, DeliveryStatus, EventType, ExportJob, ImportJob, Subscription
from registry.models import Integration, IntegrationStatus
from scp_core.models import ConsentStatus, VerticalRecord
from lifecycle.consent import consent_record

from .conftest import make_person
from .exchange_helpers import activate

pytestmark = pytest.mark.django_db
S = IntegrationStatus
_READS = {"GET", "HEAD"}


def _exchange_routes():
    """(route, view class, methods) of every pattern under api/v1/ that the exchange serves."""
    for top in get_resolver().url_patterns:
        if isinstance(top, URLResolver) and str(top.pattern) == "api/v1/" and top.urlconf_name.__name__ == "exchange.urls":
            for pattern in top.url_patterns:
                view = pattern.callback.view_class
                methods = [m.upper() for m in ("get", "post") if hasattr(view, m)]
                yield "api/v1/" + str(pattern.pattern), methods


@pytest.fixture
def partner(staff, demo, keycloak_clients, tmp_path, settings):
    settings.SCP_EXPORT_DIR, settings.SCP_IMPORT_DIR = str(tmp_path / "exports"), str(tmp_path / "imports")
    return activate(staff, demo, keycloak_clients, name="paths")


def _url(route, integration, demo, person):
    ids = {
        "person_id": person.pk,
        "integration_id": integration.pk,
        "subscription_id": Subscription.objects.get_or_create(integration=integration, url="https://hooks.example/x",
                                                              defaults={"event_types": ["record.created"], "secret": "whsec_x"})[0].pk,
        "job_id": (ExportJob.objects.get_or_create(integration=integration, vertical=demo["health"], file_format="csv")[0].pk
                   if "exports" in route else
                   ImportJob.objects.get_or_create(integration=integration, vertical=demo["health"], record_type="immunization",
                                                   file_format="csv", file_path="/nonexistent")[0].pk),
    }
    for name, value in ids.items():
        route = route.replace(f"<uuid:{name}>", str(value))
    assert "<" not in route, f"{route}: no rule for its parameters"
    return "/" + route + "?vertical=health"


# state (as stored) -> what every route answers: None = served, else the code (reads, writes)
EXPECTED = {
    S.ACTIVE: (None, None),
    S.DEPRECATED: (None, None),
    S.RESTRICTED: (None, "integration_restricted"),
    S.SUSPENDED: ("integration_suspended", "integration_suspended"),
    **{state: ("integration_not_active", "integration_not_active")
       for state in (S.DRAFT, S.REQUESTED, S.REVIEWED, S.APPROVED, S.REJECTED, S.ARCHIVED)},
}
WINDOWS = {
    "inside": (None, None),
    "not yet": ("outside_active_window", "outside_active_window"),
    "ended": ("outside_active_window", "outside_active_window"),
}


def test_every_state_is_given_its_rule():
    assert set(EXPECTED) == set(S)


_POLICY_CODES = {c for pair in (*EXPECTED.values(), *WINDOWS.values()) for c in pair if c}


def _answers(api, partner, demo, person):
    """(method, url, response, problem code) of every exchange route, walked from the resolver."""
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    routes = list(_exchange_routes())
    assert len(routes) >= 10
    for route, methods in routes:
        url = _url(route, partner.integration, demo, person)
        for method in methods:
            response = api.get(url) if method == "GET" else api.post(url, {}, format="json")
            code = response.json().get("code") if response["Content-Type"] == "application/problem+json" else None
            yield method, url, response, code


def _assert_answers(answers, expected_pair, label):
    for method, url, response, code in answers:
        expected = expected_pair[0 if method in _READS else 1]
        if expected is None:
            assert code not in _POLICY_CODES, (label, method, url, code)
        else:
            assert (response.status_code, code) == (403, expected), (label, method, url, response.status_code, code)
        yield response


@pytest.mark.parametrize("state", list(S))
def test_every_exchange_route_in_every_state_answers_the_contracts_code(api, partner, demo, state):
    person = make_person(demo["ke"], "STATE-1", [(demo["health"], ConsentStatus.GRANTED)])
    # The token was issued while Active; the state as stored decides each request (here set
    # directly, to reach every state with the same client).
    Integration.objects.filter(pk=partner.integration.pk).update(status=state)
    for response in _assert_answers(_answers(api, partner, demo, person), EXPECTED[state], state):
        if state == S.DEPRECATED and response.status_code < 400:
            assert response["Deprecation"] == "true"


@pytest.mark.parametrize("window", list(WINDOWS))
def test_every_exchange_route_outside_the_active_window_is_refused(api, partner, demo, window):
    person = make_person(demo["ke"], "WIN-1", [(demo["health"], ConsentStatus.GRANTED)])
    now = timezone.now()
    bounds = {"inside": (now - datetime.timedelta(days=1), None),
              "not yet": (now + datetime.timedelta(days=1), None),
              "ended": (now - datetime.timedelta(days=2), now - datetime.timedelta(days=1))}[window]
    Integration.objects.filter(pk=partner.integration.pk).update(active_from=bounds[0], active_until=bounds[1])
    list(_assert_answers(_answers(api, partner, demo, person), WINDOWS[window], window))


# --- every data path × a person whose consent was withdrawn -----------------------------------


def _everything_the_partner_receives(api, partner, demo, person, receiver_log):
    """The bytes of every path by which SCP data reaches the partner, after the withdrawal."""
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    out = [api.get(path).content for path in ("/api/v1/persons/?vertical=health", "/api/v1/records/?vertical=health")]
    # The withdrawal itself is announced with the person's id and nothing else (contract);
    # every other event about the person is withheld.
    events = api.get("/api/v1/events/?cursor=0").json()["events"]
    for event in events:
        if event["type"] == EventType.CONSENT_WITHDRAWN:
            assert set(event["data"]) <= {"person_id", "vertical", "effective_at", "purposes"}, event
    out.append(json.dumps([e for e in events if e["type"] != EventType.CONSENT_WITHDRAWN]).encode())
    detail = api.get(f"/api/v1/persons/{person.pk}/?vertical=health")
    assert detail.status_code == 403 and detail.json()["code"] == "consent_denied"
    job_id = api.post("/api/v1/exports/", {"vertical": "health", "format": "ndjson"}, format="json").json()["id"]
    exports.run_export(job_id)
    out.append(b"".join(api.get(f"/api/v1/exports/{job_id}/download/").streaming_content))
    for delivery in Delivery.objects.filter(status=DeliveryStatus.PENDING):
        webhooks.deliver(delivery.pk)
    out.extend(receiver_log)
    return b"\n".join(out)


def test_a_withdrawn_person_appears_on_no_data_path(api, partner, staff, demo, settings):
    settings.SCP_AGGREGATE_MIN_CELL = 1
    person = make_person(demo["ke"], "WD-1", [(demo["health"], ConsentStatus.GRANTED)], family_name="Withdrawnperson")
    other = make_person(demo["ke"], "WD-2", [(demo["health"], ConsentStatus.GRANTED)])
    Subscription.objects.create(integration=partner.integration, url="https://hooks.example/h",
                                event_types=["record.created"], secret=webhooks.new_secret())
    for who in (person, other):  # a record and an event about each, written by this integration
        record = VerticalRecord.objects.create(person=who, vertical=demo["health"], record_type="immunization",
                                               data={"vaccine": "BCG", "dose": 1, "date": "2026-01-01"},
                                               source_integration=partner.integration)
        emit(event_type=EventType.RECORD_CREATED, tenant=demo["ke"], vertical=demo["health"], person_id=who.pk,
             integration=partner.integration,
             data={"record_id": str(record.pk), "person_id": str(who.pk), "record_type": "immunization"})
    before = _get_total(api, partner)
    consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])

    seen = _everything_the_partner_receives(api, partner, demo, person, receiver_log=[])
    assert str(person.pk).encode() not in seen and b"Withdrawnperson" not in seen
    assert str(other.pk).encode() in seen  # the paths do serve the others
    assert _get_total(api, partner) == before - 1  # aggregates too
    # Webhook deliveries about the withdrawn person were skipped at delivery time, never sent.
    skipped = Delivery.objects.filter(event__person_id=person.pk).values_list("status", flat=True)
    assert set(skipped) == {DeliveryStatus.SKIPPED}
    # Imports and pushes refuse rows about the person.
    upload = SimpleUploadedFile("rows.csv", f"person_id,vaccine,dose,date\n{person.pk},BCG,2,2026-01-02\n".encode())
    job = import_store(integration=partner.refresh(), vertical=demo["health"], record_type="immunization", upload=upload)
    run_import(job.pk)
    assert json.dumps(ImportJob.objects.get(pk=job.pk).row_errors.get().errors).find("consent") >= 0
    push = api.post("/api/v1/records/", {"person_id": str(person.pk), "vertical": "health", "record_type": "immunization",
                                         "data": {"vaccine": "BCG", "dose": 2, "date": "2026-01-02"}}, format="json")
    assert push.status_code == 403 and push.json()["code"] == "consent_denied"


def test_no_exchange_route_returns_a_withdrawn_person(api, partner, staff, demo):
    """Every GET route of the exchange (walked from the resolver), pointed at a person whose
    consent was withdrawn where it takes a person: that person is nowhere in the answer (but
    for the withdrawal's own announcement in the events feed, which carries only the id)."""
    person = make_person(demo["ke"], "WD-ROUTE", [(demo["health"], ConsentStatus.GRANTED)], family_name="Routeperson")
    VerticalRecord.objects.create(person=person, vertical=demo["health"], record_type="immunization",
                                  data={"vaccine": "BCG", "dose": 1, "date": "2026-01-01"}, source_integration=partner.integration)
    consent_record(person=person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ke-admin"])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    checked = 0
    for route, methods in _exchange_routes():
        if "GET" not in methods:
            continue
        response = api.get(_url(route, partner.integration, demo, person))
        body = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
        if route.endswith("events/"):
            body = json.dumps([e for e in response.json()["events"] if e["type"] != EventType.CONSENT_WITHDRAWN]).encode()
        assert str(person.pk).encode() not in body and b"Routeperson" not in body, (route, response.status_code)
        checked += 1
    assert checked >= 8


def test_every_exchange_route_that_releases_a_person_records_it_in_the_ledger(api, partner, demo):
    """Issue #13, enumerated: every GET route of the exchange (walked from the resolver) whose
    answer names a consenting person wrote a disclosure ledger row naming that person, tied to
    the request's own audit record; a route whose answer does not name them wrote none."""
    person = make_person(demo["ke"], "LEDGER-ROUTE", [(demo["health"], ConsentStatus.GRANTED)])
    record = VerticalRecord.objects.create(person=person, vertical=demo["health"], record_type="immunization",
                                           data={"vaccine": "BCG", "dose": 1, "date": "2026-01-01"},
                                           source_integration=partner.integration)
    emit(event_type=EventType.RECORD_CREATED, tenant=demo["ke"], vertical=demo["health"], person_id=person.pk,
         integration=partner.integration,
         data={"record_id": str(record.pk), "person_id": str(person.pk), "record_type": "immunization"})
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    released = 0
    for route, methods in _exchange_routes():
        if "GET" not in methods:
            continue
        seen = set(Disclosure.objects.values_list("pk", flat=True))
        response = api.get(_url(route, partner.integration, demo, person))
        body = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
        named = [d for d in Disclosure.objects.exclude(pk__in=seen).select_related("record") if str(person.pk) in d.person_ids]
        assert bool(named) == (str(person.pk).encode() in body), (route, response.status_code)
        for disclosure in named:
            assert disclosure.integration_id == partner.integration.pk
            assert disclosure.record.request_id == response["X-Request-ID"], route
            assert disclosure.record.details["disclosures"]["persons"] >= 1
        released += bool(named)
    assert released >= 4  # persons, person, records, events


def _get_total(api, partner):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
    return api.get("/api/v1/aggregates/?vertical=health").json()["total"]
