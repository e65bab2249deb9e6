"""A thin client of Keycloak's Admin REST API for the integrations' machine clients.

The portal authenticates as its own confidential client (`scp-portal`), whose service account
holds realm-management manage-clients / view-clients / query-clients. Every call is idempotent
by the integration's stable clientId, so a failed activation can simply be retried.
"""
import hashlib
import json
import logging
import threading
import time

import requests
import urllib3
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
    """Keycloak could not be reached or answered with a server error. `sent` is False when the
    request certainly never reached it (no connection was made)."""

    def __init__(self, message, *, sent=True):
        super().__init__(message)
        self.sent = sent


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
            raise KeycloakUnavailable(f"Keycloak is unreachable: {exc.__class__.__name__}",
                                      sent=not _unconnected(exc)) from exc
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


def _unconnected(exc):
    # No connection was made (refused, or timed out connecting): the request never left.
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if isinstance(exc, requests.ConnectionError) and exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


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
    # Only the fields provisioning owns: Keycloak merges a partial representation (attributes key
    # by key) and leaves the rest as it is. Sending back what was read (`{**existing, ...}`)
    # would restore a secret rotated meanwhile, and its rotated secret, from a stale read.
    _expect(_admin.request("PUT", f"/clients/{uuid}", json=representation), 204)
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
    realm's policy would keep is deleted, and its absence checked)."""
    response = _expect(_admin.request("POST", f"/clients/{uuid}/client-secret"), 200)
    revoke_rotated_secret(uuid)
    return response.json()["value"]


def _client(uuid):
    return _expect(_admin.request("GET", f"/clients/{uuid}"), 200).json()


def secret_created_at(client):
    """When the client's current secret was generated (epoch seconds, from its representation), or None."""
    value = (client.get("attributes") or {}).get(_SECRET_CREATED)
    return int(value) if value and value.lstrip("-").isdigit() and int(value) > 0 else None


class RotationIncomplete(Exception):
    """A new secret was asked for and a later step failed, or its answer was lost.

    `applied`: Keycloak did issue a new secret (True), did not (False), or could not be asked
    (None). `previous_stopped`: the previous secret is dealt with as asked (deleted for a
    rotation without grace, its end written for one with grace). The new secret is never
    carried: whoever catches this must not hand out a secret whose rotation is incomplete."""

    def __init__(self, cause, *, applied, previous_stopped=False):
        super().__init__(str(cause))
        self.cause = cause
        self.applied = applied
        self.previous_stopped = previous_stopped


def _fingerprint(client):
    # Which secret is current: its creation time (whole seconds) and a digest of it, compared in
    # memory only (never stored or logged), since two secrets can be created in the same second.
    secret = client.get("secret") or ""
    return (client.get("attributes") or {}).get(_SECRET_CREATED), hashlib.sha256(secret.encode()).hexdigest()


def _rotation_applied(uuid, before):
    """Whether the client's current secret is no longer the one `before` describes; None when
    Keycloak cannot be asked (two tries)."""
    for attempt in range(2):
        try:
            return _fingerprint(_client(uuid)) != before
        except (KeycloakUnavailable, KeycloakError) as exc:
            logger.warning("could not read client %s after a failed rotation (try %d): %s", uuid, attempt + 1, exc)
    return None


def _enrolled(uuid):
    """The client's representation once the realm's rotation policy applies to it. Raises
    KeycloakError, before any change of its secret, when the policy does not apply."""
    client = _client(uuid)
    if (client.get("attributes") or {}).get(ROTATION_ATTRIBUTE) != "true":
        # A client provisioned before the policy existed: enrol it (an update it applies to
        # gives the secret its expiry attribute, which tells us the policy is in effect).
        _expect(_admin.request("PUT", f"/clients/{uuid}", json={"attributes": {ROTATION_ATTRIBUTE: "true"}}), 204)
        client = _client(uuid)
    if not (client.get("attributes") or {}).get(_SECRET_EXPIRES):
        raise KeycloakError("Keycloak's secret-rotation client policy does not apply to this client "
                            "(is the feature client-secret-rotation enabled and the realm's policy present?)")
    return client


