"""The partner's own pages (issue #14 item 6): a partner user sees only its partner's
integrations, each with its state and history, the reviewers' comments, exactly its contract
(and an OpenAPI document narrowed to it, shown by a Swagger UI the portal serves itself),
example requests, webhook deliveries with a replay that goes through one audited service, and
its credentials. Staff who may see the integration read the same pages; anyone else gets 404."""
import datetime
import re
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord
from exchange.deliveries import delivery_replay
from exchange.models import Delivery, DeliveryAttempt, DeliveryStatus, Event, EventType, Subscription
from lifecycle import services
from lifecycle.demo import HEALTH_READ_FIELDS, IMMUNIZATION_SCHEMA
from lifecycle.models import Role, RoleAssignment
from registry.models import Credential, CredentialKind, IntegrationTemplate, Partner, PartnerType
from scp_core.errors import InvalidTransitionError, PermissionDeniedError

from .agreement_helpers import sign_agreement
from .conftest import client_token

pytestmark = pytest.mark.django_db

HOOK_URL = "https://hook-user:hook-pass@hooks.acme.example/scp/events?token=s3cr3t-query"


def _request(staff, demo, *, tenant="ke", partner=None, name, by=None):
    by = by or f"{tenant}-admin"
    return services.integration_create(
        actor=staff[by], tenant=demo[tenant], partner=partner or Partner.objects.get(slug="acme-health"),
        integration_name=name, verticals=[demo["health"]],
        template=IntegrationTemplate.objects.get(slug="health-records-basic", version=1),
        purpose="Report immunizations to the district.",
    )


@pytest.fixture
def world(staff, demo, keycloak_clients):
    """acme-health's Active integration in ke (reviewed with a comment, suspended and reinstated
    with reasons, a webhook with deliveries, a credential), another partner's in ke and in ug."""
    integration = _request(staff, demo, name="ACME clinic sync")
    keycloak_clients.append(integration.client_id_for_keycloak)
    integration = services.integration_submit(integration=integration, actor=staff["ke-admin"])
    integration = services.integration_review(integration=integration, actor=staff["ke-health-owner"],
                                              vertical=demo["health"], decision="approve",
                                              reason="REVIEW-COMMENT: district level only, no phone numbers")
    sign_agreement(integration, staff["ke-admin"])  # no sign-off without one
    integration = services.integration_approve(integration=integration, actor=staff["umbrella"])
    integration, credentials = services.integration_activate(integration=integration, actor=staff["ke-admin"])
    integration = services.integration_suspend(integration=integration, actor=staff["ke-admin"], reason="SUSPEND-REASON")
    integration = services.integration_reinstate(integration=integration, actor=staff["ke-admin"], reason="REINSTATE-REASON")

    other = Partner.objects.create(slug="other-ngo", name="Other NGO", partner_type=PartnerType.NGO)
    other_user = get_user_model().objects.create(username="other-partner-user", is_staff=True)
    RoleAssignment.objects.create(user=other_user, role=Role.PARTNER_USER, partner=other)
    other_ke = _request(staff, demo, partner=other, name="OTHER-PARTNER-KE")
    other_ug = _request(staff, demo, tenant="ug", partner=other, name="OTHER-PARTNER-UG")

    subscription = Subscription.objects.create(integration=integration, url=HOOK_URL, event_types=["record.created"],
                                               secret="whsec_NEVER-SHOWN-SECRET")
    now = timezone.now()

    def delivery(status, attempts, last_error=""):
        event = Event.objects.create(event_type=EventType.RECORD_CREATED, tenant=demo["ke"], vertical=demo["health"],
                                     person_id=uuid.uuid4(), integration=integration, data={"record_id": "x"})
        made = Delivery.objects.create(event=event, subscription=subscription, status=status, attempts=len(attempts),
                                       last_error=last_error, delivered_at=now if status == DeliveryStatus.DELIVERED else None)
        for number, (code, error) in enumerate(attempts, 1):
            DeliveryAttempt.objects.create(delivery=made, number=number, attempted_at=now - datetime.timedelta(minutes=10 - number),
                                           status_code=code, error=error, duration_ms=37)
        return made

    deliveries = {
        "dead": delivery(DeliveryStatus.DEAD, [(503, ""), (None, "ConnectTimeout"), (400, "")], "HTTP 400"),
        "delivered": delivery(DeliveryStatus.DELIVERED, [(200, "")]),
        "pending": delivery(DeliveryStatus.PENDING, []),
        "skipped": delivery(DeliveryStatus.SKIPPED, [], "not visible to the subscriber at delivery time"),
    }
    Credential.objects.create(integration=integration, kind=CredentialKind.CLIENT_SECRET, issued_by=staff["ke-admin"],
                              issued_at=now - datetime.timedelta(days=30), expires_at=now + datetime.timedelta(days=2))
    Credential.objects.create(integration=integration, kind=CredentialKind.API_KEY, prefix="scpk_AbCdEfG",
                              issued_at=now - datetime.timedelta(days=90), revoked_at=now - datetime.timedelta(days=1),
                              revoked_reason="REVOKED-REASON")
    return {"integration": integration, "credentials": credentials, "other_ke": other_ke, "other_ug": other_ug,
            "other_user": other_user, "subscription": subscription, "deliveries": deliveries}


