"""End to end through the real services: an integration is walked to Active through the
governance API, Keycloak issues its client, the partner gets a token from Keycloak's token
endpoint and pulls consent-filtered, minimized data; every request is audited."""
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from audit.models import AuditEvent, AuditRecord, AuditResult
from lifecycle import keycloak, services
from registry.models import Integration, IntegrationStatus, IntegrationTemplate, Partner
from scp_core.models import ConsentStatus

from .agreement_helpers import agreement_terms, pdf_upload, sign_agreement
from .conftest import client_token, make_person, user_token

pytestmark = pytest.mark.django_db(transaction=True)

GRANTED, WITHDRAWN = ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN


def _governance(api, token, path, body=None):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    if body is None:
        return api.get(f"/api/v1/governance/{path}")
    return api.post(f"/api/v1/governance/{path}", body, format="json")


def _activate_through_api(api, keycloak_clients, *, tenant, name):
    """Each step by its rightful role, each with a real Keycloak user token."""
    admin, owner, umbrella = (user_token(u) for u in (f"{tenant}-admin", f"{tenant}-health-owner", "umbrella"))
    response = _governance(api, admin, "integrations/", {
        "template": "health-records-basic", "tenant": tenant, "partner": "acme-health",
        "integration_name": name, "verticals": ["health"],
    })
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "draft"
    integration_id = response.json()["integration_id"]
    keycloak_clients.append(f"scp-int-{integration_id}")
    # The tenant admin uploads the signed data-sharing agreement: no sign-off without one.
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {admin}")
    response = api.post(f"/api/v1/governance/integrations/{integration_id}/agreements/",
                        {**agreement_terms(Integration.objects.get(pk=integration_id)), "document": pdf_upload()},
                        format="multipart")
    assert response.status_code == 201, response.content
    for token, action, body in [
        (admin, "submit", {}),
        (owner, "review", {"vertical": "health", "decision": "approve"}),
        (umbrella, "approve", {}),
    ]:
        response = _governance(api, token, f"integrations/{integration_id}/{action}/", body)
        assert response.status_code == 200, (action, response.content)
    response = _governance(api, admin, f"integrations/{integration_id}/activate/", {})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "active"
    assert body["client_id"] == f"scp-int-{integration_id}" == body["auth_client_id"]
    return integration_id, body["client_id"], body["client_secret"]


def _partner_get(api, token, path):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api.get(path)


def test_integration_walked_to_active_serves_only_its_tenants_consented_persons(api, demo, keycloak_clients):
    health = demo["health"]
    ke_granted = make_person(demo["ke"], "11112222", [(health, GRANTED)], given_name="Amina")
    ke_withdrawn = make_person(demo["ke"], "11113333", [(health, WITHDRAWN)])
    ke_never = make_person(demo["ke"], "11114444", [])
    ke_other_vertical = make_person(demo["ke"], "11115555", [(demo["education"], GRANTED)])
    ug_granted = make_person(demo["ug"], "22226666", [(health, GRANTED)])

    integration_id, client_id, secret = _activate_through_api(api, keycloak_clients, tenant="ke", name="ACME clinic sync")
    ke_admin_token = user_token("ke-admin")

    # The partner obtains a token from Keycloak's real token endpoint.
    token_response = client_token(client_id, secret)
    assert token_response.status_code == 200, token_response.text
    token = token_response.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["tenant_id"] == "ke"
    assert claims["integration_id"] == integration_id
    assert claims["verticals"] == ["health"]
    assert "scp-exchange" in ([claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"])
    assert claims["azp"] == client_id

    response = _partner_get(api, token, "/api/v1/persons/?vertical=health")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [p["id"] for p in results] == [str(ke_granted.pk)]
    # Minimized per the data contract: national id last 4 only, birth year only, no phone.
    assert results[0] == {
        "id": str(ke_granted.pk),
        "given_name": "Amina",
        "family_name": ke_granted.family_name,
        "national_id": "****2222",
        "birth_date": 1990,
        "sex": "F",
        "district": "Nairobi",
    }
    for absent in (ke_withdrawn, ke_never, ke_other_vertical, ug_granted):
        assert str(absent.pk) not in {p["id"] for p in results}

    record = AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST).latest("id")
    assert record.result == AuditResult.SUCCESS
    assert record.status_code == 200
    assert record.tenant.code == "ke"
    assert str(record.integration_id) == integration_id
    assert record.client_id == client_id
    assert record.verticals == ["health"]
    assert record.details["token"]["jti"] == claims["jti"]

    # Another tenant's person is not found; an unconsented one is a consent denial.
    assert _partner_get(api, token, f"/api/v1/persons/{ug_granted.pk}/?vertical=health").status_code == 404
    denied = _partner_get(api, token, f"/api/v1/persons/{ke_withdrawn.pk}/?vertical=health")
    assert denied.status_code == 403 and denied.json()["code"] == "consent_denied"
    # A vertical outside the integration's scope is refused.
    denied = _partner_get(api, token, "/api/v1/persons/?vertical=education")
    assert denied.status_code == 403 and denied.json()["code"] == "vertical_not_permitted"

    # Consent withdrawn through the governance API: absent from the very next request.
    response = _governance(api, ke_admin_token, "consents/", {
        "person_id": str(ke_granted.pk), "vertical": "health", "status": "withdrawn",
    })
    assert response.status_code == 201, response.content
    response = _partner_get(api, token, "/api/v1/persons/?vertical=health")
    assert response.status_code == 200
    assert response.json()["results"] == []
    denied = _partner_get(api, token, f"/api/v1/persons/{ke_granted.pk}/?vertical=health")
    assert denied.status_code == 403 and denied.json()["code"] == "consent_denied"


def test_forged_foreign_and_suspended_tokens_are_refused(api, demo, keycloak_clients):
    make_person(demo["ke"], "33334444", [(demo["health"], GRANTED)])
    integration_id, client_id, secret = _activate_through_api(api, keycloak_clients, tenant="ke", name="ACME clinic sync")
    ke_admin_token = user_token("ke-admin")
    token = client_token(client_id, secret).json()["access_token"]

    # Same claims and the realm's real kid, but signed by a key that is not the realm's.
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, foreign_key, algorithm="RS256", headers={"kid": kid})
    response = _partner_get(api, forged, "/api/v1/persons/?vertical=health")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "token_invalid"
    # A random kid is refused the same way (after one JWKS refetch, rate-limited by cooldown).
    forged = jwt.encode(claims, foreign_key, algorithm="RS256", headers={"kid": str(uuid.uuid4())})
    assert _partner_get(api, forged, "/api/v1/persons/?vertical=health").json()["code"] == "token_invalid"

    # A client that is not this integration's own, even claiming its integration_id, is refused.
    rogue_client_id = f"scp-rogue-{uuid.uuid4()}"
    keycloak_clients.append(rogue_client_id)
    rogue_uuid = keycloak.ensure_client(
        client_id=rogue_client_id, tenant_code="ke", integration_id=integration_id, verticals=["health"]
    )
    rogue_token = client_token(rogue_client_id, keycloak.regenerate_secret(rogue_uuid)).json()["access_token"]
    response = _partner_get(api, rogue_token, "/api/v1/persons/?vertical=health")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"

    # The client of another (active) integration sees only its own tenant, never this one's.
    _, other_client, other_secret = _activate_through_api(api, keycloak_clients, tenant="ug", name="ACME Uganda")
    other_token = client_token(other_client, other_secret).json()["access_token"]
    response = _partner_get(api, other_token, "/api/v1/persons/?vertical=health")
    assert response.status_code == 200 and response.json()["results"] == []

    # Suspension: the still-valid token is refused on its next request, and Keycloak
    # refuses the client new tokens.
    response = _governance(api, ke_admin_token, f"integrations/{integration_id}/suspend/", {"reason": "violation"})
    assert response.status_code == 200 and response.json()["status"] == "suspended"
    response = _partner_get(api, token, "/api/v1/persons/?vertical=health")
    assert response.status_code == 403
    assert response.json()["code"] == "integration_suspended"
    assert client_token(client_id, secret).status_code in (400, 401)

    denied = AuditRecord.objects.filter(event_type=AuditEvent.API_REQUEST, result=AuditResult.DENIED)
    assert {r.error_code for r in denied} >= {"token_invalid", "permission_denied", "integration_suspended"}


