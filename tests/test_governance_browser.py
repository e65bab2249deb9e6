"""Everyday governance in a real browser (issue #14): each role's home shows what waits for it,
a vertical owner answers a recertification, and one left unanswered lapses to Restricted and
shows as overdue. Real Keycloak login, Chromium; screenshots under artifacts/screenshots/."""
import datetime

import pytest
from django.utils import timezone

from lifecycle import recertification
from lifecycle.models import Recertification, RecertificationStatus
from registry.models import Integration, IntegrationStatus

from .exchange_helpers import activate
from .governance_helpers import walk_to
from .browser import shot as _shot, sign_in as _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

S = IntegrationStatus


def _due_for_recertification(integration):
    review = integration.vertical_reviews.get()
    review.decided_at = timezone.now() - datetime.timedelta(days=181)
    review.save()
    recertification.sweep(timezone.now())
    return Recertification.objects.get(integration=integration, status=RecertificationStatus.OPEN)


HOMES = {
    "ke-health-owner": ["Requests waiting for your review", "Recertifications to answer"],
    "umbrella": ["Reviewed requests waiting for your sign-off"],
    "ke-admin": ["Approved integrations to activate", "Integrations ending within 30 days"],
    "partner-user": ["Integrations ending within 30 days"],
    "auditor": [],
    "root": ["Approved integrations to activate", "Integrations ending within 30 days"],
}


def test_each_roles_home_shows_what_waits_for_it(browser, live_server, staff, demo, keycloak_clients):
    walk_to(S.REQUESTED, staff, demo, keycloak_clients, name="Clinic sync (waiting review)")
    walk_to(S.REVIEWED, staff, demo, keycloak_clients, name="Lab results (waiting sign-off)")
    walk_to(S.APPROVED, staff, demo, keycloak_clients, name="Pharmacy (waiting activation)")
    live = activate(staff, demo, keycloak_clients, name="Immunization registry").integration
    Integration.objects.filter(pk=live.pk).update(active_until=timezone.now() + datetime.timedelta(days=12))
    _due_for_recertification(live)
    for username, labels in HOMES.items():
        page = _sign_in(browser, live_server, username)
        waiting = page.inner_text("#scp-waiting")
        for label in labels:
            assert label in waiting, (username, label)
        if not labels:
            assert "Nothing needs your action now." in waiting
        _shot(page, f"11-home-{username}")
        if labels:  # the first item's link opens the screen where the action is taken
            page.click(f"#scp-waiting a >> text={labels[0]}")
            page.wait_for_load_state()
            assert page.locator("#content").count() == 1 and "Page not found" not in page.content()
        page.context.close()


def test_a_recertification_answered_and_one_left_to_lapse(browser, live_server, staff, demo, keycloak_clients):
    answered = activate(staff, demo, keycloak_clients, name="Vaccination reminders").integration
    lapsing = activate(staff, demo, keycloak_clients, name="Old survey feed").integration
    first = _due_for_recertification(answered)
    second = _due_for_recertification(lapsing)

    # The health owner opens the recertification from the home page and narrows the fields.
    page = _sign_in(browser, live_server, "ke-health-owner")
    page.click("#scp-waiting a >> text=Recertifications to answer")
    page.get_by_role("link", name="Vaccination reminders (ke)").click()
    page.wait_for_selector("#recertification-answer-form")
    panel = page.inner_text("#recertification-panel")
    assert "public_health_reporting" in panel and "national_id" in panel and "last:4" in panel
    page.check('input[name="decision"][value="narrow"]')
    page.check('input[name="approved_fields"][value="id"]')
    page.check('input[name="approved_fields"][value="district"]')
    page.fill('textarea[name="reason"]', "Reminders need only the district")
    _shot(page, "14-recertification-answer")
    page.click("#recertification-answer-form input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert "Recorded: narrowed" in page.inner_text(".messagelist")
    page.context.close()
    first.refresh_from_db()
    assert first.status == RecertificationStatus.NARROWED and first.answered_by == staff["ke-health-owner"]
    assert set(Integration.objects.get(pk=answered.pk).read_scope["health"]) == {"id", "district"}

    # The other is left unanswered past its deadline: the schedule restricts the integration,
    # and the tenant admin sees it overdue on the compliance view and on their home.
    Recertification.objects.filter(pk=second.pk).update(due_at=timezone.now() - datetime.timedelta(minutes=1))
    recertification.sweep(timezone.now())
    assert Integration.objects.get(pk=lapsing.pk).status == S.RESTRICTED
    page = _sign_in(browser, live_server, "ke-admin")
    assert "Recertifications overdue in your tenants" in page.inner_text("#scp-waiting")
    page.goto(f"{live_server.url}/admin/compliance/")
    assert "recertification of health overdue, integration restricted" in page.inner_text("#compliance")
    _shot(page, "15-recertification-lapsed")
    page.goto(f"{live_server.url}/admin/registry/integration/{lapsing.pk}/history/")
    assert "recertification of health unanswered" in page.inner_text("#content")
    page.context.close()