def _as(user):
    client = Client()
    client.force_login(user)
    return client


def _urls(integration):
    """The integration's pages a GET reaches: its page, its API docs, its OpenAPI document."""
    base = f"/admin/partner/integrations/{integration.pk}/"
    return [base, base + "api-docs/", base + "openapi.json"]


# --- who reaches what -------------------------------------------------------------------------


def test_partner_user_sees_only_its_partners_integrations(staff, world):
    client = _as(staff["partner-user"])
    home = client.get("/admin/partner/")
    assert home.status_code == 200
    body = home.content.decode()
    assert "ACME clinic sync" in body
    assert "OTHER-PARTNER" not in body
    for url in _urls(world["integration"]):
        assert client.get(url).status_code == 200, url
    for foreign in (world["other_ke"], world["other_ug"]):  # another partner's, in its tenant and in another
        for url in _urls(foreign):
            response = client.get(url)
            assert response.status_code == 404, url
            assert b"OTHER-PARTNER" not in response.content
    dead = world["deliveries"]["dead"]
    # A delivery of its own integration named under another integration's URL is not found either.
    response = client.post(f"/admin/partner/integrations/{world['other_ke'].pk}/deliveries/{dead.pk}/replay/")
    assert response.status_code == 404
    assert Delivery.objects.get(pk=dead.pk).status == DeliveryStatus.DEAD


def test_another_partners_user_and_other_tenants_admin_get_404(staff, world):
    own = world["integration"]
    for user in (world["other_user"], staff["ug-admin"]):
        client = _as(user)
        for url in _urls(own):
            assert client.get(url).status_code == 404, (user.username, url)
        dead = world["deliveries"]["dead"]
        assert client.post(f"/admin/partner/integrations/{own.pk}/deliveries/{dead.pk}/replay/").status_code == 404
        assert Delivery.objects.get(pk=dead.pk).status == DeliveryStatus.DEAD
    home = _as(world["other_user"]).get("/admin/partner/").content.decode()
    assert "OTHER-PARTNER-KE" in home and "OTHER-PARTNER-UG" in home and "ACME clinic sync" not in home
    ug_home = _as(staff["ug-admin"]).get("/admin/partner/").content.decode()
    assert "OTHER-PARTNER-UG" in ug_home and "ACME clinic sync" not in ug_home and "OTHER-PARTNER-KE" not in ug_home


def test_roles_without_these_pages_get_404_everywhere(staff, world):
    nobody = get_user_model().objects.create(username="staff-without-role", is_staff=True)
    for user in (staff["ke-health-owner"], nobody):
        client = _as(user)
        assert client.get("/admin/partner/").status_code == 404
        for url in _urls(world["integration"]):
            assert client.get(url).status_code == 404, (user.username, url)
        assert b"scp-partner-links" not in client.get("/admin/").content


def test_staff_who_see_the_integration_read_it_and_only_replayers_get_the_button(staff, world):
    own = world["integration"]
    for username, replays in (("ke-admin", True), ("root", True), ("auditor", False), ("umbrella", False),
                              ("partner-user", True)):
        client = _as(staff[username])
        for url in _urls(own):
            assert client.get(url).status_code == 200, (username, url)
        page = client.get(f"/admin/partner/integrations/{own.pk}/").content.decode()
        assert ("/replay/" in page) is replays, username
        assert b"scp-partner-links" in client.get("/admin/").content
    assert "My integrations" in _as(staff["partner-user"]).get("/admin/").content.decode()


