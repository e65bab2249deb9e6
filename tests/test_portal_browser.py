"""The approval portal in a real browser: staff sign in through the real Keycloak login page,
a vertical owner approves from their review queue, the umbrella authority signs off and
activates. Screenshots of each screen are saved under artifacts/screenshots/."""
import datetime

import pytest
import requests as http
from django.utils import timezone

from lifecycle import services
from registry.models import Integration, IntegrationStatus, IntegrationTemplate, Partner
from scp_core.models import ConsentStatus

from .agreement_helpers import sign_agreement
from .browser import shot as _shot, sign_in as _sign_in
from .conftest import make_person
from .exchange_helpers import activate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def test_owner_and_umbrella_approve_in_the_browser_and_the_integration_ends_active(
    browser, live_server, staff, demo, keycloak_clients
):
    integration = services.integration_create(
        actor=staff["ke-admin"], tenant=demo["ke"], partner=Partner.objects.get(slug="acme-health"),
        integration_name="Clinic sync (browser)", verticals=[demo["health"]],
        template=IntegrationTemplate.objects.get(slug="health-records-basic"),
    )
    keycloak_clients.append(integration.client_id_for_keycloak)
    services.integration_submit(integration=integration, actor=staff["ke-admin"])
    sign_agreement(integration, staff["ke-admin"])

    # The vertical owner finds the request in their queue and approves it.
    page = _sign_in(browser, live_server, "ke-health-owner")
    page.goto(f"{live_server.url}/admin/lifecycle/reviewrequest/")
    _shot(page, "01-review-queue")
    page.get_by_role("link", name="Clinic sync (browser)").click()
    page.wait_for_selector("#governance-panel")
    page.click('a[data-action="review"]')
    page.check('input[name="decision"][value="approve"]')
    _shot(page, "02-review-form")
    page.click('input[name="confirm"]')
    page.wait_for_selector(".messagelist")
    assert "now Reviewed" in page.inner_text(".messagelist")
    assert Integration.objects.get(pk=integration.pk).status == IntegrationStatus.REVIEWED
    page.context.close()

    # The umbrella authority opens the sign-off screen, sees the request beside its template
    # and contract, approves, then activates; the secret is shown once.
    page = _sign_in(browser, live_server, "umbrella")
    page.goto(f"{live_server.url}/admin/lifecycle/signoffrequest/")
    page.get_by_role("link", name="Clinic sync (browser)").click()
    panel = page.inner_text("#governance-panel")
    assert "health-records-basic v1" in panel and "last:4" in panel and "ACME Health" in panel
    _shot(page, "03-sign-off")
    page.click('a[data-action="approve"]')
    page.click('input[name="confirm"]')
    page.wait_for_selector(".messagelist")
    assert "now Approved" in page.inner_text(".messagelist")
    page.click('a[data-action="activate"]')
    page.click('input[name="confirm"]')
    page.wait_for_selector("#client-secret")
    assert page.inner_text("#client-secret").strip()
    _shot(page, "04-secret-shown-once")
    integration = Integration.objects.get(pk=integration.pk)
    assert integration.status == IntegrationStatus.ACTIVE
    # Back on the integration, the secret appears nowhere.
    page.goto(f"{live_server.url}/admin/registry/integration/{integration.pk}/change/")
    _shot(page, "05-integration-active")
    assert "Active" in page.inner_text("#governance-panel")
    page.context.close()


def test_buttons_show_only_what_the_signed_in_person_may_do(browser, live_server, staff, demo):
    integration = services.integration_create(
        actor=staff["ke-admin"], tenant=demo["ke"], partner=Partner.objects.get(slug="acme-health"),
        integration_name="Buttons check", verticals=[demo["health"]],
        template=IntegrationTemplate.objects.get(slug="health-records-basic"),
    )
    services.integration_submit(integration=integration, actor=staff["ke-admin"])
    page = _sign_in(browser, live_server, "auditor")
    page.goto(f"{live_server.url}/admin/registry/integration/{integration.pk}/change/")
    assert page.locator("a[data-action]").count() == 0
    _shot(page, "06-auditor-read-only")
    page.context.close()


def test_monitoring_screens_render_real_data_in_chromium(browser, live_server, staff, demo, keycloak_clients):
    partner = activate(staff, demo, keycloak_clients, name="monitored clinic")
    # It ends in three days: the compliance view lists it.
    Integration.objects.filter(pk=partner.integration.pk).update(active_until=timezone.now() + datetime.timedelta(days=3))

    for vertical in ("health", "health", "education"):
        http.get(f"{live_server.url}/api/v1/persons/?vertical={vertical}",
                 headers={"Authorization": f"Bearer {partner.token}"}, timeout=10)
    page = _sign_in(browser, live_server, "auditor")
    page.goto(f"{live_server.url}/admin/monitoring/?tenant=ke&hours=6")
    assert page.locator("rect.bar-requests").count() > 0
    assert "vertical_not_permitted" in page.inner_text("#denials")
    _shot(page, "07-monitoring")
    page.goto(f"{live_server.url}/admin/compliance/")
    assert "monitored clinic" in page.inner_text("#compliance")
    assert "active_until within 14 days" in page.inner_text("#compliance")
    _shot(page, "08-compliance")
    page.context.close()


def test_a_persons_disclosures_and_report_in_chromium(browser, live_server, staff, demo, keycloak_clients):
    """Issue #13: the tenant admin opens a person's disclosures from the person's page and
    prints the subject-access report."""
    partner = activate(staff, demo, keycloak_clients, name="district clinic")
    person = make_person(demo["ke"], "13000009", [(demo["health"], ConsentStatus.GRANTED)], given_name="Amina")
    for url in ("/api/v1/persons/?vertical=health", f"/api/v1/persons/{person.pk}/?vertical=health"):
        assert http.get(f"{live_server.url}{url}", headers={"Authorization": f"Bearer {partner.token}"}, timeout=10).ok
    page = _sign_in(browser, live_server, "ke-admin")
    page.goto(f"{live_server.url}/admin/scp_core/person/{person.pk}/change/")
    page.get_by_role("link", name="Disclosures").click()
    page.wait_for_url("**/disclosures/")
    assert page.locator("tr.disclosure").count() == 2
    assert "district clinic" in page.inner_text("#disclosures") and "national_id (last:4)" in page.inner_text("#disclosures")
    _shot(page, "09-person-disclosures")
    page.click("#disclosure-report")
    page.wait_for_url("**/disclosures/report/")
    assert page.locator("tr.disclosure").count() == 2 and "Amina" in page.inner_text("body")
    _shot(page, "10-subject-access-report")
    page.context.close()
