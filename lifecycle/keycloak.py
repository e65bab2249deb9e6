"""A thin client of Keycloak's Admin REST API for the integrations' machine clients.

The portal authenticates as its own confidential client (`scp-portal`), whose service account
holds realm-management manage-clients / view-clients / query-clients. Every call is idempotent
by the integration's stable clientId, so a failed activation can simply be retried.
"""
import json
import logging
import threading
import time

import requests
from django.conf import settings

logger = logging.getLogger(__name__)

# Clients carrying this attribute fall under the realm's client policy with the
# `secret-rotation` executor (keycloak/realm-scp.json): after a new secret is generated, Keycloak
# keeps accepting the previous one ("rotated") until its expiry. It keeps only one.
ROTATION_ATTRIBUTE = "scp.integration"
_SECRET_CREATED = "client.secret.creation.time"
_SECRET_EXPIRES = "client.secret.expiration.time"
_ROTATED_EXPIRES = "client.secret.rotated.expiration.time"
_ROTATED = "client.secret.rotated"


class KeycloakUnavailable(Exception):
    """Keycloak could not be reached or answered with a server error."""


class KeycloakError(Exception):
    """Keycloak refused a request it should have accepted (a bug or a misconfigured realm)."""


class _AdminSession:
    def __init__(self):
        self._session = requests.Session()
        self._token = None
        self._token_expires = 0.0
        self._lock = threading.Lock()

    @property
    def _admin_base(self):
        return f"{settings.KEYCLOAK_URL}/admin/realms/{settings.KEYCLOAK_REALM}"

    def _access_token(self, force=False):
        with self._lock:
            if force or self._token is None or time.monotonic() > self._token_expires:
                response = self._send(
                    "POST",
                    settings.KEYCLOAK_TOKEN_URL,
                    data={
                        "grant_type": "client_credentials",
                        "client_id": settings.KEYCLOAK_PORTAL_CLIENT_ID,
                        "client_secret": settings.KEYCLOAK_PORTAL_CLIENT_SECRET,
                    },
                )
                if response.status_code != 200:
                    raise KeycloakError(f"portal client token refused: {response.status_code} {response.text[:200]}")
                body = response.json()
                self._token = body["access_token"]
                # Renew a little before expiry so no call races the token's end.
                self._token_expires = time.monotonic() + max(body.get("expires_in", 60) - 15, 5)
            return self._token

    def _send(self, method, url, **kwargs):
        try:
            response = self._session.request(method, url, timeout=settings.KEYCLOAK_TIMEOUT_SECONDS, **kwargs)
        except requests.RequestException as exc:
            raise KeycloakUnavailable(f"Keycloak is unreachable: {exc.__class__.__name__}") from exc
        if response.status_code >= 500:
            raise KeycloakUnavailable(f"Keycloak answered {response.status_code}")
        return response

    def request(self, method, path, **kwargs):
        url = f"{self._admin_base}{path}"
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        response = self._send(method, url, headers=headers, **kwargs)
        if response.status_code == 401:  # token revoked or expired early: renew once
            headers = {"Authorization": f"Bearer {self._access_token(force=True)}"}
            response = self._send(method, url, headers=headers, **kwargs)
        return response


_admin = _AdminSession()


def _expect(response, *codes):
    if response.status_code not in codes:
        raise KeycloakError(f"{response.request.method} {response.url} -> {response.status_code}: {response.text[:300]}")
    return response


def _hardcoded_claim(name, value, json_type):
    return {
        "name": name,
        "protocol": "openid-connect",
        "protocolMapper": "oidc-hardcoded-claim-mapper",
        "config": {
            "claim.name": name,
            "claim.value": value,
            "jsonType.label": json_type,
            "access.token.claim": "true",
            "id.token.claim": "false",
            "userinfo.token.claim": "false",
            "introspection.token.claim": "true",
        },
    }


def _desired_mappers(*, tenant_code, integration_id, verticals):
    return [
        _hardcoded_claim("tenant_id", tenant_code, "String"),
        _hardcoded_claim("integration_id", str(integration_id), "String"),
        _hardcoded_claim("verticals", json.dumps(sorted(verticals)), "JSON"),
        {
            "name": "scp-exchange-audience",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {
                "included.custom.audience": settings.KEYCLOAK_EXCHANGE_AUDIENCE,
                "access.token.claim": "true",
                "id.token.claim": "false",
                "introspection.token.claim": "true",
            },
        },
    ]


def find_client(client_id):
    """The client's representation, or None when Keycloak has no client with that clientId."""
    response = _expect(_admin.request("GET", "/clients", params={"clientId": client_id}), 200)
    matches = [c for c in response.json() if c.get("clientId") == client_id]
    return matches[0] if matches else None


