"""Credentials without downtime (issue #14 item 5), on the real Keycloak: a rotation keeps the
previous client secret (and API key) working for the grace the rotator chose, Keycloak and the
exchange refuse it afterwards, the sweep records its revocation; who may rotate and revoke; the
register with its dates; aged credentials flagged and their owners told once."""
import datetime
import logging
import threading
import time

import pytest
from django.conf import settings as django_settings
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent, AuditRecord
from lifecycle import credentials, keycloak, services
from lifecycle.models import Notification, NotificationEvent
from registry.models import Credential, CredentialKind
from scp_core.errors import InvalidTransitionError, PermissionDeniedError, ValidationFailedError
from scp_portal.monitoring import compliance

from .conftest import client_token
from .exchange_helpers import activate
from .keycloak_proxy import KeycloakProxy

pytestmark = pytest.mark.django_db
PERSONS = "/api/v1/persons/?vertical=health"
K = CredentialKind


@pytest.fixture
def partner(staff, demo, keycloak_clients):
    return activate(staff, demo, keycloak_clients, name="rotating partner")


def _exchange(api, token, api_key=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if api_key:
        headers["HTTP_X_API_KEY"] = api_key
    api.credentials(**headers)
    response = api.get(PERSONS)
    api.credentials()
    return response


def _token(client_id, secret):
    response = client_token(client_id, secret)
    return response.status_code, response.json().get("access_token")


def _rotate(api, user, integration, action="rotate-secret", **body):
    api.force_authenticate(user)
    response = api.post(f"/api/v1/governance/integrations/{integration.pk}/{action}/", body, format="json")
    api.force_authenticate(None)
    return response


def _register(integration, kind=None):
    rows = Credential.objects.filter(integration=integration).order_by("issued_at", "pk")
    return list(rows.filter(kind=kind) if kind else rows)


def test_activation_registers_the_secret_and_leaves_no_earlier_one_valid(partner):
    (row,) = _register(partner.integration)
    assert row.kind == K.CLIENT_SECRET and credentials.state_of(row) == credentials.State.CURRENT
    assert row.issued_by.username == "ke-admin"
    # The secret Keycloak generated when it created the client is not kept as a "rotated" one.
    uuid_ = keycloak.find_client(partner.client_id)["id"]
    assert keycloak.rotated_secret_expires(uuid_) is None


def test_the_old_secret_works_through_its_grace_then_keycloak_refuses_it_and_the_new_one_works(api, partner, staff):
    # Given an active integration whose partner uses its secret
    old_secret = partner.secret
    before = timezone.now()
    # When its tenant admin rotates the secret with a grace of one hour
    response = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=3600)
    assert response.status_code == 200, response.content
    body = response.json()
    assert response["Cache-Control"] == "no-store"
    new_secret = body["client_secret"]
    assert body["client_id"] == partner.client_id and new_secret != old_secret
    grace_end = datetime.datetime.fromisoformat(body["previous_valid_until"].replace("Z", "+00:00"))
    assert before + datetime.timedelta(seconds=3600) <= grace_end <= timezone.now() + datetime.timedelta(seconds=3600)
    # Then both secrets obtain tokens, and the exchange accepts a token got with the old one
    status, old_token = _token(partner.client_id, old_secret)
    assert status == 200
    assert _exchange(api, old_token).status_code == 200
    status, new_token = _token(partner.client_id, new_secret)
    assert status == 200 and _exchange(api, new_token).status_code == 200
    # Keycloak itself holds the old secret's end at the grace chosen (not its policy's 7 days)
    uuid_ = keycloak.find_client(partner.client_id)["id"]
    assert keycloak.rotated_secret_expires(uuid_) == int(grace_end.timestamp())
    previous, current = _register(partner.integration)
    assert credentials.state_of(previous) == credentials.State.IN_GRACE and previous.expires_at == grace_end
    assert credentials.state_of(current) == credentials.State.CURRENT and current.issued_by.username == "ke-admin"
    rotated = AuditRecord.objects.get(integration=partner.integration, event_type=AuditEvent.CREDENTIAL_ROTATED)
    assert rotated.actor == "ke-admin" and rotated.details["grace_seconds"] == 3600
    assert rotated.details["previous"] == previous.pk and rotated.details["credential"] == current.pk
    assert rotated.details["keycloak_enforces_grace_end"] is True

    # When the sweep runs after the grace period
    outcome = credentials.sweep(grace_end + datetime.timedelta(seconds=1))
    assert outcome["revoked"] == 1
    # Then Keycloak refuses the old secret, the new one still works, and the revocation is recorded
    assert _token(partner.client_id, old_secret)[0] == 401
    status, newer_token = _token(partner.client_id, new_secret)
    assert status == 200 and _exchange(api, newer_token).status_code == 200
    previous.refresh_from_db()
    assert credentials.state_of(previous) == credentials.State.REVOKED and previous.revoked_reason == "grace period ended"
    revoked = AuditRecord.objects.get(integration=partner.integration, event_type=AuditEvent.CREDENTIAL_REVOKED)
    assert revoked.actor == "system" and revoked.details["credential"] == previous.pk
    assert credentials.sweep(grace_end + datetime.timedelta(seconds=2))["revoked"] == 0  # once


