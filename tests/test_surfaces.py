"""Issue #11 §8: tests that walk the surface instead of listing cases.

Every URL pattern the project serves (the resolver is walked, library screens included) is
tried by every demo role against objects of another tenant (or, for a partner user, against
persons it may never see): no response shows them, and no POST changes anything. A read-only
role (the auditor) changes nothing anywhere. A new pattern, or a new admin screen for a model,
fails here until it is given a rule below.
"""
import datetime
import hashlib
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.forms.models import model_to_dict
from django.urls import URLPattern, URLResolver, get_resolver

from audit.models import AuditEvent, AuditExportJob, AuditRecord, Disclosure, Incident, IncidentKind, IncidentSeverity
from audit.services import audit_record
from exchange.models import Connector, Delivery, Event, EventType, ExportJob, ImportJob, Subscription
from lifecycle import services
from lifecycle.actions import ACTIONS
from lifecycle.models import Notification, Recertification, RoleAssignment
from registry.models import (
    Credential,
    DataContract,
    DataSharingAgreement,
    Integration,
    IntegrationTemplate,
    Partner,
    RateLimitPolicy,
)
from scp_core.models import Consent, ConsentStatus, Person, Purpose, Tenant, Vertical, VerticalRecord
from lifecycle.consent import consent_record

from .conftest import make_person
from .agreement_helpers import pdf_upload, sign_agreement
from .exchange_helpers import activate

pytestmark = pytest.mark.django_db

UG_MARKERS = ["UG-ONLY-SYNC", "Ugandaperson", "UG-SECRET-ID", "UG-CONNECTOR", "ug-hook.example", "UG-INCIDENT",
              "UG-ACTOR"]
PERSON_MARKERS = ["Ugandaperson", "UG-SECRET-ID", "Kenyaperson", "KE-SECRET-ID"]
# Whose view of the portal is checked, and what each must never see.
FOREIGN = {
    "ke-admin": UG_MARKERS,
    "ke-health-owner": UG_MARKERS,
    "ke-education-owner": UG_MARKERS,
    "partner-user": PERSON_MARKERS + ["UG-INCIDENT", "UG-ACTOR", "UG-ONLY-SYNC", "ug-hook.example", "UG-CONNECTOR"],
    "auditor": [],  # sees every tenant; must change nothing anywhere
}