def test_anonymous_is_sent_to_the_login(world):
    response = Client().get(f"/admin/partner/integrations/{world['integration'].pk}/openapi.json")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- what the integration page shows ----------------------------------------------------------


def test_the_integration_page_shows_state_history_reviews_contract_examples_webhooks_credentials(staff, world):
    integration, credentials = world["integration"], world["credentials"]
    page = _as(staff["partner-user"]).get(f"/admin/partner/integrations/{integration.pk}/").content.decode()
    # State and history with reasons; the reviewer's comment.
    assert "Active" in page
    for text in ("SUSPEND-REASON", "REINSTATE-REASON", "REVIEW-COMMENT: district level only", "Report immunizations"):
        assert text in page, text
    # Its contract: each field with its mask, no field outside it, its record types with their schema.
    fields = re.search(r'<table id="partner-fields">(.*?)</table>', page, re.S).group(1)
    for field, rule in HEALTH_READ_FIELDS.items():
        assert f"<code>{field}</code></td><td><code>{rule}</code>" in fields, field
    assert "phone" not in fields
    assert "only the last 4 characters" in fields
    writes = re.search(r'<div id="partner-record-writes">(.*?)</div>', page, re.S).group(1)
    assert "immunization" in writes and "&quot;minimum&quot;: 1" in writes
    # Example requests with the real base URLs and its client id, never a secret.
    examples = re.search(r'<div id="partner-examples">(.*?)</div>', page, re.S).group(1)
    assert settings.KEYCLOAK_TOKEN_URL in examples and credentials["client_id"] in examples
    assert f"{settings.SCP_PORTAL_URL.rstrip('/')}/api/v1/persons/?vertical=health" in examples
    for call in ("/api/v1/records/", "/api/v1/imports/", "/api/v1/exports/", "person_id,vaccine,dose,date"):
        assert call in examples, call
    assert credentials["client_secret"] not in page
    # Webhooks: the endpoint without credentials or query; every delivery and attempt.
    assert "https://hooks.acme.example/scp/events" in page
    for secret in ("hook-pass", "hook-user", "s3cr3t-query", "whsec_"):
        assert secret not in page, secret
    deliveries = world["deliveries"]
    for delivery in deliveries.values():
        assert str(delivery.pk) in page
        assert str(delivery.event.person_id) not in page  # never who an event was about
    assert "ConnectTimeout" in page and "503" in page and "no response" in page
    # Replay buttons only on what can be replayed.
    assert page.count('class="replay"') == 2
    for status in ("dead", "delivered"):
        assert f"/deliveries/{deliveries[status].pk}/replay/" in page
    # Credentials, and the existing lifecycle screen for rotating.
    assert "scpk_AbCdEfG" in page and "REVOKED-REASON" in page and "in grace" in page and "revoked" in page
    assert f"/admin/registry/integration/{integration.pk}/action/rotate-secret/" in page


def test_deliveries_filter_by_status(staff, world):
    integration, deliveries = world["integration"], world["deliveries"]
    page = _as(staff["partner-user"]).get(f"/admin/partner/integrations/{integration.pk}/?delivery_status=dead").content.decode()
    assert str(deliveries["dead"].pk) in page and str(deliveries["delivered"].pk) not in page


# --- the OpenAPI document of exactly its contract ---------------------------------------------