def ensure_client(*, client_id, tenant_code, integration_id, verticals, enabled=True):
    """Create or update a client-credentials-only machine client with the integration's claims.

    Returns the client's internal Keycloak id. Safe to call any number of times.
    """
    representation = {
        "clientId": client_id,
        "name": f"SCP integration {integration_id}",
        "enabled": enabled,
        "protocol": "openid-connect",
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "serviceAccountsEnabled": True,
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "fullScopeAllowed": False,
        "attributes": {"access.token.lifespan": str(settings.KEYCLOAK_INTEGRATION_TOKEN_LIFESPAN), ROTATION_ATTRIBUTE: "true"},
    }
    mappers = _desired_mappers(tenant_code=tenant_code, integration_id=integration_id, verticals=verticals)
    existing = find_client(client_id)
    if existing is None:
        response = _admin.request("POST", "/clients", json={**representation, "protocolMappers": mappers})
        if response.status_code == 409:  # created concurrently by another attempt: update it below
            existing = find_client(client_id)
        else:
            _expect(response, 201)
            return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    uuid = existing["id"]
    _expect(_admin.request("PUT", f"/clients/{uuid}", json={**existing, **representation}), 204)
    _sync_mappers(uuid, mappers)
    return uuid


def _sync_mappers(uuid, desired):
    path = f"/clients/{uuid}/protocol-mappers/models"
    current = {m["name"]: m for m in _expect(_admin.request("GET", path), 200).json()}
    for mapper in desired:
        if mapper["name"] in current:
            existing = current[mapper["name"]]
            _expect(_admin.request("PUT", f"{path}/{existing['id']}", json={**mapper, "id": existing["id"]}), 204)
        else:
            _expect(_admin.request("POST", path, json=mapper), 201)


def regenerate_secret(uuid):
    """Issue a new client secret; the old one stops working at once (the rotated secret the
    realm's policy would keep is deleted)."""
    response = _expect(_admin.request("POST", f"/clients/{uuid}/client-secret"), 200)
    revoke_rotated_secret(uuid)
    return response.json()["value"]


def _client(uuid):
    return _expect(_admin.request("GET", f"/clients/{uuid}"), 200).json()


def secret_created_at(client):
    """When the client's current secret was generated (epoch seconds, from its representation), or None."""
    value = (client.get("attributes") or {}).get(_SECRET_CREATED)
    return int(value) if value and value.lstrip("-").isdigit() and int(value) > 0 else None


def rotate_secret(uuid, *, keep_previous_until):
    """Issue a new client secret and keep the previous one valid until `keep_previous_until`
    (an aware datetime no more than the policy's 7 days ahead).

    Returns (secret, kept): `kept` is False when Keycloak kept no previous secret, and None
    when it kept it but its precise end could not be set (it then lasts the policy's 7 days
    unless revoked earlier). Raises KeycloakError, before any change, when the rotation
    policy does not apply to the client (feature `client-secret-rotation` off, or no policy)."""
    client = _client(uuid)
    attributes = client.get("attributes") or {}
    if attributes.get(ROTATION_ATTRIBUTE) != "true":
        # A client provisioned before the policy existed: enrol it (an update it applies to
        # gives the secret its expiry attribute, which tells us the policy is in effect).
        _expect(_admin.request("PUT", f"/clients/{uuid}", json={
            **client, "attributes": {**attributes, ROTATION_ATTRIBUTE: "true"}}), 204)
        attributes = _client(uuid).get("attributes") or {}
    if not attributes.get(_SECRET_EXPIRES):
        raise KeycloakError("Keycloak's secret-rotation client policy does not apply to this client "
                            "(is the feature client-secret-rotation enabled and the realm's policy present?)")
    response = _expect(_admin.request("POST", f"/clients/{uuid}/client-secret"), 200)
    secret = response.json()["value"]
    try:
        client = _client(uuid)
        attributes = client.get("attributes") or {}
        if not attributes.get(_ROTATED):
            return secret, False
        expires = str(int(keep_previous_until.timestamp()))
        _expect(_admin.request("PUT", f"/clients/{uuid}", json={
            **client, "attributes": {**attributes, _ROTATED_EXPIRES: expires}}), 204)
    except (KeycloakUnavailable, KeycloakError) as exc:
        # The new secret exists and must reach the caller: the previous one stays valid for the
        # policy's 7 days at most, and the credentials sweep deletes it when its grace ends.
        logger.warning("rotated secret of client %s keeps the policy's expiry: %s", uuid, exc)
        return secret, None
    return secret, True


def rotated_secret_expires(uuid):
    """When Keycloak stops accepting the client's previous secret (epoch seconds), or None when it keeps none."""
    attributes = _client(uuid).get("attributes") or {}
    if not attributes.get(_ROTATED):
        return None
    value = attributes.get(_ROTATED_EXPIRES, "")
    return int(value) if value.isdigit() else 0


def revoke_rotated_secret(uuid):
    """Stop Keycloak accepting the client's previous secret (idempotent: 204 when there is none)."""
    _expect(_admin.request("DELETE", f"/clients/{uuid}/client-secret/rotated"), 204, 404)


def set_enabled(client_id, enabled):
    """Enable or disable a client. A disabled client gets no new tokens; already-issued
    tokens stay valid until `exp`, which is why the exchange checks the state per request."""
    existing = find_client(client_id)
    if existing is None:
        return False
    if existing.get("enabled") != enabled:
        _expect(_admin.request("PUT", f"/clients/{existing['id']}", json={**existing, "enabled": enabled}), 204)
    return True


def delete_client(client_id):
    existing = find_client(client_id)
    if existing is not None:
        _expect(_admin.request("DELETE", f"/clients/{existing['id']}"), 204, 404)
