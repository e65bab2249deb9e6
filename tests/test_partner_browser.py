"""The partner's own pages in a real browser (issue #14 item 6): the partner user signs in through
Keycloak's login page, opens "My integrations", its integration's page, the API documentation
(Swagger UI served by the portal, rendering the operations of its own contract, nothing fetched
from elsewhere) and replays a dead webhook delivery, which then really reaches its endpoint.
Screenshots are saved under artifacts/screenshots/ (20 to 23). The example requests of the page
are run as shown, with curl and jq, against the live server and the real Keycloak."""
import html
import json
import re
import subprocess

import pytest
from django.conf import settings

from exchange import webhooks
from exchange.models import Delivery, DeliveryStatus
from scp_core.models import ConsentStatus

from .conftest import make_person
from .test_partner_pages import _as
from .exchange_helpers import activate
from .receiver import Receiver
from .browser import shot as _shot, sign_in as _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_partner_user_reads_its_integration_its_api_docs_and_replays_a_dead_delivery(
    browser, live_server, api, staff, demo, keycloak_clients
):
    partner = activate(staff, demo, keycloak_clients, name="ACME clinic sync (browser)")
    person = make_person(demo["ke"], "KE-BROWSER-1", [(demo["health"], ConsentStatus.GRANTED)])
    with Receiver(statuses=[400]) as receiver:
        # The partner subscribes its endpoint and writes a record through the exchange API; the
        # endpoint answers 400 once: a dead letter.
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {partner.token}")
        response = api.post("/api/v1/subscriptions/", {"url": receiver.url, "event_types": ["record.created"]},
                            format="json")
        assert response.status_code == 201, response.content
        receiver.secret = response.json()["secret"]
        response = api.post("/api/v1/records/", {"person_id": str(person.pk), "vertical": "health",
                                                 "record_type": "immunization",
                                                 "data": {"vaccine": "BCG", "dose": 1, "date": "2026-01-02"}}, format="json")
        assert response.status_code == 201, response.content
        delivery = Delivery.objects.get(subscription__integration=partner.integration)
        assert webhooks.deliver(delivery.pk) == DeliveryStatus.DEAD

        page = _sign_in(browser, live_server, "partner-user")
        requested = []
        page.on("request", lambda request: requested.append(request.url))

        # Home → "My integrations": only its partner's integrations.
        page.get_by_role("link", name="My integrations").first.click()
        page.wait_for_selector("#partner-integrations")
        assert "ACME clinic sync (browser)" in page.inner_text("#partner-integrations")
        _shot(page, "20-partner-my-integrations")

        # The integration: state, history, reviews, contract, examples, webhooks, credentials.
        page.get_by_role("link", name="ACME clinic sync (browser)").click()
        page.wait_for_selector("#partner-fields")
        assert "Active" in page.inner_text("#partner-state")
        assert "last:4" in page.inner_text("#partner-fields") and "phone" not in page.inner_text("#partner-fields")
        examples = page.inner_text("#partner-examples")
        assert partner.client_id in examples and settings.KEYCLOAK_TOKEN_URL in examples
        assert partner.secret not in page.content()
        deliveries = page.inner_text("#partner-deliveries")
        assert "dead letter" in deliveries and "400" in deliveries
        assert "not-logged" not in page.content() and receiver.secret not in page.content()
        _shot(page, "21-partner-integration")

        # The API documentation of exactly its contract, rendered by Swagger UI from the portal.
        page.click("#api-docs-link")
        page.wait_for_selector(".swagger-ui .opblock", timeout=20000)
        operations = page.locator(".swagger-ui .opblock").count()
        assert operations >= 10
        assert "/api/v1/persons/" in page.inner_text(".swagger-ui")
        assert "/api/v1/governance/" not in page.inner_text(".swagger-ui")
        # The person as this contract shows it: its fields, each with its mask.
        model = page.locator("#model-MinimizedPerson")
        model.locator("button").first.click()
        model.get_by_text("national_id").first.wait_for()
        assert "last:4" in model.inner_text() and "phone" not in model.inner_text()
        _shot(page, "22-partner-api-docs")
        foreign = [url for url in requested if not url.startswith((live_server.url, "data:"))
                   and not url.startswith(settings.KEYCLOAK_URL)]  # the sign-in itself is Keycloak's
        assert foreign == [], foreign
        assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in url for url in requested)

        # Back on its page, the partner replays the dead letter (a POST with the CSRF token).
        page.goto(f"{live_server.url}/admin/partner/integrations/{partner.integration.pk}/#webhooks")
        row = page.locator(f'tr[data-delivery="{delivery.pk}"]')
        row.locator("input.replay").click()
        page.wait_for_selector(".messagelist")
        assert "queued to be sent again" in page.inner_text(".messagelist")
        assert "pending" in page.locator(f'tr[data-delivery="{delivery.pk}"] .delivery-status').inner_text()
        _shot(page, "23-partner-webhook-replayed")

        # The replayed delivery reaches the fixed endpoint, signed, and the page shows both attempts.
        assert webhooks.deliver(delivery.pk) == DeliveryStatus.DELIVERED
        assert len(receiver.received) == 2 and len({h["webhook-id"] for h, _ in receiver.received}) == 1
        page.reload()
        row_text = page.locator(f'tr[data-delivery="{delivery.pk}"]').inner_text()
        assert "delivered" in row_text and "400" in row_text and "200" in row_text
        page.context.close()