def test_openapi_lists_only_its_verticals_fields_with_masks_and_record_types(staff, world):
    integration = world["integration"]
    response = _as(staff["partner-user"]).get(f"/admin/partner/integrations/{integration.pk}/openapi.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": settings.SCP_PORTAL_URL.rstrip("/"), "description": "SCP Integration Layer"}]
    # Only the exchange, only its paths; no governance API.
    assert all(p.startswith("/api/v1/") and "/governance/" not in p for p in doc["paths"])
    assert {"/api/v1/persons/", "/api/v1/records/", "/api/v1/imports/", "/api/v1/exports/"} <= set(doc["paths"])
    assert set(doc["components"]["securitySchemes"]) == {"partnerToken"}
    # Its verticals as the vertical enum, everywhere it is asked for.
    persons = doc["paths"]["/api/v1/persons/"]["get"]
    assert next(p for p in persons["parameters"] if p["name"] == "vertical")["schema"]["enum"] == ["health"]
    # The person: only its fields, each with its mask; not a field outside its read scope.
    schemas = doc["components"]["schemas"]
    person = schemas["MinimizedPerson"]
    assert set(person["properties"]) == set(HEALTH_READ_FIELDS)
    assert "phone" not in person["properties"] and person["additionalProperties"] is False
    assert person["properties"]["national_id"]["x-scp-masks"] == {"health": "last:4"}
    assert "last:4" in person["properties"]["national_id"]["description"]
    assert person["properties"]["birth_date"] == {**person["properties"]["birth_date"], "type": "integer"}
    # The record types it may write, with their data schemas; those it may read.
    assert schemas["RecordPush"]["properties"]["record_type"]["enum"] == ["immunization"]
    assert schemas["RecordPush"]["properties"]["vertical"]["enum"] == ["health"]
    data = schemas["RecordData.health.immunization"]
    assert data["properties"] == IMMUNIZATION_SCHEMA["properties"] and data["required"] == IMMUNIZATION_SCHEMA["required"]
    assert schemas["RecordPush"]["properties"]["data"] == {"$ref": "#/components/schemas/RecordData.health.immunization"}
    assert set(schemas["RecordRead.health.immunization"]["properties"]) == {"vaccine", "dose", "date"}
    assert doc["x-scp-read-scope"] == {"health": HEALTH_READ_FIELDS}
    example = doc["paths"]["/api/v1/records/"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert example["health.immunization"]["value"]["data"] == {"vaccine": "text", "dose": 1, "date": "2026-01-15"}
    assert world["credentials"]["client_secret"] not in response.content.decode()


def test_openapi_follows_a_reviewers_narrowing_before_activation(staff, demo, world):
    integration = _request(staff, demo, name="narrowed")
    integration = services.integration_submit(integration=integration, actor=staff["ke-admin"])
    services.integration_review(integration=integration, actor=staff["ke-health-owner"], vertical=demo["health"],
                                decision="approve", approved_fields=["id", "given_name", "national_id"])
    doc = _as(staff["partner-user"]).get(f"/admin/partner/integrations/{integration.pk}/openapi.json").json()
    assert set(doc["components"]["schemas"]["MinimizedPerson"]["properties"]) == {"id", "given_name", "national_id"}
    # The reviewer listed no record field: nothing of the records is readable, so no GET /records/.
    assert "get" not in doc["paths"]["/api/v1/records/"]
    assert "post" in doc["paths"]["/api/v1/records/"]


def test_api_docs_page_serves_swagger_ui_from_the_portal_only(staff, world):
    integration = world["integration"]
    response = _as(staff["partner-user"]).get(f"/admin/partner/integrations/{integration.pk}/api-docs/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in body
    assert f'data-openapi-url="/admin/partner/integrations/{integration.pk}/openapi.json"' in body
    assert not re.search(r'(src|href)="(https?:)?//', body), "an asset from elsewhere"
    assert "cdn" not in body.lower()
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "script-src 'self';" in response["Content-Security-Policy"]
    for asset in ("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
                  "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css", "scp_portal/partner-api-docs.js"):
        assert finders.find(asset), asset


# --- replaying a delivery: one service, its permission, its audit -----------------------------


def _replays():
    return AuditRecord.objects.filter(event_type=AuditEvent.WEBHOOK_REPLAYED)


def test_replay_service_puts_a_dead_or_delivered_delivery_back_and_audits_it(staff, world):
    for status in ("dead", "delivered"):
        delivery = world["deliveries"][status]
        replayed = delivery_replay(delivery=delivery, actor=staff["partner-user"], request_id=f"req-{status}")
        delivery.refresh_from_db()
        assert replayed.status == delivery.status == DeliveryStatus.PENDING
        assert delivery.attempts == 0 and delivery.last_error == "" and delivery.delivered_at is None
        assert delivery.next_attempt_at <= timezone.now()
        assert delivery.attempt_log.count() == (3 if status == "dead" else 1)  # the earlier attempts are kept
        record = _replays().get(request_id=f"req-{status}")
        assert record.actor == "partner-user" and record.integration_id == world["integration"].pk
        assert record.details["delivery"] == str(delivery.pk) and record.details["before"]["status"] == status
        assert record.details["after"] == {"status": "pending"}
        assert record.details["endpoint_host"] == "hooks.acme.example"
        assert "s3cr3t" not in str(record.details) and "hook-pass" not in str(record.details)


def test_replay_is_refused_to_who_may_not_and_changes_nothing(staff, world):
    dead = world["deliveries"]["dead"]
    for user in (staff["auditor"], staff["umbrella"], staff["ug-admin"], staff["ke-health-owner"], world["other_user"]):
        with pytest.raises(PermissionDeniedError):
            delivery_replay(delivery=dead, actor=user)
    dead.refresh_from_db()
    assert dead.status == DeliveryStatus.DEAD and dead.attempts == 3
    assert not _replays().exists()


def test_replay_refuses_pending_and_skipped_deliveries_and_unserved_integrations(staff, world):
    for status in ("pending", "skipped"):
        with pytest.raises(InvalidTransitionError):
            delivery_replay(delivery=world["deliveries"][status], actor=staff["partner-user"])
    services.integration_suspend(integration=world["integration"], actor=staff["ke-admin"], reason="x")
    with pytest.raises(InvalidTransitionError, match="Suspended"):
        delivery_replay(delivery=world["deliveries"]["dead"], actor=staff["partner-user"])
    assert Delivery.objects.get(pk=world["deliveries"]["dead"].pk).status == DeliveryStatus.DEAD
    assert not _replays().exists()


def test_replay_enables_a_disabled_endpoint_again(staff, world):
    subscription = world["subscription"]
    Subscription.objects.filter(pk=subscription.pk).update(active=False, disabled_reason="the endpoint answered 410 Gone",
                                                           consecutive_failures=20)
    delivery_replay(delivery=world["deliveries"]["dead"], actor=staff["ke-admin"])
    subscription.refresh_from_db()
    assert subscription.active and subscription.disabled_reason == "" and subscription.consecutive_failures == 0
    assert _replays().get().details["subscription_reenabled"] is True


def test_replay_button_posts_with_csrf_to_the_service(staff, world):
    integration, dead = world["integration"], world["deliveries"]["dead"]
    url = f"/admin/partner/integrations/{integration.pk}/deliveries/{dead.pk}/replay/"
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff["partner-user"])
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no CSRF token
    assert Delivery.objects.get(pk=dead.pk).status == DeliveryStatus.DEAD
    page = client.get(f"/admin/partner/integrations/{integration.pk}/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = client.post(url, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"].endswith(f"/admin/partner/integrations/{integration.pk}/#webhooks")
    assert Delivery.objects.get(pk=dead.pk).status == DeliveryStatus.PENDING
    assert _replays().get().actor == "partner-user"
    followed = client.get(response["Location"]).content.decode()
    assert "queued to be sent again" in followed


def test_replay_through_the_page_is_refused_to_a_read_only_auditor(staff, world):
    integration, dead = world["integration"], world["deliveries"]["dead"]
    client = _as(staff["auditor"])
    response = client.post(f"/admin/partner/integrations/{integration.pk}/deliveries/{dead.pk}/replay/", follow=True)
    assert "Not replayed" in response.content.decode()
    assert Delivery.objects.get(pk=dead.pk).status == DeliveryStatus.DEAD and not _replays().exists()


def test_the_admins_replay_action_goes_through_the_service(staff, world):
    deliveries = world["deliveries"]
    selected = [deliveries["dead"].pk, deliveries["pending"].pk]
    response = _as(staff["ke-admin"]).post("/admin/exchange/delivery/", {
        "action": "replay_dead_letters", "_selected_action": [str(pk) for pk in selected]}, follow=True)
    body = response.content.decode()
    assert "1 deliveries queued again" in body and "already queued" in body
    assert Delivery.objects.get(pk=deliveries["dead"].pk).status == DeliveryStatus.PENDING
    record = _replays().get()
    assert record.actor == "ke-admin" and record.details["delivery"] == str(deliveries["dead"].pk)
    # The auditor has no such action: nothing changes.
    _as(staff["auditor"]).post("/admin/exchange/delivery/", {
        "action": "replay_dead_letters", "_selected_action": [str(deliveries["delivered"].pk)]})
    assert Delivery.objects.get(pk=deliveries["delivered"].pk).status == DeliveryStatus.DELIVERED
    assert _replays().count() == 1


def test_the_token_example_names_a_client_that_really_issues_tokens(staff, world):
    """The example's token URL and client id are the real ones: with the secret the partner
    keeps, Keycloak issues a token for exactly this client."""
    credentials = world["credentials"]
    page = _as(staff["partner-user"]).get(f"/admin/partner/integrations/{world['integration'].pk}/").content.decode()
    client_id = re.search(r"client_id=(\S+)", page).group(1)
    assert client_id == credentials["client_id"]
    response = client_token(client_id, credentials["client_secret"])
    assert response.status_code == 200 and response.json()["access_token"]