def _walk(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _params(route):
    return re.findall(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>", route)


# --- the world: a ke side the roles own, a ug side they must not reach -----------------------


@pytest.fixture
def world(staff, demo, keycloak_clients):
    partner = Partner.objects.get(slug="acme-health")
    # The other tenant's integration belongs to another partner too: the partner user must not
    # reach it through the partner pages, agreements, deliveries or credentials either.
    other_partner = Partner.objects.create(name="Other partner", slug="other-partner", partner_type="ngo")
    template = IntegrationTemplate.objects.get(slug="health-records-basic")
    ug = services.integration_create(actor=staff["ug-admin"], tenant=demo["ug"], partner=other_partner,
                                     integration_name="UG-ONLY-SYNC", verticals=[demo["health"]], template=template)
    ug = services.integration_submit(integration=ug, actor=staff["ug-admin"])
    ug_person = make_person(demo["ug"], "UG-SECRET-ID", [(demo["health"], ConsentStatus.GRANTED)], family_name="Ugandaperson")
    consent_record(person=ug_person, vertical=demo["health"], status=ConsentStatus.WITHDRAWN, actor=staff["ug-admin"])
    ke_person = make_person(demo["ke"], "KE-SECRET-ID", [(demo["health"], ConsentStatus.GRANTED)], family_name="Kenyaperson")
    record = VerticalRecord.objects.create(person=ug_person, vertical=demo["health"], record_type="immunization",
                                           data={"vaccine": "UG-SECRET-ID", "dose": 1, "date": "2026-01-01"})
    subscription = Subscription.objects.create(integration=ug, url="https://ug-hook.example/x", event_types=["record.created"],
                                               secret="whsec_x")
    event = Event.objects.create(event_type=EventType.RECORD_CREATED, tenant=demo["ug"], vertical=demo["health"],
                                 person_id=ug_person.pk, integration=ug, data={"person_id": str(ug_person.pk)})
    delivery = Delivery.objects.create(event=event, subscription=subscription, last_error="ug-hook.example down")
    objects = {
        "integration": ug, "person": ug_person, "consent": Consent.objects.get(person=ug_person),
        "verticalrecord": record, "subscription": subscription, "delivery": delivery,
        "importjob": ImportJob.objects.create(integration=ug, vertical=demo["health"], record_type="immunization",
                                              file_format="csv", file_path="/nonexistent", error="UG-ONLY-SYNC"),
        "exportjob": ExportJob.objects.create(integration=ug, vertical=demo["health"], file_format="csv", error="UG-ONLY-SYNC"),
        "connector": Connector.objects.create(integration=ug, name="UG-CONNECTOR", adapter="csv_file", source="/x.csv",
                                              vertical=demo["health"], record_type="immunization"),
        "incident": Incident.objects.create(kind=IncidentKind.SCHEMA_DRIFT, severity=IncidentSeverity.LOW,
                                            summary="UG-INCIDENT", tenant=demo["ug"], integration=ug),
        "auditexportjob": AuditExportJob.objects.create(tenant=demo["ug"], requested_by=staff["ug-admin"]),
        "roleassignment": RoleAssignment.objects.get(user=staff["ug-admin"]),
        "tenant": demo["ug"],
        "purpose": Purpose.objects.create(tenant=demo["ug"], code="ug-only", name="UG-ONLY-SYNC purpose"),
        # Shared reference data: anyone with a role may look, only ROOT (or the umbrella
        # authority, through services) may change it.
        "vertical": demo["health"], "partner": partner, "ratelimitpolicy": RateLimitPolicy.objects.first(),
        "datacontract": DataContract.objects.first(), "integrationtemplate": template,
        "reviewrequest": ug, "signoffrequest": ug,
        "datasharingagreement": sign_agreement(ug, staff["ug-admin"], document=pdf_upload("UG-ONLY-SYNC.pdf", "UG-ONLY-SYNC")),
        "recertification": Recertification.objects.create(
            integration=ug, vertical=demo["health"], due_at=datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc),
            snapshot={"fields": {"UG-SECRET-ID": "plain"}}, reason="UG-ONLY-SYNC"),
        "notification": Notification.objects.create(
            key="ug-only", event="approved", tenant=demo["ug"], integration=ug, recipient="ug-admin@scp.example",
            subject="UG-ONLY-SYNC approved", body="UG-ONLY-SYNC"),
        # A previous API key in its grace period (issue #14 item 5) of the other partner's integration.
        "credential": Credential.objects.create(
            integration=ug, kind="api_key", prefix="UG-ONLY-SYNC", key_hash="0" * 64,
            expires_at=datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)),
        "user": staff["ug-admin"], "group": None,
    }
    audit_record(event_type=AuditEvent.CONSENT_CHANGED, tenant=demo["ug"], actor="UG-ACTOR", details={"marker": "UG-ACTOR"})
    objects["auditrecord"] = AuditRecord.objects.filter(actor="UG-ACTOR").get()
    ke = activate(staff, demo, keycloak_clients, name="ke side")
    return {"objects": objects, "ke_partner": ke, "ke_person": ke_person}


# --- how each pattern's parameters are filled: a pattern without a rule fails ------------------


def _model_key(route, name):
    match = re.match(r"admin/(\w+)/(\w+)/", route)
    return match.group(2) if match else None


def _admin_urls(route, name, objects):
    """The concrete URLs of one admin pattern, pointed at the foreign objects."""
    params = [a or b for a, b in _params(route)]
    if not params:
        return [route.replace("^", "").replace("$", "")]
    if name == "app_list":
        return [f"admin/{label}/" for label in ("auth", "scp_core", "registry", "lifecycle", "audit", "exchange")]
    if route.startswith("admin/(?P<url>"):
        return ["admin/nowhere/at/all/"]
    if name == "view_on_site":
        person = objects["person"]
        return [f"admin/r/{ContentType.objects.get_for_model(Person).pk}/{person.pk}/"]
    if (name or "").startswith("partner-"):  # the partner pages: the other tenant's integration and delivery
        return [route.replace("<uuid:integration_id>", str(objects["integration"].pk))
                .replace("<uuid:delivery_id>", str(objects["delivery"].pk))]
    key = _model_key(route, name)
    assert key in objects, f"{route} ({name}): no scoping rule for the model '{key}'; add it to the world"
    obj = objects[key]
    if obj is None:
        return []
    base = re.sub(r"<[^>]*object_id>|<[^>]*job_id>|<id>", str(obj.pk), route)
    if "<slug:action>" in base:
        return [base.replace("<slug:action>", action) for action in ACTIONS]
    if "<str:version_id>" in base or "<path:version_id>" in base:
        versions = obj.history.order_by("history_id").values_list("history_id", flat=True)
        assert versions, f"{route}: the foreign object has no history to point at"
        return [re.sub(r"<[^>]*version_id>", str(v), base) for v in versions]
    assert "<" not in base, f"{route} ({name}): no rule for its parameters {params}"
    return [base]