def _examples(page_html):
    """{title: command} of the page's example requests, as a person would copy them."""
    block = re.search(r'<div id="partner-examples">(.*?)</div>', page_html, re.S).group(1)
    return {html.unescape(title): html.unescape(command)
            for title, command in re.findall(r"<h4>(.*?)</h4>\s*<pre>(.*?)</pre>", block, re.S)}


def test_the_example_requests_work_as_shown(live_server, staff, demo, keycloak_clients, settings, tmp_path):
    settings.SCP_PORTAL_URL = live_server.url  # the base URL the examples are written for
    partner = activate(staff, demo, keycloak_clients, name="examples")
    person = make_person(demo["ke"], "KE-EXAMPLES-1", [(demo["health"], ConsentStatus.GRANTED)])
    page = _as(staff["partner-user"]).get(f"/admin/partner/integrations/{partner.integration.pk}/").content.decode()
    examples = _examples(page)
    assert partner.secret not in page
    env = {"PATH": "/usr/bin:/bin", "SCP_CLIENT_SECRET": partner.secret, "PERSON_ID": str(person.pk),
           "RECORD_KEY": "example-write-1"}
    (tmp_path / "immunization.csv").write_text(f"person_id,vaccine,dose,date\n{person.pk},OPV,2,2026-02-01\n")

    def run(command):
        done = subprocess.run(["bash", "-c", "set -eo pipefail\n" + command], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (command, done.stderr)
        return done.stdout

    token_title = next(t for t in examples if t.startswith("Access token"))
    env["TOKEN"] = run(examples[token_title] + '\nprintf %s "$TOKEN"').strip()
    assert env["TOKEN"].count(".") == 2  # a JWT, from Keycloak, for this client
    listed = json.loads(run(examples["Persons (list, cursor-paged)"]))
    assert str(person.pk) in {p["id"] for p in listed["results"]}
    one = json.loads(run(examples["One person"]))
    assert one["id"] == str(person.pk) and "phone" not in one and one["national_id"].endswith("S-1")
    write_title = next(t for t in examples if t.startswith("Write a record: immunization"))
    written = json.loads(run(examples[write_title]))
    assert written["record_type"] == "immunization" and written["person_id"] == str(person.pk)
    assert json.loads(run(examples[write_title]))["id"] == written["id"]  # the same key: answered once
    imported = json.loads(run(examples[next(t for t in examples if t.startswith("Import a file"))]))
    assert imported["record_type"] == "immunization" and imported["status"] in ("queued", "running", "completed")
    export_lines = examples[next(t for t in examples if t.startswith("Export"))].split("\n")
    export_request = "\n".join(export_lines[:2])  # the request; polling and download wait for the worker
    job = json.loads(run(export_request))
    assert job["status"] in ("queued", "running", "completed")
    env["JOB_ID"] = job["id"]
    assert json.loads(run(export_lines[2]))["id"] == job["id"]
