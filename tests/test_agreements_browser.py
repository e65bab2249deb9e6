"""Data-sharing agreements in a real browser (issue #14 item 4): the tenant admin signs in through
Keycloak's login page and uploads the signed agreement from the integration's page; the umbrella
authority sees it beside the request on the sign-off screen and approves. Screenshots are saved
under artifacts/screenshots/ (18, 19)."""
import datetime
import hashlib

import pytest
from django.utils import timezone

from lifecycle import services
from registry.models import DataSharingAgreement, Integration, IntegrationStatus, IntegrationTemplate, Partner

from .agreement_helpers import pdf_upload, sign_agreement, tiny_pdf
from .browser import shot as _shot, sign_in as _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_tenant_admin_uploads_the_agreement_and_the_umbrella_authority_sees_it_at_sign_off(
    browser, live_server, staff, demo, keycloak_clients, tmp_path
):
    integration = services.integration_create(
        actor=staff["ke-admin"], tenant=demo["ke"], partner=Partner.objects.get(slug="acme-health"),
        integration_name="Clinic sync (agreement)", verticals=[demo["health"]],
        template=IntegrationTemplate.objects.get(slug="health-records-basic"),
    )
    keycloak_clients.append(integration.client_id_for_keycloak)
    integration = services.integration_submit(integration=integration, actor=staff["ke-admin"])
    services.integration_review(integration=integration, actor=staff["ke-health-owner"], vertical=demo["health"],
                                decision="approve")
    document = tmp_path / "ke-acme-data-sharing-agreement.pdf"
    document.write_bytes(tiny_pdf("Data-sharing agreement: Ministry of Health (ke) and ACME Health"))
    sha256 = hashlib.sha256(document.read_bytes()).hexdigest()
    today = timezone.localdate()

    # The tenant admin opens the integration, follows "Upload agreement" and fills the form in.
    page = _sign_in(browser, live_server, "ke-admin")
    page.goto(f"{live_server.url}/admin/registry/integration/{integration.pk}/change/")
    assert "No agreement: this integration cannot be approved." in page.inner_text("#agreement-panel")
    page.click("#agreement-upload-link")
    page.wait_for_selector("#agreement-form")
    page.set_input_files('input[name="document"]', str(document))
    page.fill('textarea[name="signatories"]', "Wanjiru Kamau (Ministry of Health, Kenya)\nSam Okello (ACME Health)")
    # The integration's purpose and the fields it reads are ticked to begin with.
    assert page.is_checked('input[name="purposes"][value="public_health_reporting"]')
    assert page.is_checked('input[name="fields"][value="national_id"]')
    page.fill('input[name="retention_days"]', "365")
    page.fill('input[name="effective_from"]', today.isoformat())
    page.fill('input[name="expires_on"]', (today + datetime.timedelta(days=365)).isoformat())
    _shot(page, "18-agreement-upload")
    page.click('input[name="upload"]')
    page.wait_for_selector(".messagelist")
    assert f"pinned by SHA-256 {sha256}" in page.inner_text(".messagelist")
    assert DataSharingAgreement.objects.get(integration=integration).sha256 == sha256
    page.context.close()

    # The umbrella authority opens the sign-off screen: the agreement is beside the request.
    page = _sign_in(browser, live_server, "umbrella")
    page.goto(f"{live_server.url}/admin/lifecycle/signoffrequest/")
    page.get_by_role("link", name="Clinic sync (agreement)").click()
    page.click('a[data-action="approve"]')
    page.wait_for_selector("#agreement-panel")
    panel = page.inner_text("#agreement-panel")
    assert "ke-acme-data-sharing-agreement.pdf" in panel and sha256 in panel
    assert "Sam Okello (ACME Health)" in panel and "365 days" in panel and "Current: it covers the purpose" in panel
    assert page.locator("#agreement-upload-link").count() == 0  # the umbrella authority does not upload
    page.locator("#agreement-panel").scroll_into_view_if_needed()
    _shot(page, "19-agreement-at-sign-off")
    page.click('input[name="confirm"]')
    page.wait_for_selector(".messagelist")
    assert "now Approved" in page.inner_text(".messagelist")
    integration = Integration.objects.get(pk=integration.pk)
    assert integration.status == IntegrationStatus.APPROVED and integration.approved_agreement.sha256 == sha256

    # After the sign-off the partner uploads a renewal: it waits for the umbrella authority, who
    # sees it pending beside the approved one and accepts it.
    renewal = sign_agreement(integration, staff["partner-user"], document=pdf_upload("renewal.pdf", "Renewal"))
    page.goto(f"{live_server.url}/admin/registry/integration/{integration.pk}/change/")
    pending = page.inner_text("#agreement-pending")
    assert "Pending acceptance" in pending and renewal.sha256 in pending
    assert sha256 in page.inner_text("#agreement")  # the approved one stays in force
    page.click("#agreement-accept-link")
    page.wait_for_selector('select[name="agreement"]')
    page.fill('textarea[name="reason"]', "Renewal checked against the request")
    page.click('input[name="confirm"]')
    page.wait_for_selector(".messagelist")
    assert "Accept agreement" in page.inner_text(".messagelist")
    assert Integration.objects.get(pk=integration.pk).approved_agreement == renewal
    assert page.locator("#agreement-pending").count() == 0
    page.context.close()