def test_keycloak_refuses_the_old_secret_at_the_end_of_its_grace_even_before_the_sweep(partner, staff):
    _, outcome = services.integration_rotate_secret(integration=partner.integration, actor=staff["partner-user"],
                                                    grace_seconds=2)
    assert _token(partner.client_id, partner.secret)[0] == 200
    time.sleep(3.5)
    assert _token(partner.client_id, partner.secret)[0] == 401
    assert _token(partner.client_id, outcome["client_secret"])[0] == 200
    assert credentials.state_of(_register(partner.integration)[0]) == credentials.State.GRACE_ENDED
    assert credentials.sweep(timezone.now())["revoked"] == 1


def test_a_grace_over_but_not_yet_swept_does_not_block_the_next_rotation_nor_cut_its_grace(partner, staff):
    _, first = services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"],
                                                  grace_seconds=1)
    time.sleep(2.2)
    # The first grace is over (Keycloak refuses the old secret) but no sweep recorded it yet.
    _, second = services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"],
                                                   grace_seconds=3600)
    assert [credentials.state_of(c) for c in _register(partner.integration)] == ["revoked", "in_grace", "current"]
    assert _token(partner.client_id, partner.secret)[0] == 401
    assert _token(partner.client_id, first["client_secret"])[0] == 200  # the second rotation's grace
    # A late sweep finds nothing to end, and never deletes the second rotation's previous secret.
    assert credentials.sweep(timezone.now())["revoked"] == 0
    assert _token(partner.client_id, first["client_secret"])[0] == 200
    assert _token(partner.client_id, second["client_secret"])[0] == 200


def test_rotation_without_grace_ends_the_old_secret_at_once(partner, staff):
    _, outcome = services.integration_rotate_secret(integration=partner.integration, actor=staff["root"], grace_seconds=0)
    assert outcome["previous_valid_until"] is None
    assert _token(partner.client_id, partner.secret)[0] == 401
    assert _token(partner.client_id, outcome["client_secret"])[0] == 200
    previous, current = _register(partner.integration)
    assert previous.revoked_at is not None and previous.revoked_reason == "rotated without grace"


def test_a_second_rotation_in_grace_is_refused_until_the_previous_secret_is_revoked(api, partner, staff):
    first = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=3600)
    assert first.status_code == 200
    # Keycloak keeps one previous secret: a second rotation now would cut the first one's grace.
    again = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=3600)
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"
    assert "revoke it first" in again.json()["detail"]
    assert _token(partner.client_id, partner.secret)[0] == 200  # the grace is intact
    previous = _register(partner.integration)[0]
    api.force_authenticate(staff["partner-user"])
    response = api.post(f"/api/v1/governance/integrations/{partner.integration.pk}/revoke-credential/",
                        {"credential": previous.pk, "reason": "the partner switched already"}, format="json")
    assert response.status_code == 200, response.content
    assert _token(partner.client_id, partner.secret)[0] == 401
    previous.refresh_from_db()
    assert previous.revoked_reason == "the partner switched already"
    record = AuditRecord.objects.get(integration=partner.integration, event_type=AuditEvent.CREDENTIAL_REVOKED)
    assert record.actor == "partner-user" and record.details["credential"] == previous.pk
    # Now a new rotation is possible, and keeps the first rotation's secret in its grace.
    second = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=600)
    assert second.status_code == 200
    assert _token(partner.client_id, first.json()["client_secret"])[0] == 200
    assert _token(partner.client_id, second.json()["client_secret"])[0] == 200


def test_grace_out_of_bounds_is_refused_and_changes_nothing(api, partner, staff):
    for grace in (7 * 24 * 3600 + 1, -1, "a day", 1.5, None):
        response = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=grace)
        assert response.status_code == 422, (grace, response.content)
        assert response.json()["code"] == "validation_error"
        assert response.json()["errors"][0]["field"] == "grace_seconds"
    with pytest.raises(ValidationFailedError):
        services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"],
                                           grace_seconds=8 * 24 * 3600)
    assert len(_register(partner.integration)) == 1
    assert _token(partner.client_id, partner.secret)[0] == 200
    # The longest grace is accepted.
    assert _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=7 * 24 * 3600).status_code == 200