def rotate_secret(uuid, *, keep_previous_until=None):
    """Issue a new client secret. With `keep_previous_until` (an aware datetime no more than the
    policy's 7 days ahead) Keycloak keeps accepting the previous one until then; without it the
    previous one is deleted at once.

    Returns (secret, kept): `kept` is True when Keycloak keeps the previous secret until the end
    asked, False when it keeps none, and None when it keeps it but that end could not be written
    (it then lasts the policy's 7 days unless deleted earlier: the credentials sweep does it).
    Raises KeycloakUnavailable / KeycloakError when nothing changed (the new secret was not
    asked for, or Keycloak refused it), and RotationIncomplete when it may have changed.

    Every write is partial (`{"attributes": {one: value}}`, merged by Keycloak): never the
    representation read back, which would restore a secret deleted meanwhile."""
    before = _fingerprint(_enrolled(uuid))
    try:
        response = _expect(_admin.request("POST", f"/clients/{uuid}/client-secret"), 200)
        secret = response.json()["value"]
    except KeycloakUnavailable as exc:
        if not exc.sent:
            raise
        # The request may have reached Keycloak and its answer been lost: see what it did.
        applied = _rotation_applied(uuid, before)
        if applied is False:
            raise
        stopped = False
        if applied:
            stopped = _stop_previous_quietly(uuid, keep_previous_until)
        raise RotationIncomplete(exc, applied=applied, previous_stopped=stopped) from exc
    if keep_previous_until is None:
        try:
            revoke_rotated_secret(uuid)
        except (KeycloakUnavailable, KeycloakError) as exc:
            raise RotationIncomplete(exc, applied=True) from exc
        return secret, False
    try:
        if not (_client(uuid).get("attributes") or {}).get(_ROTATED):
            return secret, False
        _set_rotated_expiry(uuid, keep_previous_until)
    except (KeycloakUnavailable, KeycloakError) as exc:
        # The new secret exists and reaches the caller: the previous one stays valid for the
        # policy's 7 days at most, and the credentials sweep deletes it when its grace ends.
        logger.warning("rotated secret of client %s keeps the policy's expiry: %s", uuid, exc)
        return secret, None
    return secret, True


def _set_rotated_expiry(uuid, until):
    expires = str(int(until.timestamp()))
    _expect(_admin.request("PUT", f"/clients/{uuid}", json={"attributes": {_ROTATED_EXPIRES: expires}}), 204)


def _stop_previous_quietly(uuid, keep_previous_until):
    """After a rotation whose answer was lost: end the previous secret as asked, if Keycloak answers."""
    try:
        if keep_previous_until is None:
            revoke_rotated_secret(uuid)
        elif (_client(uuid).get("attributes") or {}).get(_ROTATED):
            _set_rotated_expiry(uuid, keep_previous_until)
        return True
    except (KeycloakUnavailable, KeycloakError) as exc:
        logger.warning("could not end the previous secret of client %s after a lost rotation: %s", uuid, exc)
        return False


def rotated_secret_expires(uuid):
    """When Keycloak stops accepting the client's previous secret (epoch seconds), or None when it keeps none."""
    attributes = _client(uuid).get("attributes") or {}
    if not attributes.get(_ROTATED):
        return None
    value = attributes.get(_ROTATED_EXPIRES, "")
    return int(value) if value.isdigit() else 0


def revoke_rotated_secret(uuid):
    """Stop Keycloak accepting the client's previous secret (idempotent: 204 when there is none),
    then check it is gone: raises KeycloakError if the client still has one."""
    _expect(_admin.request("DELETE", f"/clients/{uuid}/client-secret/rotated"), 204, 404)
    if (_client(uuid).get("attributes") or {}).get(_ROTATED):
        raise KeycloakError(f"client {uuid} still has a rotated secret after its deletion")


def set_enabled(client_id, enabled):
    """Enable or disable a client. A disabled client gets no new tokens; already-issued
    tokens stay valid until `exp`, which is why the exchange checks the state per request."""
    existing = find_client(client_id)
    if existing is None:
        return False
    if existing.get("enabled") != enabled:
        # This one field only: the representation read above may be stale by now (a rotation in
        # between), and PUTting it back whole would restore its secret.
        _expect(_admin.request("PUT", f"/clients/{existing['id']}", json={"enabled": enabled}), 204)
    return True


def delete_client(client_id):
    existing = find_client(client_id)
    if existing is not None:
        _expect(_admin.request("DELETE", f"/clients/{existing['id']}"), 204, 404)