# Every pattern outside the admin, by name: how it is reached and what scopes it.
API_RULES = {
    # The partner exchange: only a partner token of an Active integration; objects of another
    # tenant or integration are not found.
    "exchange-persons": "partner", "exchange-person": "partner", "exchange-records": "partner",
    "exchange-aggregates": "partner", "exchange-subscriptions": "partner", "exchange-subscription-rotate": "partner",
    "exchange-events": "partner", "exchange-integration": "partner", "exchange-exports": "partner", "exchange-export": "partner",
    "exchange-export-download": "partner", "exchange-imports": "partner", "exchange-import": "partner",
    "exchange-import-resume": "partner", "exchange-import-errors": "partner",
    # The governance API: staff, scoped by role like the portal.
    "governance-integrations": "staff", "governance-integration": "staff", "governance-integration-action": "staff",
    "governance-consents": "staff", "governance-person-disclosures": "staff",
    "governance-integration-credentials": "staff",
    "governance-integration-agreements": "staff", "governance-integration-agreement-document": "staff",
    "governance-waiting": "staff", "governance-recertifications": "staff", "governance-recertification-answer": "staff",
    # No tenant data: the OpenAPI document, staff login, and metrics (global roles or the scraper).
    "api-schema": "document", "oidc_authentication_callback": "login", "oidc_authentication_init": "login",
    "oidc_logout": "login", "metrics": "metrics",
}
_API_PARAMS = {
    "person_id": "person", "subscription_id": "subscription", "integration_id": "integration",
    "agreement_id": "datasharingagreement",
    "recertification_id": "recertification",
}


def _api_urls(route, name, objects):
    url = route
    for param in [a or b for a, b in _params(route)]:
        if param == "job_id":
            key = "exportjob" if "exports" in route else "importjob"
        elif param == "action":
            return [url.replace("<slug:action>", action) for action in ACTIONS]
        else:
            key = _API_PARAMS.get(param)
            assert key, f"{route} ({name}): no rule for the parameter {param}"
        url = re.sub(rf"<[^>]*{param}>", str(objects[key].pk), url)
    return [url]


_RESPONSE_INCIDENTS = [IncidentKind.AUTHENTICATION_FAILURES, IncidentKind.FOREIGN_OBJECT, IncidentKind.FOREIGN_CLIENT,
                       IncidentKind.TENANT_MISMATCH, IncidentKind.MIS_SCOPED_REQUEST]

# What a role may legitimately create through a screen: an auditor requests audit exports.
MAY_CREATE = {"auditor": {AuditExportJob}}


def _governed_digest(username=None):
    """A digest of every table a person could change through a screen or an API."""
    models = [Tenant, Vertical, Person, Consent, VerticalRecord, Partner, RateLimitPolicy, DataContract,
              IntegrationTemplate, Integration, RoleAssignment, Subscription, Delivery, ImportJob, ExportJob, Connector,
              Incident, AuditExportJob, Purpose, Disclosure, Credential, DataSharingAgreement, Recertification, Notification, get_user_model()]
    digest = hashlib.sha256()
    for model in [m for m in models if m not in MAY_CREATE.get(username, set())]:
        rows = model.objects.order_by("pk").values()
        if model is Incident:  # incidents opened in response to the attempts are the system's, not the caller's
            rows = rows.exclude(kind__in=_RESPONSE_INCIDENTS)
        # Times of use are the system's record of a request, not a change by the caller.
        digest.update(repr([{k: v for k, v in row.items() if k not in ("last_login", "last_used_at")} for row in rows]).encode())
    return digest.hexdigest()