def test_api_key_rotation_keeps_the_old_key_for_its_grace(api, partner, staff):
    # Given an integration that requires an API key
    integration, old_key = services.integration_configure_controls(
        integration=partner.integration, actor=staff["ke-admin"], issue_api_key=True)
    (issued,) = _register(integration, K.API_KEY)
    assert issued.prefix == old_key[:12] and issued.key_hash == integration.api_key_hash
    assert _exchange(api, partner.token, old_key).status_code == 200
    # When it is rotated with a grace of an hour
    response = _rotate(api, staff["partner-user"], integration, "rotate-api-key", grace_seconds=3600)
    assert response.status_code == 200, response.content
    new_key = response.json()["api_key"]
    assert new_key.startswith("scpk_") and response.json()["api_key_prefix"] == new_key[:12]
    # Then the exchange accepts both keys, and nothing else
    assert _exchange(api, partner.token, old_key).status_code == 200
    assert _exchange(api, partner.token, new_key).status_code == 200
    refused = _exchange(api, partner.token, old_key + "x")
    assert refused.status_code == 401 and refused.json()["code"] == "api_key_invalid"
    assert _exchange(api, partner.token).status_code == 401
    previous, current = _register(integration, K.API_KEY)
    assert previous.last_used_at is not None and current.last_used_at is not None  # last use of each key
    assert credentials.state_of(previous) == credentials.State.IN_GRACE
    # When the grace is over the old key is refused at once (even before the sweep records it)
    Credential.objects.filter(pk=previous.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert _exchange(api, partner.token, old_key).status_code == 401
    assert credentials.sweep(timezone.now())["revoked"] == 1
    assert _exchange(api, partner.token, old_key).status_code == 401
    assert _exchange(api, partner.token, new_key).status_code == 200
    assert AuditRecord.objects.filter(integration=integration, event_type=AuditEvent.CREDENTIAL_ROTATED,
                                      details__kind="api_key").count() == 1


def test_api_key_rotation_needs_a_key_and_issuing_one_anew_replaces_every_earlier_key(api, partner, staff):
    response = _rotate(api, staff["ke-admin"], partner.integration, "rotate-api-key")
    assert response.status_code == 409 and "no API key" in response.json()["detail"]
    integration, first = services.integration_configure_controls(
        integration=partner.integration, actor=staff["ke-admin"], issue_api_key=True)
    _, outcome = credentials.integration_rotate_api_key(integration=integration, actor=staff["ke-admin"], grace_seconds=3600)
    # Issuing a key with the controls is the reset: the key in grace stops too.
    integration, third = services.integration_configure_controls(
        integration=integration, actor=staff["ke-admin"], issue_api_key=True)
    for key in (first, outcome["api_key"]):
        assert _exchange(api, partner.token, key).status_code == 401
    assert _exchange(api, partner.token, third).status_code == 200
    states = [credentials.state_of(c) for c in _register(integration, K.API_KEY)]
    assert states == ["revoked", "revoked", "current"]


def test_only_a_previous_credential_of_this_integration_can_be_revoked(api, partner, staff, demo, keycloak_clients):
    current = _register(partner.integration)[0]
    with pytest.raises(InvalidTransitionError, match="rotate it"):
        credentials.integration_revoke_credential(integration=partner.integration, actor=staff["ke-admin"],
                                                  credential=current.pk)
    other = activate(staff, demo, keycloak_clients, name="another")
    services.integration_rotate_secret(integration=other.integration, actor=staff["ke-admin"], grace_seconds=3600)
    foreign = _register(other.integration)[0]
    api.force_authenticate(staff["ke-admin"])
    url = f"/api/v1/governance/integrations/{partner.integration.pk}/revoke-credential/"
    response = api.post(url, {"credential": foreign.pk}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert api.post(url, {"credential": "one"}, format="json").status_code == 422
    assert _token(other.client_id, other.secret)[0] == 200  # the other integration's grace is untouched
    credentials.integration_revoke_credential(integration=other.integration, actor=staff["ke-admin"], credential=foreign.pk)
    with pytest.raises(InvalidTransitionError, match="revoked already"):
        credentials.integration_revoke_credential(integration=other.integration, actor=staff["ke-admin"],
                                                  credential=foreign.pk)


@pytest.mark.parametrize("username", ["auditor", "ug-admin", "ke-health-owner", "ke-education-owner", "umbrella"])
def test_who_may_not_rotate_or_revoke_changes_nothing(api, partner, staff, username):
    integration, key = services.integration_configure_controls(
        integration=partner.integration, actor=staff["ke-admin"], issue_api_key=True)
    _, outcome = services.integration_rotate_secret(integration=integration, actor=staff["ke-admin"], grace_seconds=3600)
    previous = _register(integration, K.CLIENT_SECRET)[0]
    register = [(c.pk, c.expires_at, c.revoked_at) for c in _register(integration)]
    for action, body in (("rotate-secret", {}), ("rotate-api-key", {}), ("revoke-credential", {"credential": previous.pk})):
        response = _rotate(api, staff[username], integration, action, **body)
        expected = 404 if username in {"ug-admin", "ke-education-owner"} else 403  # those cannot even see it
        assert response.status_code == expected, (action, response.content)
        with pytest.raises(PermissionDeniedError):
            service = {"rotate-secret": credentials.integration_rotate_secret,
                       "rotate-api-key": credentials.integration_rotate_api_key,
                       "revoke-credential": credentials.integration_revoke_credential}[action]
            service(integration=integration, actor=staff[username], **body)
    assert [(c.pk, c.expires_at, c.revoked_at) for c in _register(integration)] == register
    assert _token(partner.client_id, partner.secret)[0] == 200
    assert _token(partner.client_id, outcome["client_secret"])[0] == 200
    assert _exchange(api, partner.token, key).status_code == 200


def test_the_register_is_listed_to_whoever_may_see_the_integration(api, partner, staff):
    services.integration_configure_controls(integration=partner.integration, actor=staff["ke-admin"], issue_api_key=True)
    services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"], grace_seconds=3600)
    url = f"/api/v1/governance/integrations/{partner.integration.pk}/credentials/"
    for username in ("root", "umbrella", "auditor", "ke-admin", "ke-health-owner", "partner-user"):
        api.force_authenticate(staff[username])
        response = api.get(url)
        assert response.status_code == 200, (username, response.content)
        rows = response.json()
        assert [(r["kind"], r["state"]) for r in rows] == [
            ("api_key", "current"), ("client_secret", "current"), ("client_secret", "in_grace")]
        assert all("hash" not in name for row in rows for name in row)
        assert rows[0]["prefix"].startswith("scpk_") and rows[2]["expires_at"] and rows[2]["issued_at"]
        assert "Keycloak does not tell" in rows[1]["last_use_meaning"]
    for username in ("ug-admin", "ke-education-owner"):
        api.force_authenticate(staff[username])
        response = api.get(url)
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_last_use_is_written_at_most_once_a_minute(api, partner, monkeypatch):
    monkeypatch.setattr(credentials, "_last_use_written", {})
    assert _exchange(api, partner.token).status_code == 200
    current = _register(partner.integration)[0]
    first = current.last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        assert _exchange(api, partner.token).status_code == 200
    assert not [q for q in queries.captured_queries if "registry_credential" in q["sql"]]
    current.refresh_from_db()
    assert current.last_used_at == first
    # Another process (an empty throttle) writes only rows not written in the last minute.
    monkeypatch.setattr(credentials, "_last_use_written", {})
    assert _exchange(api, partner.token).status_code == 200
    current.refresh_from_db()
    assert current.last_used_at == first


def test_aged_credentials_are_flagged_and_their_owners_told_once(api, partner, staff, settings):
    settings.SCP_CREDENTIAL_MAX_AGE_DAYS = 90
    current = _register(partner.integration)[0]
    Credential.objects.filter(pk=current.pk).update(issued_at=timezone.now() - datetime.timedelta(days=91))
    now = timezone.now()
    first = credentials.sweep(now)
    assert first["aged_notified"] == 3  # the partner's user and contact address, the tenant's admin
    assert credentials.sweep(now + datetime.timedelta(hours=1))["aged_notified"] == 0
    told = Notification.objects.filter(event=NotificationEvent.CREDENTIAL_AGED, integration=partner.integration)
    assert sorted(told.values_list("recipient", flat=True)) == [
        "integrations@acme-health.example", "ke-admin@scp.example", "partner-user@scp.example"]
    assert "more than 90 days ago" in told.first().body
    # Flagged in the register and in the compliance view; a rotation clears the flag.
    api.force_authenticate(staff["ke-admin"])
    rows = api.get(f"/api/v1/governance/integrations/{partner.integration.pk}/credentials/").json()
    assert rows[0]["aged"] is True
    items = compliance(tenant_ids=None)
    assert any(i.pk == partner.integration.pk and "maximum age of 90 days" in reason for i, reason, _ in items)
    services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"], grace_seconds=60)
    items = compliance(tenant_ids=None)
    assert not any(i.pk == partner.integration.pk and "maximum age" in reason for i, reason, _ in items)


def test_integrations_from_before_the_register_keep_working_and_can_be_rotated(api, partner, staff):
    # An integration activated before the register existed has no rows.
    services.integration_configure_controls(integration=partner.integration, actor=staff["ke-admin"], issue_api_key=True)
    Credential.objects.filter(integration=partner.integration).delete()
    assert _exchange(api, partner.token).status_code == 401  # the API key is still required...
    integration = partner.refresh()
    swept_at = timezone.now()
    assert credentials.sweep(swept_at)["registered"] == 2  # ...and the sweep registers both
    assert credentials.sweep(timezone.now())["registered"] == 0
    secret_row, key_row = _register(integration, K.CLIENT_SECRET)[0], _register(integration, K.API_KEY)[0]
    # Issue dates are what Keycloak (the activation's secret) and the history (the key) know.
    assert secret_row.issued_at < swept_at and key_row.issued_at < swept_at
    assert key_row.key_hash == integration.api_key_hash and key_row.prefix == integration.api_key_prefix
    assert _exchange(api, partner.token).status_code == 401
    Credential.objects.filter(integration=integration).delete()
    # Rotation registers what it replaces on the way.
    _, outcome = services.integration_rotate_secret(integration=integration, actor=staff["ke-admin"], grace_seconds=600)
    previous, current = _register(integration, K.CLIENT_SECRET)
    assert credentials.state_of(previous) == credentials.State.IN_GRACE
    assert _token(partner.client_id, partner.secret)[0] == 200
    assert _token(partner.client_id, outcome["client_secret"])[0] == 200


def test_a_client_provisioned_before_the_rotation_policy_is_enrolled_at_its_first_rotation(partner, staff):
    # A client created before ensure_client tagged it: the realm's policy does not apply yet.
    client = keycloak.find_client(partner.client_id)
    attributes = {k: v for k, v in client["attributes"].items() if k != keycloak.ROTATION_ATTRIBUTE}
    keycloak._admin.request("PUT", f"/clients/{client['id']}", json={**client, "attributes": {
        **attributes, keycloak.ROTATION_ATTRIBUTE: "false"}})
    _, outcome = services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"],
                                                    grace_seconds=600)
    assert _token(partner.client_id, partner.secret)[0] == 200
    assert _token(partner.client_id, outcome["client_secret"])[0] == 200
    assert keycloak.find_client(partner.client_id)["attributes"][keycloak.ROTATION_ATTRIBUTE] == "true"


def test_the_portal_panel_rotates_with_a_grace_choice_and_revokes_through_the_services(client, partner, staff, settings):
    integration = partner.integration
    page_url = f"/admin/registry/integration/{integration.pk}/change/"
    rotate_url = f"/admin/registry/integration/{integration.pk}/action/rotate-secret/"
    client.force_login(staff["ke-admin"])
    page = client.get(page_url).content.decode()
    assert 'id="credentials-panel"' in page and 'id="rotate-secret-link"' in page
    assert 'id="rotate-api-key-link"' not in page  # no API key to rotate
    form = client.get(rotate_url).content.decode()
    assert 'name="grace_seconds"' in form and "7 days (the most)" in form
    # A grace outside the choices is refused by the form; nothing is rotated.
    assert client.post(rotate_url, {"grace_seconds": "999999"}).status_code == 200
    assert len(_register(integration)) == 1
    shown = client.post(rotate_url, {"grace_seconds": "3600"})
    assert "no-store" in shown["Cache-Control"]
    body = shown.content.decode()
    assert 'id="client-secret"' in body and "keeps working until" in body
    assert _token(partner.client_id, partner.secret)[0] == 200
    previous, current = _register(integration)
    settings.SCP_CREDENTIAL_MAX_AGE_DAYS = 30
    Credential.objects.filter(pk=current.pk).update(issued_at=timezone.now() - datetime.timedelta(days=31))
    page = client.get(page_url).content.decode()
    assert f'data-credential="{previous.pk}" data-kind="client_secret" data-state="in_grace"' in page
    assert "past its maximum age" in page and f"/admin/registry/credential/{previous.pk}/revoke/" in page
    # An auditor sees the register, without a way to rotate or revoke; a forged revoke changes nothing.
    client.force_login(staff["auditor"])
    page = client.get(page_url).content.decode()
    assert 'id="credentials-panel"' in page and "rotate-secret-link" not in page and "/revoke/" not in page
    revoke_url = f"/admin/registry/credential/{previous.pk}/revoke/"
    assert "Only the tenant's admin" in client.get(revoke_url).content.decode()
    client.post(revoke_url, {"reason": "x"})
    previous.refresh_from_db()
    assert previous.revoked_at is None and _token(partner.client_id, partner.secret)[0] == 200
    # Another tenant's admin cannot even find it.
    client.force_login(staff["ug-admin"])
    assert client.get(revoke_url).status_code == 404 and client.post(revoke_url).status_code == 404
    # The tenant admin revokes it: the old secret stops at once.
    client.force_login(staff["ke-admin"])
    response = client.post(revoke_url, {"reason": "switched"}, follow=True)
    assert ("revoked: Keycloak refuses it from now on; tokens already issued with it remain valid until they "
            "expire, at most 5 minutes") in response.content.decode()
    assert _token(partner.client_id, partner.secret)[0] == 401
    previous.refresh_from_db()
    assert previous.revoked_reason == "switched"
    # The list of credentials shows only those of integrations the person may see.
    listing = client.get("/admin/registry/credential/").content.decode()
    assert "rotating partner" in listing
    client.force_login(staff["ug-admin"])
    assert "rotating partner" not in client.get("/admin/registry/credential/").content.decode()


# --- review of the rotation (issue #14, second review): races, partial writes, failures after
# Keycloak's answer, on the real Keycloak behind a real local proxy that holds, fails or loses
# chosen requests (tests/keycloak_proxy.py) ---------------------------------------------------------


@pytest.fixture
def keycloak_proxy(keycloak_clients):
    """The portal talks to Keycloak's admin API through a fault-injecting proxy for this test."""
    original = django_settings.KEYCLOAK_URL
    with KeycloakProxy(original) as proxy:
        django_settings.KEYCLOAK_URL = proxy.url
        try:
            yield proxy
        finally:
            django_settings.KEYCLOAK_URL = original


class _Concurrently(threading.Thread):
    """A service call in its own thread (and its own database connection), its outcome kept."""

    def __init__(self, call):
        super().__init__(daemon=True)
        self.call, self.result, self.error = call, None, None
        self.start()

    def run(self):
        try:
            self.result = self.call()
        except Exception as exc:  # noqa: BLE001 -- handed to the test by outcome()
            self.error = exc
        finally:
            connections.close_all()

    def outcome(self):
        self.join(60)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def _until(predicate, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _waiting_on_the_credentials_lock():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return cursor.fetchone()[0] > 0


def _uuid(client_id):
    return keycloak.find_client(client_id)["id"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("held", ["new secret", "grace end"])
def test_a_revocation_racing_a_rotation_waits_for_it_and_is_not_undone(partner, staff, keycloak_proxy, held):
    # Given a rotation waiting on Keycloak, before its new secret or before writing the old one's grace end
    uuid_ = _uuid(partner.client_id)
    (previous,) = _register(partner.integration)
    if held == "new secret":
        gate = keycloak_proxy.add("POST", rf"/clients/{uuid_}/client-secret$", "hold")
    else:
        gate = keycloak_proxy.add("PUT", rf"/clients/{uuid_}$", "hold", body=keycloak._ROTATED_EXPIRES)
    rotation = _Concurrently(lambda: services.integration_rotate_secret(
        integration=partner.integration, actor=staff["ke-admin"], grace_seconds=3 * 24 * 3600))
    assert gate.arrived.wait(15)
    # When the partner's user revokes the secret being replaced meanwhile (it is compromised)
    revocation = _Concurrently(lambda: credentials.integration_revoke_credential(
        integration=partner.integration, actor=staff["partner-user"], credential=previous.pk, reason="compromised"))
    assert _until(lambda: not revocation.is_alive() or _waiting_on_the_credentials_lock())
    gate.release.set()
    _, outcome = rotation.outcome()
    revocation.outcome()
    # Then the revocation took its turn after the rotation and was not undone by it
    assert _token(partner.client_id, partner.secret)[0] == 401
    assert _token(partner.client_id, outcome["client_secret"])[0] == 200
    assert keycloak.rotated_secret_expires(uuid_) is None
    previous.refresh_from_db()
    assert previous.revoked_reason == "compromised"
    assert [credentials.state_of(c) for c in _register(partner.integration)] == ["revoked", "current"]


@pytest.mark.django_db(transaction=True)
def test_two_rotations_at_once_take_turns_and_leave_one_current_secret(partner, staff, keycloak_proxy):
    uuid_ = _uuid(partner.client_id)
    gate = keycloak_proxy.add("POST", rf"/clients/{uuid_}/client-secret$", "hold")
    first = _Concurrently(lambda: services.integration_rotate_secret(
        integration=partner.integration, actor=staff["ke-admin"], grace_seconds=0))
    assert gate.arrived.wait(15)
    second = _Concurrently(lambda: services.integration_rotate_secret(
        integration=partner.integration, actor=staff["partner-user"], grace_seconds=3600))
    assert _until(lambda: not second.is_alive() or _waiting_on_the_credentials_lock())
    gate.release.set()
    _, a = first.outcome()
    _, b = second.outcome()
    # The second replaced the first one's secret, which keeps its grace; each was told the truth.
    assert b["previous_valid_until"] is not None
    assert _token(partner.client_id, b["client_secret"])[0] == 200
    assert _token(partner.client_id, a["client_secret"])[0] == 200
    assert _token(partner.client_id, partner.secret)[0] == 401
    assert [credentials.state_of(c) for c in _register(partner.integration)] == ["revoked", "in_grace", "current"]


@pytest.mark.django_db(transaction=True)
def test_a_credential_change_that_waits_too_long_for_another_gives_up_and_changes_nothing(
        partner, staff, keycloak_proxy, monkeypatch):
    monkeypatch.setattr(credentials, "_LOCK_WAIT", "1s", raising=False)
    uuid_ = _uuid(partner.client_id)
    (previous,) = _register(partner.integration)
    gate = keycloak_proxy.add("POST", rf"/clients/{uuid_}/client-secret$", "hold")
    rotation = _Concurrently(lambda: services.integration_rotate_secret(
        integration=partner.integration, actor=staff["ke-admin"], grace_seconds=600))
    assert gate.arrived.wait(15)
    with pytest.raises(InvalidTransitionError, match="under way"):
        credentials.integration_revoke_credential(integration=partner.integration, actor=staff["ke-admin"],
                                                  credential=previous.pk)
    gate.release.set()
    _, outcome = rotation.outcome()
    assert _token(partner.client_id, partner.secret)[0] == 200  # its grace is intact
    assert _token(partner.client_id, outcome["client_secret"])[0] == 200
    assert [credentials.state_of(c) for c in _register(partner.integration)] == ["in_grace", "current"]


@pytest.mark.parametrize("operation", ["set_enabled", "ensure_client"])
def test_a_client_update_read_before_a_rotation_does_not_bring_the_old_secret_back(
        partner, staff, keycloak_proxy, operation):
    # Given a client update (the state sync, or provisioning) that read the client and is about to write it
    cid = partner.client_id
    uuid_ = _uuid(cid)
    if operation == "set_enabled":
        keycloak.set_enabled(cid, False)
        update = lambda: keycloak.set_enabled(cid, True)  # noqa: E731
        gate = keycloak_proxy.add("PUT", rf"/clients/{uuid_}$", "hold", body='"enabled"')
    else:
        update = lambda: keycloak.ensure_client(  # noqa: E731
            client_id=cid, tenant_code="ke", integration_id=partner.integration.pk, verticals=["health"])
        gate = keycloak_proxy.add("PUT", rf"/clients/{uuid_}$", "hold", body='"clientId"')
    updating = _Concurrently(update)
    assert gate.arrived.wait(15)
    # When the secret is rotated meanwhile, and the update's write lands afterwards
    _, outcome = services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"],
                                                    grace_seconds=600)
    rotated = keycloak._client(uuid_)
    gate.release.set()
    updating.outcome()
    # Then the new secret is still the current one, the old one keeps its grace, and the update
    # (a partial PUT) changed nothing else on the running Keycloak.
    after = keycloak._client(uuid_)
    assert after["enabled"] is True
    owned = {"enabled"} if operation == "set_enabled" else {"enabled", "protocolMappers"}  # what the update writes
    assert {k: v for k, v in after.items() if k not in owned} == {k: v for k, v in rotated.items() if k not in owned}
    assert _token(cid, outcome["client_secret"])[0] == 200
    assert _token(cid, partner.secret)[0] == 200
    assert keycloak.rotated_secret_expires(uuid_) == int(outcome["previous_valid_until"].timestamp())


def test_a_rotation_without_grace_whose_old_secret_cannot_be_deleted_is_not_reported_as_nothing_changed(
        api, partner, staff, keycloak_proxy):
    uuid_ = _uuid(partner.client_id)
    keycloak_proxy.add("DELETE", rf"/clients/{uuid_}/client-secret/rotated$", "answer", status=503, times=0)
    response = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=0)
    assert response.status_code == 503 and response.json()["code"] == "upstream_unavailable"
    body = response.json()
    assert "nothing changed" not in body["detail"] and "rotate again" in body["detail"]
    assert "client_secret" not in body
    # Keycloak issued a new secret and still accepts the old one: the register says so
    assert _token(partner.client_id, partner.secret)[0] == 200
    previous, current = _register(partner.integration)
    assert previous.revoked_at is None and previous.expires_at <= timezone.now()
    assert credentials.state_of(current) == credentials.State.CURRENT
    record = AuditRecord.objects.get(integration=partner.integration, event_type=AuditEvent.CREDENTIAL_ROTATED)
    assert record.details["secret_delivered"] is False and record.details["new_secret_issued"] is True
    # While Keycloak still fails the sweep cannot end it; once it answers, the sweep does.
    assert credentials.sweep(timezone.now())["revoked"] == 0
    keycloak_proxy.clear()
    assert credentials.sweep(timezone.now())["revoked"] == 1
    assert _token(partner.client_id, partner.secret)[0] == 401
    # Rotating again gives a secret that works.
    _, again = services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"],
                                                  grace_seconds=0)
    assert _token(partner.client_id, again["client_secret"])[0] == 200