def test_missing_and_malformed_tokens_are_problems(api, demo):
    response = api.get("/api/v1/persons/?vertical=health")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "token_missing"
    assert set(body) >= {"type", "title", "status", "detail", "code", "request_id", "errors"}
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    assert api.get("/api/v1/persons/?vertical=health").json()["code"] == "token_invalid"


def test_activation_with_keycloak_down_changes_nothing_and_can_be_retried(api, demo, staff, keycloak_clients, settings):
    template = IntegrationTemplate.objects.get(slug="health-records-basic")
    integration = services.integration_create(
        actor=staff["ke-admin"], tenant=demo["ke"], partner=Partner.objects.get(slug="acme-health"),
        integration_name="retry me", verticals=[demo["health"]], template=template,
    )
    keycloak_clients.append(integration.client_id_for_keycloak)
    integration = services.integration_submit(integration=integration, actor=staff["ke-admin"])
    integration = services.integration_review(
        integration=integration, actor=staff["ke-health-owner"], vertical=demo["health"], decision="approve"
    )
    sign_agreement(integration, staff["ke-admin"])
    integration = services.integration_approve(integration=integration, actor=staff["umbrella"])

    # Keycloak unreachable (a closed port): 503 upstream_unavailable, nothing changed.
    real_url = settings.KEYCLOAK_URL
    settings.KEYCLOAK_URL = "http://127.0.0.1:9"
    settings.KEYCLOAK_TOKEN_URL = "http://127.0.0.1:9/realms/scp/protocol/openid-connect/token"
    api.force_authenticate(staff["ke-admin"])
    response = api.post(f"/api/v1/governance/integrations/{integration.pk}/activate/", {}, format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "upstream_unavailable"
    integration.refresh_from_db()
    assert integration.status == IntegrationStatus.APPROVED
    assert integration.auth_client_id == ""

    # Keycloak back: the same call succeeds.
    settings.KEYCLOAK_URL = real_url
    settings.KEYCLOAK_TOKEN_URL = f"{real_url}/realms/scp/protocol/openid-connect/token"
    response = api.post(f"/api/v1/governance/integrations/{integration.pk}/activate/", {}, format="json")
    assert response.status_code == 200, response.content
    assert Integration.objects.get(pk=integration.pk).status == IntegrationStatus.ACTIVE
    assert client_token(response.json()["client_id"], response.json()["client_secret"]).status_code == 200
