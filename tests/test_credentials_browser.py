"""Credentials without downtime in a real browser (issue #14 item 5): the tenant admin signs in
through Keycloak's login page, rotates the integration's secret with a grace period from its
credentials panel; the old secret still obtains tokens the exchange accepts, and is refused by
Keycloak once the grace has ended; a second rotation's old secret is revoked early with the
panel's button. Screenshots 16 and 17 under artifacts/screenshots/."""
import datetime

import pytest
import requests as http

from lifecycle import credentials
from registry.models import Credential

from .conftest import client_token
from .exchange_helpers import activate
from .browser import shot as _shot, sign_in as _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _exchange_accepts(live_server, client_id, secret):
    """A token got with this secret, and the exchange's answer to it (None: Keycloak refused)."""
    token = client_token(client_id, secret)
    if token.status_code != 200:
        return None
    response = http.get(f"{live_server.url}/api/v1/persons/?vertical=health",
                        headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=10)
    return response.status_code


def _rotate_in_panel(page, live_server, integration, grace):
    page.goto(f"{live_server.url}/admin/registry/integration/{integration.pk}/change/")
    page.wait_for_selector("#credentials-panel")
    page.click("#rotate-secret-link")
    page.select_option('select[name="grace_seconds"]', str(grace))
    page.click('input[name="confirm"]')
    page.wait_for_selector("#client-secret")
    return page.inner_text("#client-secret").strip()


def test_rotation_in_the_browser_keeps_the_old_secret_through_its_grace_then_it_is_refused(
    browser, live_server, staff, demo, keycloak_clients
):
    partner = activate(staff, demo, keycloak_clients, name="Clinic sync (rotation)")
    integration = partner.integration
    assert _exchange_accepts(live_server, partner.client_id, partner.secret) == 200

    # The tenant admin rotates the secret from the panel, keeping the old one for an hour.
    page = _sign_in(browser, live_server, "ke-admin")
    new_secret = _rotate_in_panel(page, live_server, integration, 3600)
    assert new_secret and new_secret != partner.secret
    assert "keeps working until" in page.inner_text("#previous-valid-until")
    _shot(page, "16-credentials-rotated")

    # Both secrets obtain tokens, and the exchange accepts the old one's.
    assert _exchange_accepts(live_server, partner.client_id, partner.secret) == 200
    assert _exchange_accepts(live_server, partner.client_id, new_secret) == 200

    # After the grace period (the sweep of the beat, at its end) Keycloak refuses the old secret.
    previous = Credential.objects.filter(integration=integration, expires_at__isnull=False).get()
    assert credentials.sweep(previous.expires_at + datetime.timedelta(seconds=1))["revoked"] == 1
    assert _exchange_accepts(live_server, partner.client_id, partner.secret) is None
    assert _exchange_accepts(live_server, partner.client_id, new_secret) == 200

    # A second rotation, with the longest grace; the partner has switched, so its old secret
    # is revoked at once with the panel's button.
    newest = _rotate_in_panel(page, live_server, integration, 7 * 24 * 3600)
    assert _exchange_accepts(live_server, partner.client_id, new_secret) == 200
    page.goto(f"{live_server.url}/admin/registry/integration/{integration.pk}/change/")
    page.click("#credentials-panel a.scp-revoke")
    page.fill('textarea[name="reason"]', "the partner switched to the new secret")
    page.click('input[name="confirm"]')
    page.wait_for_selector(".messagelist")
    assert "revoked: Keycloak refuses it from now on; tokens already issued with it remain valid until they expire, " \
        "at most 5 minutes" in page.inner_text(".messagelist")
    assert _exchange_accepts(live_server, partner.client_id, new_secret) is None
    assert _exchange_accepts(live_server, partner.client_id, newest) == 200
    page.locator("#credentials-panel").scroll_into_view_if_needed()
    states = [row.get_attribute("data-state") for row in page.locator("#credentials-table tbody tr").all()]
    assert states == ["current", "revoked", "revoked"]
    panel = page.inner_text("#credentials-panel")
    assert "grace period ended" in panel and "the partner switched to the new secret" in panel
    _shot(page, "17-credentials-grace-ended-and-revoked")
    page.context.close()