def test_a_rotation_whose_answer_is_lost_is_recorded_with_its_grace_and_told_as_unfinished(
        api, partner, staff, keycloak_proxy):
    uuid_ = _uuid(partner.client_id)
    keycloak_proxy.add("POST", rf"/clients/{uuid_}/client-secret$", "drop")  # Keycloak applies it; the answer is lost
    before = timezone.now()
    response = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=3600)
    assert response.status_code == 503 and response.json()["code"] == "upstream_unavailable"
    detail = response.json()["detail"]
    assert "Keycloak issued a new client secret" in detail and "rotate again" in detail and "revoke it first" in detail
    previous, current = _register(partner.integration)
    assert credentials.state_of(previous) == credentials.State.IN_GRACE
    assert before + datetime.timedelta(seconds=3600) <= previous.expires_at <= timezone.now() + datetime.timedelta(seconds=3600)
    assert credentials.state_of(current) == credentials.State.CURRENT
    # Keycloak keeps the old secret for the grace chosen (its end written once Keycloak answered)
    assert keycloak.rotated_secret_expires(uuid_) == int(previous.expires_at.timestamp())
    assert _token(partner.client_id, partner.secret)[0] == 200
    assert credentials.sweep(previous.expires_at + datetime.timedelta(seconds=1))["revoked"] == 1
    assert _token(partner.client_id, partner.secret)[0] == 401


