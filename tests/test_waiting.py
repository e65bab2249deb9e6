""""Waiting for me" (issue #14 item 1): each role's portal home and the governance API list what
needs that person's action now, with counts and links, scoped like the screens they link to."""
import datetime

import pytest
from django.test import Client
from django.utils import timezone

from audit.services import incident_open
from exchange.models import Connector, ConnectorStatus, Subscription
from lifecycle import recertification
from registry.models import Credential, Integration, IntegrationStatus
from scp_portal.waiting import waiting_for

from .conftest import user_token
from .exchange_helpers import activate
from .governance_helpers import walk_to

pytestmark = pytest.mark.django_db

S = IntegrationStatus


@pytest.fixture
def landscape(staff, demo, keycloak_clients):
    """One of everything that waits for someone, all in Kenya."""
    walk_to(S.REQUESTED, staff, demo, keycloak_clients, name="wants review")
    walk_to(S.REVIEWED, staff, demo, keycloak_clients, name="wants sign-off")
    walk_to(S.APPROVED, staff, demo, keycloak_clients, name="wants activation")
    live = activate(staff, demo, keycloak_clients, name="live").integration
    Integration.objects.filter(pk=live.pk).update(active_until=timezone.now() + datetime.timedelta(days=10))
    Subscription.objects.create(integration=live, url="https://hooks.example/x", event_types=["record.created"],
                                secret="whsec_x", active=False, disabled_reason="410")
    Connector.objects.create(integration=live, name="pull", adapter="json_https", source="https://partner.example/r",
                             vertical=demo["health"], record_type="immunization", status=ConnectorStatus.FAILING)
    Credential.objects.filter(integration=live).update(issued_at=timezone.now() - datetime.timedelta(days=400))
    incident_open(kind="mis_scoped_request", severity="high", summary="KE incident", tenant=demo["ke"], integration=live)
    review = live.vertical_reviews.get()
    review.decided_at = timezone.now() - datetime.timedelta(days=200)
    review.save()
    recertification.sweep(timezone.now())  # opens the recertification of health ...
    recertification.Recertification.objects.update(due_at=timezone.now() - datetime.timedelta(hours=1))  # ... now overdue
    return live


EXPECTED = {
    "ke-health-owner": {"reviews": 1, "recertifications": 1},
    "ke-education-owner": {},
    "umbrella": {"sign_offs": 1, "incidents": 1, "expiring": 1, "disabled_endpoints": 1, "aged_credentials": 1},
    "auditor": {"incidents": 1},
    "root": {"incidents": 1, "activations": 1, "expiring": 1, "failing_connectors": 1, "disabled_endpoints": 1,
             "aged_credentials": 1},
    "ke-admin": {"activations": 1, "expiring": 1, "failing_connectors": 1, "disabled_endpoints": 1,
                 "overdue_recertifications": 1, "aged_credentials": 1},
    "ug-admin": {},
    "ug-health-owner": {},
    "partner-user": {"expiring": 1, "disabled_endpoints": 1, "aged_credentials": 1},
}


@pytest.mark.parametrize("username", sorted(EXPECTED))
def test_each_role_is_shown_what_waits_for_it_and_nothing_else(landscape, staff, username):
    items = waiting_for(staff[username])
    assert {i.kind: i.count for i in items} == EXPECTED[username]


@pytest.mark.parametrize("username", ["ke-health-owner", "umbrella", "ke-admin", "partner-user", "ug-admin"])
def test_the_portal_home_shows_the_same_items_with_links_that_open(landscape, staff, username):
    client = Client()
    client.force_login(staff[username])
    home = client.get("/admin/")
    assert home.status_code == 200
    html = home.content.decode()
    assert 'id="scp-waiting"' in html
    items = waiting_for(staff[username])
    for item in items:
        assert f'class="waiting-{item.kind}"' in html and f"<strong>{item.count}</strong>" in html
        assert client.get(item.url).status_code == 200, item.url  # every link opens for this person
    if not items:
        assert "Nothing needs your action now." in html


@pytest.mark.parametrize("username", ["ke-admin", "ke-health-owner", "ug-admin"])
def test_the_governance_api_lists_the_same(landscape, staff, api, username):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token(username)}")
    body = api.get("/api/v1/governance/waiting/").json()
    assert {i["kind"]: i["count"] for i in body["items"]} == EXPECTED[username]
    assert body["total"] == sum(EXPECTED[username].values())
    assert all(i["url"].startswith("http") for i in body["items"])


def test_the_waiting_api_wants_a_staff_token(api):
    assert api.get("/api/v1/governance/waiting/").status_code == 401