def _post_data(obj):
    """The foreign object's own fields, with its status flipped where it has one: what a
    change through this screen would look like."""
    if obj is None:
        return {}
    data = {}
    for name, value in model_to_dict(obj).items():
        if isinstance(value, datetime.datetime):  # the admin's split widget
            data[f"{name}_0"], data[f"{name}_1"] = value.date().isoformat(), value.time().isoformat()
        elif isinstance(value, datetime.date):
            data[name] = value.isoformat()
        elif isinstance(value, list):
            data[name] = [getattr(v, "pk", v) for v in value]
        elif value is not None:
            data[name] = getattr(value, "pk", value)
    if "status" in data:
        data["status"] = ConsentStatus.GRANTED if data["status"] == ConsentStatus.WITHDRAWN else "active"
    data.update({"reason": "x", "decision": "approve", "name": "changed", "_save": "Save"})
    return data


def _check(response, markers, where):
    body = response.content if not getattr(response, "streaming", False) else b"".join(response.streaming_content)
    for marker in markers:
        assert marker.encode() not in body, (where, response.status_code, marker)


def test_every_url_pattern_has_a_scoping_rule():
    for route, pattern in _walk():
        if route.startswith("admin/"):
            continue
        assert pattern.name in API_RULES, f"{route}: a new pattern without a scoping rule; add it to API_RULES"


@pytest.mark.parametrize("username", sorted(FOREIGN))
def test_no_admin_screen_shows_or_changes_what_the_role_may_not(client, staff, world, username):
    client.force_login(staff[username])
    markers = FOREIGN[username]
    objects = world["objects"]
    tried = 0
    for route, pattern in _walk():
        if not route.startswith("admin/") or pattern.name in ("logout", "password_change", "password_change_done"):
            continue
        for url in _admin_urls(route, pattern.name, objects):
            _check(client.get("/" + url), markers, url)
            before = _governed_digest(username)
            key = _model_key(route, pattern.name)
            data = _post_data(objects.get(key))
            response = client.post("/" + url, data)
            # A form shown again with the values just posted is no leak of them.
            _check(response, [m for m in markers if m not in repr(data)], f"POST {url}")
            assert _governed_digest(username) == before, f"POST {url} as {username} changed governed data"
            tried += 1
    assert tried > 100


@pytest.mark.parametrize("username", sorted(FOREIGN))
def test_no_api_route_shows_or_changes_what_the_role_may_not(api, staff, world, username):
    objects = world["objects"]
    for route, pattern in _walk():
        if route.startswith("admin/"):
            continue
        rule = API_RULES[pattern.name]
        for url in _api_urls(route, pattern.name, objects):
            api.force_authenticate(None)
            if rule == "partner":  # what a browser session would send: a staff session cookie
                api.force_login(staff[username])
            else:
                api.force_authenticate(staff[username])
            before = _governed_digest()
            for method in ("get", "post"):
                response = getattr(api, method)("/" + url, {"person_id": str(objects["person"].pk), "vertical": "health",
                                                             "status": "granted", "reason": "x"}, format="json") \
                    if method == "post" else api.get("/" + url)
                _check(response, FOREIGN[username], f"{method} {url}")
                if rule == "partner":  # a staff user is no partner: nothing at all
                    assert response.status_code == 401, (url, response.status_code)
                if rule == "metrics" and username != "auditor":
                    assert response.status_code in (401, 403)
            assert _governed_digest() == before, f"{url} as {username} changed governed data"


def test_a_partner_token_reaches_no_object_of_another_tenant_on_any_exchange_route(api, world):
    """Every exchange route with an object in its path, pointed at the other tenant's objects
    with a valid partner token of this tenant: not found, and nothing changes."""
    objects, ke = world["objects"], world["ke_partner"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {ke.token}")
    checked = 0
    for route, pattern in _walk():
        if API_RULES.get(pattern.name) != "partner" or not _params(route):
            continue
        for url in _api_urls(route, pattern.name, objects):
            before = _governed_digest()
            for response in (api.get(f"/{url}?vertical=health"), api.post(f"/{url}", {}, format="json")):
                assert response.status_code in (404, 405), (url, response.status_code)
                _check(response, UG_MARKERS, url)
            assert _governed_digest() == before
            checked += 1
    assert checked >= 6