def test_a_rotation_keycloak_did_not_apply_changes_nothing(api, partner, staff, keycloak_proxy, settings):
    uuid_ = _uuid(partner.client_id)
    # Keycloak's answer is an error and it did nothing (the proxy never passed the request on)
    keycloak_proxy.add("POST", rf"/clients/{uuid_}/client-secret$", "answer", status=502)
    response = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=3600)
    assert response.status_code == 503 and "nothing changed" in response.json()["detail"]
    # Keycloak down altogether (a closed port): the same
    settings.KEYCLOAK_URL = "http://127.0.0.1:9"
    response = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=3600)
    assert response.status_code == 503 and "nothing changed" in response.json()["detail"]
    settings.KEYCLOAK_URL = keycloak_proxy.url
    (row,) = _register(partner.integration)
    assert credentials.state_of(row) == credentials.State.CURRENT
    assert keycloak.rotated_secret_expires(uuid_) is None
    assert _token(partner.client_id, partner.secret)[0] == 200
    assert not AuditRecord.objects.filter(integration=partner.integration, event_type=AuditEvent.CREDENTIAL_ROTATED)


def test_a_revocation_checks_keycloak_really_dropped_the_old_secret(api, partner, staff, keycloak_proxy):
    _, outcome = services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"],
                                                    grace_seconds=3600)
    uuid_ = _uuid(partner.client_id)
    previous = _register(partner.integration)[0]
    # Keycloak says it deleted the rotated secret, but did not (the proxy answered in its stead)
    keycloak_proxy.add("DELETE", rf"/clients/{uuid_}/client-secret/rotated$", "answer", status=204)
    api.force_authenticate(staff["ke-admin"])
    response = api.post(f"/api/v1/governance/integrations/{partner.integration.pk}/revoke-credential/",
                        {"credential": previous.pk}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "upstream_unavailable"
    previous.refresh_from_db()
    assert previous.revoked_at is None  # not recorded as revoked while Keycloak still accepts it
    assert _token(partner.client_id, partner.secret)[0] == 200
    keycloak_proxy.clear()
    assert api.post(f"/api/v1/governance/integrations/{partner.integration.pk}/revoke-credential/",
                    {"credential": previous.pk}, format="json").status_code == 200
    assert _token(partner.client_id, partner.secret)[0] == 401
    assert _token(partner.client_id, outcome["client_secret"])[0] == 200


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_keycloak_internals_stay_in_the_server_log(api, partner, staff, keycloak_proxy):
    uuid_ = _uuid(partner.client_id)
    log = _Records()
    logging.getLogger("lifecycle.credentials").addHandler(log)
    try:
        keycloak_proxy.add("POST", rf"/clients/{uuid_}/client-secret$", "answer", status=400,
                           answer=b'{"error": "internal-marker-7f3a"}')
        rotated = _rotate(api, staff["ke-admin"], partner.integration, grace_seconds=3600)
        services.integration_rotate_secret(integration=partner.integration, actor=staff["ke-admin"], grace_seconds=3600)
        previous = _register(partner.integration)[0]
        keycloak_proxy.add("DELETE", rf"/clients/{uuid_}/client-secret/rotated$", "answer", status=400,
                           answer=b'{"error": "internal-marker-7f3a"}')
        api.force_authenticate(staff["ke-admin"])
        revoked = api.post(f"/api/v1/governance/integrations/{partner.integration.pk}/revoke-credential/",
                           {"credential": previous.pk}, format="json")
    finally:
        logging.getLogger("lifecycle.credentials").removeHandler(log)
    for response in (rotated, revoked):
        assert response.status_code == 503 and response.json()["code"] == "upstream_unavailable"
        detail = response.json()["detail"]
        assert "nothing changed" in detail
        for internal in (uuid_, "/admin/realms", "internal-marker", keycloak_proxy.url, "-> 400"):
            assert internal not in detail
    assert sum("internal-marker-7f3a" in line for line in log.lines) == 2  # kept for the operators


def test_the_register_holds_one_current_credential_per_kind_and_does_not_guess_one(partner, staff):
    with pytest.raises(IntegrityError), transaction.atomic():
        Credential.objects.create(integration=partner.integration, kind=K.CLIENT_SECRET)
    # An integration whose register has secrets but none current gets no made-up one from the sweep
    Credential.objects.filter(integration=partner.integration).update(revoked_at=timezone.now())
    assert credentials.sweep(timezone.now())["registered"] == 0
    assert not Credential.objects.filter(integration=partner.integration, revoked_at__isnull=True).exists()


def test_a_wrong_api_key_costs_one_plain_probe_of_the_register(api, partner, staff):
    services.integration_configure_controls(integration=partner.integration, actor=staff["ke-admin"],
                                            issue_api_key=True)
    with CaptureQueriesContext(connection) as queries:
        assert _exchange(api, partner.token, "scpk_wrong").status_code == 401
    (probe,) = [q["sql"] for q in queries.captured_queries if "registry_credential" in q["sql"]]
    assert "JOIN" not in probe and "ORDER BY" not in probe and probe.startswith("SELECT 1 AS")


def test_the_screens_say_tokens_already_issued_stay_valid_until_they_expire(client, partner, staff):
    integration = partner.integration
    client.force_login(staff["ke-admin"])
    rotate_url = f"/admin/registry/integration/{integration.pk}/action/rotate-secret/"
    said = "tokens already issued with it remain valid until they expire, at most 5 minutes"
    assert said in client.get(f"/admin/registry/integration/{integration.pk}/change/").content.decode()
    assert said in client.get(rotate_url).content.decode()
    assert said in client.post(rotate_url, {"grace_seconds": "0"}).content.decode()
    services.integration_rotate_secret(integration=integration, actor=staff["ke-admin"], grace_seconds=3600)
    previous = Credential.objects.get(integration=integration, expires_at__isnull=False, revoked_at__isnull=True)
    assert said in client.get(f"/admin/registry/credential/{previous.pk}/revoke/").content.decode()
